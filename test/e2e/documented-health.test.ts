import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { startTestApp, type TestApp } from "../support/github-app.js";
import { waitFor } from "../support/scenario.js";

/**
 * `GET /healthz` says whether the database answers: 503 with `database: down` while it
 * cannot be reached (for real: the server refuses every connection to it), 200 once it is
 * back, without restarting the app.
 */

let db: TestDatabase;
let app: TestApp;
let admin: pg.Client;
let name: string;

beforeAll(async () => {
  db = await createTestDatabase();
  name = new URL(db.url).pathname.slice(1);
  app = await startTestApp(db.url);
  admin = new pg.Client({ connectionString: inject("pgAdminUrl") });
  await admin.connect();
});

afterAll(async () => {
  // Whatever happened, the database takes connections again before it is dropped.
  await admin?.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`).catch(() => undefined);
  await admin?.end();
  await app?.stop();
  await db?.drop();
});

async function health(): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${app.url}/healthz`);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** The database refuses new connections and loses every open one, the test's own included. */
async function takeDatabaseDown(): Promise<void> {
  await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
  await admin.query(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    [name],
  );
}

describe("/healthz", () => {
  it("answers 503 with database: down while the database is unreachable, and 200 again after", async () => {
    const up = await health();
    expect(up).toMatchObject({ status: 200, body: { status: "ok", database: "up", mode: "app" } });

    await takeDatabaseDown();
    try {
      // The pool may first hand out a connection that has not noticed it is gone yet.
      const down = await waitFor("/healthz to report the outage", async () => {
        const answer = await health();
        return answer.status === 503 ? answer : undefined;
      });
      expect(down.body).toMatchObject({ status: "unavailable", database: "down", mode: "app" });
      // The driver's message names internal hosts: it goes to the log, not to the caller.
      expect(down.body).not.toHaveProperty("error");
      // Still down a moment later: the answer follows the database, not one lost connection.
      expect((await health()).status).toBe(503);
    } finally {
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
    }

    const back = await waitFor("/healthz to recover", async () => {
      const answer = await health();
      return answer.status === 200 ? answer : undefined;
    });
    expect(back.body).toMatchObject({ status: "ok", database: "up", schema: up.body.schema });
  });
});
