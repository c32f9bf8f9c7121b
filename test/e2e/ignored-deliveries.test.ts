import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { startTestApp, type TestApp } from "../support/github-app.js";
import { commentPayload, labeledPayload } from "../support/scenario.js";

/**
 * Deliveries Overseer ignores (a comment without a command, one of its own state labels)
 * are answered without a database round trip: they are most of the traffic, and the ack
 * should cost them nothing. Shown by answering them while every query fails; the controls
 * show that a delivery which does need the database is refused then (5xx, so GitHub
 * keeps it), and that the same deliveries are still answered once the database is back.
 */

let db: TestDatabase;
let app: TestApp;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url);
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

/** Sends with every query and checkout on every pool in the process failing. */
async function withDatabaseDown<T>(send: () => Promise<T>): Promise<T> {
  const { query, connect } = pg.Pool.prototype;
  const down = () => Promise.reject(new Error("database down (test)"));
  Object.assign(pg.Pool.prototype, { query: down, connect: down });
  try {
    return await send();
  } finally {
    Object.assign(pg.Pool.prototype, { query, connect });
  }
}

describe("deliveries that ask nothing", () => {
  it("a conversation comment is answered without the database", async () => {
    const sent = await withDatabaseDown(() =>
      app.send("issue_comment", commentPayload(901, "Thanks, that looks right to me."), {
        settle: false,
      }),
    );
    expect(sent.status).toBe(200);
  });

  it("one of Overseer's own state labels is answered without the database", async () => {
    const sent = await withDatabaseDown(() =>
      app.send("issues", labeledPayload(902, { label: "overseer:running" }), { settle: false }),
    );
    expect(sent.status).toBe(200);
  });

  it("a comment with a command still needs the database: refused while it is down", async () => {
    const sent = await withDatabaseDown(() =>
      app.send("issue_comment", commentPayload(903, "/status"), { settle: false }),
    );
    expect(sent.status).toBeGreaterThanOrEqual(500);
    const deliveries = await db.pool.query("SELECT id FROM deliveries WHERE id = $1", [sent.id]);
    expect(deliveries.rows).toEqual([]);
  });

  it("a malformed comment is still rejected, not ignored", async () => {
    const payload = commentPayload(904, "no command here");
    payload.comment.id = "not a number";
    const sent = await app.send("issue_comment", payload);
    expect(sent.status).toBe(400);
  });
});
