import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ChaosStack,
  committingWorker,
  type DedicatedPostgres,
  outputOf,
  startChaosStack,
  startDedicatedPostgres,
  until,
} from "./harness.js";

/**
 * PostgreSQL stopped and started again (same port, its own server: the shared test server
 * is never restarted) while a worker runs and while webhooks arrive. Every delivery is
 * either stored once or refused with a 5xx (never acknowledged and lost); refused ones
 * are stored when GitHub redelivers them; the run completes; and both LISTEN connections
 * (runner and outbox) come back: polling is set to ten minutes, so only a NOTIFY can
 * start the work that follows the restart.
 */

const BURST = 10;
const OUTAGE_MS = 2_000;

let pg: DedicatedPostgres;
let stack: ChaosStack;

beforeAll(async () => {
  pg = await startDedicatedPostgres();
  stack = await startChaosStack({ databaseUrl: pg.url, worker: committingWorker(6) });
});

afterAll(async () => {
  await stack?.stop(pg?.pool);
  await pg?.drop();
});

describe("PostgreSQL restarted mid-run and during a webhook burst", () => {
  it("loses no delivery, completes the run, and reconnects pool and listeners", async () => {
    const { github } = stack;
    const context = () => outputOf(stack);
    const app = await stack.spawn("start", {
      OVERSEER_POLL_INTERVAL: "10m",
      OVERSEER_LEASE: "3s",
      OVERSEER_HEARTBEAT_INTERVAL: "500ms",
    });
    await app.waitForHealth();
    github.webhookUrl = `http://127.0.0.1:${app.port}/api/github/webhooks`;
    const repo = await github.createRepo("octo", "restart", { config: "concurrency: 2\n" });
    const running = github.openIssue(repo, "Run through a database restart");
    expect((await github.label(repo, running.number, "overseer")).status).toBe(202);
    await until(
      "the worker to start",
      async () =>
        (await pg.pool.query("SELECT 1 FROM runs WHERE state = 'running' AND pgid IS NOT NULL"))
          .rowCount,
      { context },
    );

    const comment = () => github.comment(repo, running.number, "/status");
    await pg.stopServer();
    const during = [];
    const stoppedAt = Date.now();
    while (during.length < BURST || Date.now() - stoppedAt < OUTAGE_MS) {
      during.push(await comment());
      await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS / BURST));
    }
    await pg.startServer();
    const after = [];
    for (let i = 0; i < BURST; i++) after.push(await comment());

    const burst = [...during, ...after];
    const acknowledged = burst.filter((delivery) => delivery.status < 300);
    const refused = burst.filter((delivery) => delivery.status >= 300);
    // Refused means a 5xx GitHub will show as failed, never a 4xx or an unanswered request.
    expect(refused.every((delivery) => delivery.status >= 500)).toBe(true);
    expect(refused.length).toBeGreaterThan(0);
    const stored = async (ids: string[]) =>
      (
        await pg.pool.query<{ id: string }>(
          "SELECT id FROM deliveries WHERE id = ANY($1) ORDER BY id",
          [ids],
        )
      ).rows.map((row) => row.id);
    expect(await stored(acknowledged.map((delivery) => delivery.id))).toEqual(
      acknowledged.map((delivery) => delivery.id).sort(),
    );

    // GitHub's "Redeliver": the same delivery id and payload, now stored, once.
    for (const failed of refused) {
      const original = github.deliveries.find((delivery) => delivery.id === failed.id);
      const again = await github.deliver("issue_comment", original?.payload, failed.id);
      if (again.status !== 202)
        console.log(burst.map((d) => d.status).join(","), failed.id, context());
      expect(again.status).toBe(202);
    }
    expect(await stored(burst.map((delivery) => delivery.id))).toEqual(
      burst.map((delivery) => delivery.id).sort(),
    );

    // The run that was in progress completes (or is requeued and then completes).
    await until("the PR", () => repo.pulls.size === 1, { context });
    await until("awaiting-merge", () => running.labels.includes("overseer:awaiting-merge"), {
      context,
    });
    // One reply and one reaction per /status command: none lost, none doubled, delivered
    // by an outbox that only a NOTIFY on its re-established LISTEN could wake.
    const replies = () => running.comments.filter((entry) => entry.body.includes("overseer:reply"));
    await until("a reply to every /status", () => replies().length >= burst.length, { context });
    expect(replies()).toHaveLength(burst.length);
    const commands = running.comments.filter((entry) => entry.body === "/status");
    expect(commands).toHaveLength(burst.length);
    await until("every reaction", () => running.reactions.length >= burst.length, { context });
    expect(new Set(running.reactions.map((reaction) => reaction.commentId)).size).toBe(
      burst.length,
    );
    expect(running.reactions).toHaveLength(burst.length);

    // A task labelled after the restart is claimed: the runner's LISTEN is back too.
    const next = github.openIssue(repo, "Claimed after the restart");
    expect((await github.label(repo, next.number, "overseer")).status).toBe(202);
    await until("the second PR", () => repo.pulls.size === 2, { context });
    const tasks = await pg.pool.query(
      "SELECT issue_number AS issue, state FROM tasks ORDER BY issue_number",
    );
    expect(tasks.rows).toEqual([
      { issue: running.number, state: "awaiting_merge" },
      { issue: next.number, state: "awaiting_merge" },
    ]);
    expect((await pg.pool.query("SELECT 1 FROM runs WHERE state = 'running'")).rowCount).toBe(0);
    expect(github.unknownCalls).toEqual([]);
    console.log(
      `PostgreSQL restart: ${acknowledged.length} deliveries acknowledged and stored, ${refused.length} refused with 5xx and stored on redelivery`,
    );
  }, 150_000);
});
