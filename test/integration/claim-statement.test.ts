import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { registerRunner } from "../../src/db/runners.js";
import { claimNextTask } from "../../src/db/runs.js";
import { outboxEntriesFor } from "../../src/db/task-changes.js";
import { snapshotOf, TASK_COLUMNS, type TaskRow } from "../../src/db/tasks.js";
import { actor } from "../../src/domain/actors.js";
import { transition } from "../../src/domain/transitions.js";
import { TASK_STATES, type TaskSnapshot } from "../../src/domain/types.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

/**
 * The claim is one SQL statement that writes the `claimed` rule's outcome as data
 * (claimOutcome). Here it meets the rule itself: for every snapshot a task can be in (each
 * state, risk flag and approval, attempts and revisions below, at and past their limits,
 * with and without a revision pending, error and PR carried along), the statement claims
 * exactly the tasks the rule accepts (each is the only claimable one when it is tried; the
 * refused ones stay in the table and must never be claimed later either), and writes what the rule and the one write path say:
 * the task's new snapshot, one audit event, the outbox entries for its effects, the run
 * with the charge; and refuses the rest without writing anything.
 */

let db: TestDatabase;
let repo: RepoRow;
const RUNNER = "statement-claimer";

beforeAll(async () => {
  db = await createTestDatabase();
  repo = await upsertRepo(db.pool, {
    githubId: 77,
    fullName: "octo/statement",
    installationId: 5,
    cloneUrl: "/nowhere/statement.git",
    defaultBranch: "main",
  });
  await registerRunner(db.pool, {
    id: RUNNER,
    host: "test",
    pid: process.pid,
    version: "0",
    capacity: 1,
  });
});

afterAll(async () => {
  await db?.drop();
});

function* snapshots(): Generator<TaskSnapshot> {
  const approvals = [
    { riskLabelled: false, approvedBy: null, approvedSha: null },
    { riskLabelled: false, approvedBy: "maintainer", approvedSha: null },
    { riskLabelled: true, approvedBy: null, approvedSha: null },
    { riskLabelled: true, approvedBy: "maintainer", approvedSha: "abc1234" },
  ];
  const attempts = [
    { attempts: 0, maxAttempts: 3 },
    { attempts: 2, maxAttempts: 3 },
    { attempts: 3, maxAttempts: 3 },
  ];
  const revisions = [
    { revisions: 0, maxRevisions: 5 },
    { revisions: 5, maxRevisions: 5 },
    { revisions: 0, maxRevisions: 0 },
  ];
  const carried = [
    { lastError: null, prNumber: null },
    { lastError: "worker exited with code 1", prNumber: 7 },
  ];
  for (const state of TASK_STATES) {
    for (const revisionPending of [false, true]) {
      // The schema allows a pending revision only where the state machine keeps one.
      if (revisionPending && !["queued", "awaiting_approval", "running"].includes(state)) continue;
      for (const approval of approvals) {
        for (const attempt of attempts) {
          for (const revision of revisions) {
            for (const carry of carried) {
              // Done needs merge evidence, so a PR.
              if (state === "done" && carry.prNumber === null) continue;
              yield { state, revisionPending, ...approval, ...attempt, ...revision, ...carry };
            }
          }
        }
      }
    }
  }
}

let issue = 0;
async function insertTask(snapshot: TaskSnapshot): Promise<TaskRow> {
  issue += 1;
  const done = snapshot.state === "done";
  const result = await db.pool.query<{ id: number }>(
    `INSERT INTO tasks (repo_id, issue_number, title, state, attempts, max_attempts, risk_labelled,
                        approved_by, approved_sha, last_error, pr_number, revisions, max_revisions,
                        revision_pending, branch, config, pr_url, merge_commit_sha, merged_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, '{"concurrency": 100000}',
             $16, $17, $18)
     RETURNING id`,
    [
      repo.id,
      issue,
      `Task ${issue}`,
      snapshot.state,
      snapshot.attempts,
      snapshot.maxAttempts,
      snapshot.riskLabelled,
      snapshot.approvedBy,
      snapshot.approvedSha,
      snapshot.lastError,
      snapshot.prNumber,
      snapshot.revisions,
      snapshot.maxRevisions,
      snapshot.revisionPending,
      `overseer/${issue}-task`,
      done ? "https://github.com/octo/statement/pull/7" : null,
      done ? "0123456789abcdef0123456789abcdef01234567" : null,
      done ? new Date("2025-01-01T00:00:00Z") : null,
    ],
  );
  const id = result.rows[0]?.id;
  const task = await readTask(id ?? 0);
  if (!task) throw new Error("not inserted");
  return task;
}

async function readTask(id: number): Promise<TaskRow | null> {
  const result = await db.pool.query<TaskRow>(`SELECT ${TASK_COLUMNS} FROM tasks WHERE id = $1`, [
    id,
  ]);
  return result.rows[0] ?? null;
}

async function writesOf(taskId: number) {
  const [events, outbox, runs] = await Promise.all([
    db.pool.query(
      `SELECT event, from_state AS "fromState", to_state AS "toState", actor, cause, detail
         FROM task_events WHERE task_id = $1 ORDER BY id`,
      [taskId],
    ),
    db.pool.query(
      `SELECT kind, installation_id AS "installationId", repo_full_name AS "repoFullName",
              payload, dedupe_key AS "dedupeKey", coalesce_key AS "coalesceKey"
         FROM outbox WHERE task_id = $1 ORDER BY kind`,
      [taskId],
    ),
    db.pool.query(
      `SELECT id, attempt, revision, state, runner_id AS "runnerId", finished_at AS "finishedAt"
         FROM runs WHERE task_id = $1`,
      [taskId],
    ),
  ]);
  return { events: events.rows, outbox: outbox.rows, runs: runs.rows };
}

describe("the claim statement against the claimed rule", () => {
  it("claims exactly what the rule accepts and writes what it says, for every snapshot", async () => {
    let accepted = 0;
    let refused = 0;
    for (const snapshot of snapshots()) {
      const before = await insertTask(snapshot);
      const expected = transition(snapshot, { type: "claimed", runner: RUNNER });
      const claim = await claimNextTask(db.pool, {
        runnerId: RUNNER,
        host: "test",
        leaseMs: 60_000,
      });
      const after = await readTask(before.id);
      const writes = await writesOf(before.id);
      const label = JSON.stringify(snapshot);
      if (!expected.ok) {
        refused += 1;
        expect(claim, label).toBeNull();
        expect(after, label).toEqual(before);
        expect(writes, label).toEqual({ events: [], outbox: [], runs: [] });
      } else {
        accepted += 1;
        if (!claim || !after) throw new Error(`not claimed: ${label}`);
        expect(claim.task.id, label).toBe(before.id);
        expect(snapshotOf(after), label).toEqual(expected.task);
        expect(claim.task, label).toEqual(after);
        expect(after.startedAt, label).not.toBeNull();
        expect(after.finishedAt, label).toBeNull();
        expect(after.queuedAt, label).toEqual(before.queuedAt);
        expect(after.updatedAt.getTime(), label).toBeGreaterThanOrEqual(before.updatedAt.getTime());
        const cause = { actor: actor.runner(RUNNER), cause: `run:${claim.run.id}` };
        expect(writes.events, label).toEqual([
          { event: "claimed", fromState: "queued", toState: "running", ...cause, detail: {} },
        ]);
        const entries = outboxEntriesFor(repo, after, expected.effects, cause).map((entry) => ({
          kind: entry.kind,
          installationId: entry.installationId,
          repoFullName: entry.repoFullName,
          payload: entry.payload,
          dedupeKey: "dedupe" in entry.key ? entry.key.dedupe : null,
          coalesceKey: "coalesce" in entry.key ? entry.key.coalesce : null,
        }));
        expect(writes.outbox, label).toEqual(entries.sort((a, b) => a.kind.localeCompare(b.kind)));
        expect(writes.runs, label).toEqual([
          {
            id: claim.run.id,
            attempt: after.attempts,
            revision: snapshot.revisionPending ? after.revisions : null,
            state: "running",
            runnerId: RUNNER,
            finishedAt: null,
          },
        ]);
      }
    }
    // Both sides of the rule were met, many times.
    expect(accepted).toBeGreaterThan(30);
    expect(refused).toBeGreaterThan(200);
  });
});
