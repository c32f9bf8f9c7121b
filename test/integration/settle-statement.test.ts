import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CHANNELS } from "../../src/db/notify.js";
import { withTransaction } from "../../src/db/pool.js";
import { ensureProfiles } from "../../src/db/profiles.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { registerRunner } from "../../src/db/runners.js";
import {
  type Claim,
  claimNextTask,
  type Settlement,
  settleClaimedRun,
  settleRun,
  settleRunIfUnchanged,
} from "../../src/db/runs.js";
import { changeTask } from "../../src/db/task-changes.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { stopped, workerFailed, workerTimedOut } from "../../src/runner/settlements.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

/**
 * A runner settles the run it claimed in one statement while the task is as its claim
 * returned it (settleRunIfUnchanged), and in settleRun's transaction otherwise. Both must
 * write the same: here every kind of settlement goes both ways on twin tasks, and the rows
 * they leave are compared; then the ways the one statement must step aside.
 */

let db: TestDatabase;
let repo: RepoRow;
const RUNNER = "settle-runner";

beforeAll(async () => {
  db = await createTestDatabase();
  repo = await upsertRepo(db.pool, {
    githubId: 88,
    fullName: "octo/settle",
    installationId: 3,
    cloneUrl: "/nowhere/settle.git",
    defaultBranch: "main",
  });
  await registerRunner(db.pool, {
    id: RUNNER,
    host: "test",
    pid: process.pid,
    version: "0",
    capacity: 1,
  });
  await ensureProfiles(db.pool, ["aider"]);
});

beforeEach(async () => {
  await db.pool.query("TRUNCATE tasks, runs, task_events, outbox CASCADE");
  // A backoff streak for every settlement but a lost run to reset.
  await db.pool.query("UPDATE worker_profiles SET pause_streak = 2");
});

afterAll(async () => {
  await db?.drop();
});

let issue = 0;
async function claimFresh(options: { revision?: boolean } = {}): Promise<Claim> {
  issue += 1;
  const task = await insertTaskIfAbsent(db.pool, {
    repoId: repo.id,
    issueNumber: issue,
    title: `Task ${issue}`,
    state: "queued",
    priority: 2,
    maxAttempts: 3,
    riskLabelled: false,
    workerProfile: "aider",
    baseBranch: null,
    branch: `overseer/${issue}-task`,
    config: { concurrency: 100, merge: "auto" },
    labels: [],
  });
  if (!task) throw new Error("not created");
  if (options.revision) {
    await db.pool.query(
      "UPDATE tasks SET revision_pending = true, attempts = 1, pr_number = 40 WHERE id = $1",
      [task.id],
    );
  }
  const claim = await claimNextTask(db.pool, { runnerId: RUNNER, host: "test", leaseMs: 60_000 });
  if (claim?.task.id !== task.id) throw new Error("claimed something else");
  return claim;
}

const leaseOf = (claim: Claim) => ({ runId: claim.run.id, token: claim.run.leaseToken });

/** Everything a settlement writes about a task, without ids, times and the task's own name. */
async function outcomeOf(taskId: number) {
  const task = await db.pool.query(
    `SELECT state, attempts, revisions, revision_pending, last_error, pr_number, pr_url,
            not_before IS NOT NULL AS backoff, infra_retries, risk_labelled, approved_by,
            started_at IS NOT NULL AS started, finished_at IS NOT NULL AS finished
       FROM tasks WHERE id = $1`,
    [taskId],
  );
  const runs = await db.pool.query(
    `SELECT state, exit_code, signal, failure_reason, head_sha, charged,
            finished_at IS NOT NULL AS finished
       FROM runs WHERE task_id = $1 ORDER BY id`,
    [taskId],
  );
  const events = await db.pool.query(
    `SELECT event, from_state, to_state, actor, detail FROM task_events WHERE task_id = $1 ORDER BY id`,
    [taskId],
  );
  const outbox = await db.pool.query(
    `SELECT kind, payload - 'issueNumber' AS payload, version,
            regexp_replace(COALESCE(coalesce_key, dedupe_key), '\\d+$', '') AS key
       FROM outbox WHERE task_id = $1 ORDER BY kind`,
    [taskId],
  );
  const streak = await db.pool.query(
    "SELECT pause_streak FROM worker_profiles WHERE name = 'aider'",
  );
  return {
    task: task.rows[0],
    runs: runs.rows,
    events: events.rows,
    outbox: outbox.rows,
    streak: streak.rows[0]?.pause_streak,
  };
}

const SETTLEMENTS: [string, (prNumber: number) => Settlement, { revision?: boolean }?][] = [
  [
    "succeeded",
    (prNumber) => ({
      outcome: "succeeded",
      exitCode: 0,
      headSha: "a".repeat(40),
      event: { type: "run_succeeded", runner: RUNNER, prNumber },
      changes: {
        prUrl: `https://github.com/octo/settle/pull/${prNumber}`,
        prHeadSha: "a".repeat(40),
      },
    }),
  ],
  [
    "failed",
    () => workerFailed(RUNNER, "worker exited with code 1", { exitCode: 1, signal: null }),
  ],
  [
    "failed uncharged",
    () => ({
      outcome: "failed",
      failureReason: "configuration: no such profile",
      charged: false,
      event: {
        type: "run_failed",
        runner: RUNNER,
        reason: "configuration: no such profile",
        charged: false,
      },
    }),
  ],
  [
    "requeued after an outage",
    () => ({
      outcome: "lost",
      failureReason: "GitHub answered 502 (not counted as an attempt; retry 1 of 5)",
      charged: false,
      event: { type: "run_requeued", runner: RUNNER, reason: "GitHub answered 502" },
      changes: { infraRetries: 1, notBefore: new Date(Date.now() + 60_000) },
    }),
  ],
  [
    "timed out",
    () => workerTimedOut(RUNNER, "timed out after 60m", { exitCode: null, signal: "SIGKILL" }),
  ],
  [
    "stopped",
    () =>
      stopped(
        RUNNER,
        "stopped",
        { exitCode: null, signal: "SIGTERM" } as never,
        "stopped by /stop",
      ),
  ],
  ["shut down", () => stopped(RUNNER, "shutdown", null, null)],
  [
    "revision succeeded",
    () => ({
      outcome: "succeeded",
      exitCode: 0,
      event: { type: "run_succeeded", runner: RUNNER, prNumber: 40 },
    }),
    { revision: true },
  ],
  ["revision failed", () => workerFailed(RUNNER, "worker exited with code 2"), { revision: true }],
];

describe("settling in one statement", () => {
  for (const [name, settlementFor, options] of SETTLEMENTS) {
    it(`${name}: writes what settleRun's transaction writes`, async () => {
      const one = await claimFresh(options);
      const other = await claimFresh(options);
      expect(await settleRunIfUnchanged(db.pool, one, leaseOf(one), settlementFor(7))).toBe(
        "settled",
      );
      const byStatement = await outcomeOf(one.task.id);
      await db.pool.query("UPDATE worker_profiles SET pause_streak = 2");
      expect(
        await withTransaction(db.pool, (client) =>
          settleRun(client, leaseOf(other), settlementFor(7)),
        ),
      ).toBe(true);
      const byTransaction = await outcomeOf(other.task.id);
      expect(byStatement).toEqual(byTransaction);
      expect(byStatement.runs[0]?.state).not.toBe("running");
    });
  }

  it("NOTIFYs the log's followers and the outbox once the settlement has committed", async () => {
    const claim = await claimFresh();
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      const heard: string[] = [];
      listener.on("notification", (message) => heard.push(`${message.channel}:${message.payload}`));
      await listener.query(`LISTEN ${CHANNELS.log}; LISTEN ${CHANNELS.outbox}`);
      expect(
        await settleClaimedRun(
          db.pool,
          claim,
          leaseOf(claim),
          SETTLEMENTS[1]?.[1](0) as Settlement,
        ),
      ).toBe(true);
      // Notifications arrive after the statement's answer; a query on the listener flushes them.
      await listener.query("SELECT 1");
      expect(heard.sort()).toEqual([`${CHANNELS.log}:${claim.run.id}`, `${CHANNELS.outbox}:`]);
    } finally {
      await listener.end();
    }
  });

  it("a task changed since the claim: writes nothing, and settleClaimedRun takes the transaction", async () => {
    const claim = await claimFresh();
    // A risk label added while the worker runs: the task keeps running, with the flag.
    await changeTask(
      db.pool,
      { id: claim.task.id },
      { type: "labels_changed", actor: "someone", riskLabelled: true, riskLabelAdded: true },
      { actor: "someone", cause: "delivery:1" },
      { riskLabelled: true },
    );
    const before = await outcomeOf(claim.task.id);
    const settlement = workerFailed(RUNNER, "worker exited with code 1");
    expect(await settleRunIfUnchanged(db.pool, claim, leaseOf(claim), settlement)).toBe(
      "task_changed",
    );
    expect(await outcomeOf(claim.task.id)).toEqual(before);
    expect(await settleClaimedRun(db.pool, claim, leaseOf(claim), settlement)).toBe(true);
    const after = await outcomeOf(claim.task.id);
    expect(after.task).toMatchObject({ state: "failed", risk_labelled: true });
    expect(after.runs).toMatchObject([{ state: "failed" }]);
  });

  it("a task cancelled while it ran: the run is settled anyway, the refused event leaves the task", async () => {
    const claim = await claimFresh();
    await changeTask(
      db.pool,
      { id: claim.task.id },
      { type: "unlabeled", actor: "someone" },
      { actor: "someone", cause: "delivery:2" },
    );
    const settlement = SETTLEMENTS[0]?.[1](claim.task.issueNumber) as Settlement;
    expect(await settleClaimedRun(db.pool, claim, leaseOf(claim), settlement)).toBe(true);
    const after = await outcomeOf(claim.task.id);
    expect(after.task).toMatchObject({ state: "cancelled", pr_number: null });
    expect(after.runs).toMatchObject([{ state: "succeeded" }]);
  });

  it("a lease taken over meanwhile: nothing is written, and the settlement reports it", async () => {
    const claim = await claimFresh();
    await db.pool.query("UPDATE runs SET lease_token = gen_random_uuid() WHERE id = $1", [
      claim.run.id,
    ]);
    const before = await outcomeOf(claim.task.id);
    const settlement = workerFailed(RUNNER, "worker exited with code 1");
    expect(await settleRunIfUnchanged(db.pool, claim, leaseOf(claim), settlement)).toBe(
      "lease_lost",
    );
    expect(await settleClaimedRun(db.pool, claim, leaseOf(claim), settlement)).toBe(false);
    expect(await outcomeOf(claim.task.id)).toEqual(before);
  });

  it("a run that hit its agent's limit pauses the profile through settleRun's transaction", async () => {
    const claim = await claimFresh();
    const settlement: Settlement = {
      outcome: "limited",
      failureReason: "the agent hit its usage limit",
      charged: false,
      event: { type: "run_limited", runner: RUNNER, reason: "the agent hit its usage limit" },
      pause: { kind: "usage_limit", reason: "usage limit", resetAt: null, backoffBaseMs: 60_000 },
    };
    await expect(settleRunIfUnchanged(db.pool, claim, leaseOf(claim), settlement)).rejects.toThrow(
      /pauses its profile/,
    );
    expect(await settleClaimedRun(db.pool, claim, leaseOf(claim), settlement)).toBe(true);
    const after = await outcomeOf(claim.task.id);
    expect(after.task).toMatchObject({ state: "queued" });
    expect(after.events.at(-1)?.detail).toMatchObject({ outcome: "limited", profile: "aider" });
    const paused = await db.pool.query(
      "SELECT paused_until > now() AS paused FROM worker_profiles WHERE name = 'aider'",
    );
    expect(paused.rows[0]).toEqual({ paused: true });
  });
});
