import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type ChaosStack, committingWorker, outputOf, startChaosStack, until } from "./harness.js";

/**
 * `overseer start` killed with SIGKILL while its worker runs, then started again: the
 * restarted runner finds the run its dead predecessor left, kills the orphaned worker,
 * requeues the task uncharged and runs it again. One PR, one completion comment.
 */

let db: TestDatabase;
let stack: ChaosStack;

beforeAll(async () => {
  db = await createTestDatabase();
  stack = await startChaosStack({ databaseUrl: db.url, worker: committingWorker(3) });
});

afterAll(async () => {
  await stack?.stop(db?.pool);
  await db?.drop();
});

describe("the app killed with kill -9 mid-run", () => {
  it("finishes the task after a restart: one PR, one completion comment", async () => {
    const { github } = stack;
    const context = () => outputOf(stack);
    let app = await stack.spawn("start", {});
    await app.waitForHealth();
    github.webhookUrl = `http://127.0.0.1:${app.port}/api/github/webhooks`;
    const repo = await github.createRepo("octo", "crash");
    const issue = github.openIssue(repo, "Survive a crash");
    expect((await github.label(repo, issue.number, "overseer")).status).toBe(202);

    const firstRun = await until(
      "the worker to start",
      async () =>
        (
          await db.pool.query<{ id: number; pgid: number }>(
            "SELECT id, pgid FROM runs WHERE state = 'running' AND pgid IS NOT NULL",
          )
        ).rows[0],
      { context },
    );
    await stack.kill9(app);

    app = await stack.spawn("start", {});
    await app.waitForHealth();
    github.webhookUrl = `http://127.0.0.1:${app.port}/api/github/webhooks`;

    const pull = await until("the PR", () => [...repo.pulls.values()][0], { context });
    await until("awaiting-merge", () => issue.labels.includes("overseer:awaiting-merge"), {
      context,
    });
    expect((await github.merge(repo, pull.number)).status).toBe(202);
    await until("done", () => issue.labels.includes("overseer:done"), { context });
    await until(
      "the completion comment",
      () => issue.comments.some((comment) => comment.body.includes("overseer:completion")),
      { context },
    );

    const runs = await db.pool.query<{ id: number; state: string; charged: boolean }>(
      "SELECT id, state, charged FROM runs ORDER BY id",
    );
    expect(runs.rows[0]).toMatchObject({ id: firstRun.id, state: "lost", charged: false });
    expect(runs.rows.filter((run) => run.state === "running")).toEqual([]);
    const task = await db.pool.query("SELECT state, attempts FROM tasks");
    expect(task.rows).toEqual([{ state: "done", attempts: 1 }]);
    expect(repo.pulls.size).toBe(1);
    expect(
      issue.comments.filter((comment) => comment.body.includes("overseer:completion")),
    ).toHaveLength(1);
    expect(
      issue.comments.filter((comment) => comment.body.includes("overseer:status")),
    ).toHaveLength(1);
    expect(issue.labels.filter((label) => label.startsWith("overseer:"))).toEqual([
      "overseer:done",
    ]);
    expect(github.unknownCalls).toEqual([]);
    // The orphaned worker of the first run was killed, not left to finish on its own.
    expect(() => process.kill(-firstRun.pgid, 0)).toThrow();
  }, 120_000);
});
