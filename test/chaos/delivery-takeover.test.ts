import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { deliveryRow, processedDelivery } from "../support/deliveries.js";
import { type ChaosStack, committingWorker, outputOf, startChaosStack, until } from "./harness.js";

/**
 * `overseer serve` killed with SIGKILL after it answered a delivery and while it was still
 * processing it (its read of the repository config hangs): the delivery is stored, so
 * another process takes it over once its lease expires, and the task is queued exactly
 * once. Nothing is lost between the answer and the work.
 */

const LEASE = { OVERSEER_DELIVERY_LEASE: "2s" };

let db: TestDatabase;
let stack: ChaosStack;

beforeAll(async () => {
  db = await createTestDatabase();
  stack = await startChaosStack({ databaseUrl: db.url, worker: committingWorker(1) });
});

afterAll(async () => {
  await stack?.stop(db?.pool);
  await db?.drop();
});

describe("a process killed while it processes a delivery it answered", () => {
  it("leaves the delivery to another process, which queues the task once", async () => {
    const { github } = stack;
    const context = () => outputOf(stack);
    const first = await stack.spawn("serve", LEASE);
    await first.waitForHealth();
    github.webhookUrl = `http://127.0.0.1:${first.port}/api/github/webhooks`;
    const repo = await github.createRepo("octo", "takeover");
    const issue = github.openIssue(repo, "Taken over");
    const clear = github.fail((call) =>
      call.route.includes("/contents/") ? { status: 0, hang: true } : null,
    );
    let id: string;
    try {
      const delivered = await github.label(repo, issue.number, "overseer");
      expect(delivered.status).toBe(202);
      id = delivered.id;
      await until(
        "the config read that hangs",
        () => github.calls.some((call) => call.status === 0 && call.route.includes("/contents/")),
        { context },
      );
      expect(await deliveryRow(db.pool, id)).toMatchObject({
        outcome: "pending",
        attempts: 1,
        taken: true,
      });
      await stack.kill9(first);
    } finally {
      clear();
    }

    const second = await stack.spawn("serve", LEASE);
    await second.waitForHealth();
    await until(
      "the delivery to be processed",
      async () => (await deliveryRow(db.pool, id))?.outcome === "processed",
      { context },
    );
    expect(await processedDelivery(db.pool, id)).toMatchObject({ attempts: 2 });
    const tasks = await db.pool.query<{ id: number; state: string }>(
      "SELECT id, state FROM tasks WHERE issue_number = $1",
      [issue.number],
    );
    expect(tasks.rows).toEqual([{ id: expect.any(Number), state: "queued" }]);
    const labeled = await db.pool.query(
      "SELECT cause FROM task_events WHERE task_id = $1 AND event = 'labeled'",
      [tasks.rows[0]?.id],
    );
    expect(labeled.rows).toEqual([{ cause: `delivery:${id}` }]);
    await until("overseer:queued on the issue", () => issue.labels.includes("overseer:queued"), {
      context,
    });
    expect(github.unknownCalls).toEqual([]);
  }, 90_000);
});
