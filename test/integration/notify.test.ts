import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHANNELS, listen, notify } from "../../src/db/notify.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

async function until(what: string, probe: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("listen", () => {
  it("comes back after its connection is killed, and hears notifications again", async () => {
    const heard: string[] = [];
    const lost: string[] = [];
    const listener = await listen({
      databaseUrl: db.url,
      channels: [CHANNELS.queue],
      onNotification: (channel, payload) => heard.push(`${channel}:${payload}`),
      onLost: (error) => lost.push(error.message),
      retryMs: 50,
    });
    try {
      await notify(db.pool, CHANNELS.queue, "before");
      await until("the first notification", () => heard.includes("overseer_queue:before"));

      const killed = await db.pool.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`,
      );
      expect(killed.rowCount).toBe(1);
      await until("the loss to be reported", () => lost.length > 0);

      // Notifications sent while it reconnects are lost (they are hints); keep sending.
      await until("a notification after the reconnect", async () => {
        await notify(db.pool, CHANNELS.queue, "after");
        return heard.includes("overseer_queue:after");
      });
      expect(lost).toHaveLength(1);
    } finally {
      await listener.close();
    }
    const listening = await db.pool.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'",
    );
    expect(listening.rows[0].n).toBe(0);
  });

  it("keeps retrying when the server cannot be reached at first, and close() stops it", async () => {
    const lost: string[] = [];
    const unreachable = new URL(db.url);
    unreachable.port = "1";
    const listener = await listen({
      databaseUrl: unreachable.toString(),
      channels: [CHANNELS.queue],
      onNotification: () => undefined,
      onLost: (error) => lost.push(error.message),
      retryMs: 20,
    });
    await until("three attempts", () => lost.length >= 3);
    await listener.close();
    const attempts = lost.length;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(lost).toHaveLength(attempts);
  });
});
