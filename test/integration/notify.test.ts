import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHANNELS, listen, notify, notifyAll } from "../../src/db/notify.js";
import { withTransaction } from "../../src/db/pool.js";
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

describe("notifyAll", () => {
  it("on the pool: concurrent callers share statements, every distinct signal arrives once per statement that carried it", async () => {
    const heard: string[] = [];
    const listener = await listen({
      databaseUrl: db.url,
      channels: [CHANNELS.outbox, CHANNELS.log],
      onNotification: (channel, payload) => heard.push(`${channel}:${payload}`),
      onLost: () => undefined,
    });
    try {
      // A pool (for notifyAll) whose statements are counted, sent through the real one.
      let statements = 0;
      const query = db.pool.query.bind(db.pool);
      const counting: pg.Pool = Object.assign(Object.create(pg.Pool.prototype), {
        query: (...args: Parameters<typeof query>) => {
          statements += 1;
          return query(...args);
        },
      });
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          notifyAll(counting, [
            { channel: CHANNELS.outbox, payload: "" },
            { channel: CHANNELS.log, payload: String(i) },
          ]),
        ),
      );
      // The first goes out alone; the 39 that arrive while it is in flight share the next.
      expect(statements).toBe(2);
      await until("every run's signal", () =>
        Array.from({ length: 40 }, (_, i) => `overseer_log:${i}`).every((s) => heard.includes(s)),
      );
      expect(heard.filter((s) => s.startsWith("overseer_log:"))).toHaveLength(40);
      expect(heard.filter((s) => s === "overseer_outbox:").length).toBeLessThanOrEqual(statements);
    } finally {
      await listener.close();
    }
  });

  it("on a client: the signals go out with the client's transaction, only when it commits", async () => {
    const heard: string[] = [];
    const listener = await listen({
      databaseUrl: db.url,
      channels: [CHANNELS.queue],
      onNotification: (channel, payload) => heard.push(`${channel}:${payload}`),
      onLost: () => undefined,
    });
    try {
      await withTransaction(db.pool, (client) =>
        notifyAll(client, [{ channel: CHANNELS.queue, payload: "rolled back" }]).then(() => {
          throw new Error("roll back");
        }),
      ).catch(() => undefined);
      await withTransaction(db.pool, (client) =>
        notifyAll(client, [{ channel: CHANNELS.queue, payload: "committed" }]),
      );
      await until("the committed signal", () => heard.includes("overseer_queue:committed"));
      expect(heard).toEqual(["overseer_queue:committed"]);
    } finally {
      await listener.close();
    }
  });
});
