import type { TaskEvent } from "../domain/types.js";
import { applyTaskEvent } from "./lifecycle.js";
import type { PoolClient, Queryable } from "./pool.js";
import { getRepo, REPO_JSON, type RepoRow } from "./repos.js";
import { lockTask, TASK_COLUMNS, type TaskChanges, type TaskRow } from "./tasks.js";

export interface RunRow {
  id: number;
  taskId: number;
  attempt: number;
  runnerId: string;
  host: string;
  leaseToken: string;
  pid: number | null;
  pgid: number | null;
  worktree: string | null;
  logPath: string | null;
}

const RUN_COLUMNS = `runs.id, runs.task_id AS "taskId", runs.attempt, runs.runner_id AS "runnerId",
  runs.host, runs.lease_token AS "leaseToken", runs.pid, runs.pgid, runs.worktree,
  runs.log_path AS "logPath"`;

export interface Claim {
  run: RunRow;
  task: TaskRow;
  repo: RepoRow;
}

const DEFAULT_CONCURRENCY = 2;
const CONCURRENCY = (task: string) =>
  `COALESCE((${task}.config->>'concurrency')::int, ${DEFAULT_CONCURRENCY})`;

/**
 * Claims the most urgent claimable task: queued, approved if risk-labelled, under its
 * attempts, in a repository under its concurrency. Two statements: the pick, then the
 * transition (task, audit event, GitHub effects) through applyTaskEvent.
 *
 * The pick takes the task with FOR UPDATE SKIP LOCKED (the LIMIT inside a MATERIALIZED
 * CTE, so the planner cannot lock more rows than it returns), so concurrent claimers
 * never take the same task. SKIP LOCKED alone cannot keep per-repository concurrency:
 * two claimers picking different tasks of one repository would each count the other's
 * claim as not yet running. So the pick also locks the repository's row, on the
 * condition that its `running` count (kept by a trigger) is under the limit; a claimer
 * that waited for that lock has the condition re-checked against the row the other
 * claim committed. A repository found full is passed over for the next candidate.
 *
 * The run row is inserted by the pick too, with the attempt the claim transition charges;
 * the transition's result is checked against it. The caller holds a transaction.
 */
export async function claimNextTask(
  client: PoolClient,
  runner: { runnerId: string; host: string; leaseMs: number },
): Promise<Claim | null> {
  const full: number[] = [];
  for (;;) {
    const picked = await client.query<TaskRow & { repo: RepoRow; run: RunRow | null }>(
      `WITH candidate AS MATERIALIZED (
         SELECT ${TASK_COLUMNS} FROM tasks JOIN repos ON repos.id = tasks.repo_id
          WHERE tasks.state = 'queued'
            AND (NOT tasks.risk_labelled OR tasks.approved_by IS NOT NULL)
            AND tasks.attempts < tasks.max_attempts
            AND repos.running < ${CONCURRENCY("tasks")}
            AND tasks.repo_id <> ALL($1::bigint[])
          ORDER BY tasks.priority, tasks.queued_at, tasks.id
          LIMIT 1
          FOR UPDATE OF tasks SKIP LOCKED),
       slot AS MATERIALIZED (
         SELECT repos.id FROM repos JOIN candidate ON candidate."repoId" = repos.id
          WHERE repos.running < ${CONCURRENCY("candidate")}
          FOR NO KEY UPDATE OF repos),
       run AS (
         INSERT INTO runs (task_id, attempt, runner_id, host, lease_token, lease_expires_at,
                           branch)
         SELECT candidate.id, candidate.attempts + 1, $2, $3, gen_random_uuid(),
                now() + $4 * interval '1 millisecond', candidate.branch
           FROM candidate JOIN slot ON slot.id = candidate."repoId"
         RETURNING ${RUN_COLUMNS})
       SELECT candidate.*, ${REPO_JSON} AS repo, (SELECT row_to_json(run) FROM run) AS run
         FROM candidate JOIN repos ON repos.id = candidate."repoId"`,
      [full, runner.runnerId, runner.host, runner.leaseMs],
    );
    const row = picked.rows[0];
    if (!row) return null;
    const { repo, run, ...task } = row;
    if (!run) {
      full.push(task.repoId);
      continue;
    }
    const claimed = await applyTaskEvent(
      client,
      repo,
      task,
      { type: "claimed", runner: runner.runnerId },
      { actor: runner.runnerId, cause: `runner:${runner.runnerId}` },
    );
    if (!claimed.ok) throw new Error(`claim of task ${task.id} refused: ${claimed.reason}`);
    if (claimed.task.attempts !== run.attempt) {
      throw new Error(
        `claim of task ${task.id} charged attempt ${claimed.task.attempts}, not ${run.attempt}`,
      );
    }
    return { run, task: claimed.task, repo };
  }
}

/** A run is addressed only with its lease token: a runner that lost the lease writes nothing. */
export interface Lease {
  runId: number;
  token: string;
}

/** Renews the lease; false when it was lost. Also reports a pending stop request. */
export async function heartbeatRun(
  db: Queryable,
  lease: Lease,
  leaseMs: number,
): Promise<{ held: boolean; stopRequested: boolean }> {
  const result = await db.query<{ stopRequested: boolean }>(
    `UPDATE runs SET heartbeat_at = now(), lease_expires_at = now() + $3 * interval '1 millisecond'
      WHERE id = $1 AND lease_token = $2 AND state = 'running'
      RETURNING stop_requested_at IS NOT NULL AS "stopRequested"`,
    [lease.runId, lease.token, leaseMs],
  );
  const row = result.rows[0];
  return { held: row !== undefined, stopRequested: row?.stopRequested ?? false };
}

export async function recordRunProcess(
  db: Queryable,
  lease: Lease,
  process: { pid: number; pgid: number; worktree: string; logPath: string },
): Promise<boolean> {
  const result = await db.query(
    `UPDATE runs SET pid = $3, pgid = $4, worktree = $5, log_path = $6
      WHERE id = $1 AND lease_token = $2 AND state = 'running'`,
    [lease.runId, lease.token, process.pid, process.pgid, process.worktree, process.logPath],
  );
  return result.rowCount === 1;
}

export type RunOutcome = "succeeded" | "failed" | "timed_out" | "stopped" | "lost";

export interface Settlement {
  outcome: RunOutcome;
  exitCode?: number | null;
  signal?: string | null;
  failureReason?: string | null;
  headSha?: string | null;
  /** False when the attempt ended through no fault of the work (shutdown, lost lease). */
  charged?: boolean;
  event: TaskEvent;
  changes?: TaskChanges;
}

/**
 * Settles the run and moves its task, in one transaction, fenced on the lease: returns
 * false (and changes nothing) when another process has taken the run over meanwhile.
 * A task event the task refuses (say, a PR merged while the worker ran, so the task is
 * already done) still settles the run.
 */
export async function settleRun(
  client: PoolClient,
  lease: Lease,
  settlement: Settlement,
): Promise<boolean> {
  const run = await client.query<{ taskId: number }>(
    `UPDATE runs SET state = $3::run_state, finished_at = now(), exit_code = $4, signal = $5,
                     failure_reason = $6, head_sha = $7, charged = $8
      WHERE id = $1 AND lease_token = $2 AND state = 'running'
      RETURNING task_id AS "taskId"`,
    [
      lease.runId,
      lease.token,
      settlement.outcome,
      settlement.exitCode ?? null,
      settlement.signal ?? null,
      settlement.failureReason ?? null,
      settlement.headSha ?? null,
      settlement.charged ?? true,
    ],
  );
  const taskId = run.rows[0]?.taskId;
  if (taskId === undefined) return false;
  const task = await lockTask(client, { id: taskId });
  if (!task) return true;
  const repo = await getRepo(client, task.repoId);
  const actor = "actor" in settlement.event ? settlement.event.actor : settlement.event.type;
  await applyTaskEvent(
    client,
    repo,
    task,
    settlement.event,
    { actor, cause: `run:${lease.runId}`, detail: { outcome: settlement.outcome } },
    settlement.changes,
  );
  return true;
}

/** Runs whose lease ran out: their runner is gone or cut off. */
export async function findExpiredRuns(db: Queryable): Promise<RunRow[]> {
  const result = await db.query<RunRow>(
    `SELECT ${RUN_COLUMNS} FROM runs WHERE state = 'running' AND lease_expires_at < now()
      ORDER BY lease_expires_at LIMIT 100`,
  );
  return result.rows;
}

/** Running runs this host started under runners that are no longer alive in this process. */
export async function findRunsOnHost(db: Queryable, host: string): Promise<RunRow[]> {
  const result = await db.query<RunRow>(
    `SELECT ${RUN_COLUMNS} FROM runs WHERE state = 'running' AND host = $1`,
    [host],
  );
  return result.rows;
}

/** Marks a lost run and requeues its task without charging the attempt. */
export function requeueLostRun(client: PoolClient, run: RunRow, reason: string): Promise<boolean> {
  return settleRun(
    client,
    { runId: run.id, token: run.leaseToken },
    {
      outcome: "lost",
      failureReason: reason,
      charged: false,
      event: { type: "lease_lost", actor: "overseer" },
    },
  );
}

export async function listRunnerPids(
  db: Queryable,
  runnerIds: string[],
): Promise<Map<string, number>> {
  const result = await db.query<{ id: string; pid: number }>(
    "SELECT id, pid FROM runners WHERE id = ANY($1)",
    [runnerIds],
  );
  return new Map(result.rows.map((row) => [row.id, row.pid]));
}
