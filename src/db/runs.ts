import type { LogFormat } from "../config/workers.js";
import { actor } from "../domain/actors.js";
import type { TaskEvent } from "../domain/types.js";
import { CHANNELS } from "./notify.js";
import type { PoolClient, Queryable } from "./pool.js";
import { REPO_JSON, type RepoRow } from "./repos.js";
import { applyTransition, changeTaskIn } from "./task-changes.js";
import { TASK_COLUMNS, type TaskChanges, type TaskRow } from "./tasks.js";

/**
 * The `runs` table: one row per attempt. A claim inserts it with a fresh lease token, and
 * every later write about the run (heartbeat, process, settlement, requeue) is fenced on
 * that token, so a runner that lost its lease writes nothing.
 */

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
 * Tasks waiting out a backoff (not_before) are not claimable yet.
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
            AND (tasks.not_before IS NULL OR tasks.not_before <= now())
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
    const claimed = await applyTransition(
      client,
      repo,
      task,
      { type: "claimed", runner: runner.runnerId },
      { actor: actor.runner(runner.runnerId), cause: `run:${run.id}` },
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

/** Milliseconds until the first queued task waiting out a backoff may be claimed (null: none). */
export async function nextBackoffEndsInMs(db: Queryable): Promise<number | null> {
  const result = await db.query<{ ms: number | null }>(
    `SELECT (EXTRACT(EPOCH FROM (min(not_before) - now())) * 1000)::float8 AS ms
       FROM tasks WHERE state = 'queued' AND not_before > now()`,
  );
  return result.rows[0]?.ms ?? null;
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

/**
 * The worker is running: its process, worktree and log, its profile and log format, and
 * when it started. Also copies the task's queued_at, so label-to-start latency stays known
 * after the task is queued again. Returns that latency in ms (database clock on both
 * ends), or null when the lease was lost.
 */
export async function recordRunProcess(
  db: Queryable,
  lease: Lease,
  process: {
    pid: number;
    pgid: number;
    worktree: string;
    logPath: string;
    profile: string;
    logFormat: LogFormat;
  },
): Promise<{ labelToStartMs: number } | null> {
  const result = await db.query<{ labelToStartMs: number }>(
    `UPDATE runs SET pid = $3, pgid = $4, worktree = $5, log_path = $6, profile = $7,
                     log_format = $8, worker_started_at = now(),
                     queued_at = (SELECT tasks.queued_at FROM tasks WHERE tasks.id = runs.task_id)
      WHERE id = $1 AND lease_token = $2 AND state = 'running'
      RETURNING (EXTRACT(EPOCH FROM worker_started_at - queued_at) * 1000)::float8 AS "labelToStartMs"`,
    [
      lease.runId,
      lease.token,
      process.pid,
      process.pgid,
      process.worktree,
      process.logPath,
      process.profile,
      process.logFormat,
    ],
  );
  return result.rows[0] ?? null;
}

/** What an agent reported about its session; null where it did not say. */
export interface AgentSummaryFields {
  turns: number | null;
  costUsd: number | null;
  durationMs: number | null;
  inputTokens: number | null;
  outputTokens: number | null;
  lastMessage: string | null;
}

/** What the agent reported about its session (turns, cost, tokens, last message). */
export async function recordAgentSummary(
  db: Queryable,
  lease: Lease,
  summary: AgentSummaryFields,
): Promise<boolean> {
  const result = await db.query(
    `UPDATE runs SET agent_turns = $3, agent_cost_usd = $4, agent_duration_ms = $5,
                     agent_input_tokens = $6, agent_output_tokens = $7, agent_last_message = $8
      WHERE id = $1 AND lease_token = $2 AND state = 'running'`,
    [
      lease.runId,
      lease.token,
      summary.turns,
      summary.costUsd,
      summary.durationMs,
      summary.inputTokens,
      summary.outputTokens,
      summary.lastMessage === null ? null : summary.lastMessage.slice(0, AGENT_MESSAGE_LIMIT),
    ],
  );
  return result.rowCount === 1;
}

/** The last message kept per run: enough for a status comment and a dashboard row. */
const AGENT_MESSAGE_LIMIT = 8_000;

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
  // The NOTIFY tells whoever follows the run's log (on any host) that it has ended.
  const run = await client.query<{ taskId: number }>(
    `WITH settled AS (
       UPDATE runs SET state = $3::run_state, finished_at = now(), exit_code = $4, signal = $5,
                       failure_reason = $6, head_sha = $7, charged = $8
        WHERE id = $1 AND lease_token = $2 AND state = 'running'
        RETURNING id, task_id)
     SELECT task_id AS "taskId", pg_notify($9, id::text) FROM settled`,
    [
      lease.runId,
      lease.token,
      settlement.outcome,
      settlement.exitCode ?? null,
      settlement.signal ?? null,
      settlement.failureReason ?? null,
      settlement.headSha ?? null,
      settlement.charged ?? true,
      CHANNELS.log,
    ],
  );
  const taskId = run.rows[0]?.taskId;
  if (taskId === undefined) return false;
  const event = settlement.event;
  const who = "runner" in event ? actor.runner(event.runner) : event.actor;
  await changeTaskIn(
    client,
    { id: taskId },
    settlement.event,
    {
      actor: who,
      cause: `run:${lease.runId}`,
      detail: {
        outcome: settlement.outcome,
        ...(settlement.failureReason ? { reason: settlement.failureReason } : {}),
      },
    },
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
export function requeueLostRun(
  client: PoolClient,
  run: RunRow,
  reason: string,
  by: string,
): Promise<boolean> {
  return settleRun(
    client,
    { runId: run.id, token: run.leaseToken },
    {
      outcome: "lost",
      failureReason: reason,
      charged: false,
      event: { type: "lease_lost", actor: by },
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

/** A final task whose worktree is still on `host`: everything removeWorktree needs. */
export interface LeftoverWorktree {
  taskId: number;
  /** Done: the PR was merged, so the branch may go too. */
  merged: boolean;
  repoFullName: string;
  cloneUrl: string;
  issueNumber: number;
  title: string;
  base: string;
  branch: string | null;
}

/** Worktrees on this host whose task is done or cancelled and no run of it is active. */
export async function findLeftoverWorktrees(
  db: Queryable,
  host: string,
  limit = 20,
): Promise<LeftoverWorktree[]> {
  const result = await db.query<LeftoverWorktree>(
    `SELECT DISTINCT ON (t.id) t.id AS "taskId", t.state = 'done' AS merged,
            r.full_name AS "repoFullName", r.clone_url AS "cloneUrl",
            t.issue_number AS "issueNumber", t.title,
            COALESCE(t.base_branch, r.default_branch) AS base, t.branch
       FROM runs
       JOIN tasks t ON t.id = runs.task_id
       JOIN repos r ON r.id = t.repo_id
      WHERE runs.host = $1 AND runs.worktree IS NOT NULL AND runs.worktree_removed_at IS NULL
        AND t.state IN ('done', 'cancelled')
        AND NOT EXISTS (SELECT 1 FROM runs active
                         WHERE active.task_id = t.id AND active.state = 'running')
      ORDER BY t.id
      LIMIT $2`,
    [host, limit],
  );
  return result.rows;
}

export async function markWorktreesRemoved(
  db: Queryable,
  taskId: number,
  host: string,
): Promise<void> {
  await db.query(
    `UPDATE runs SET worktree_removed_at = now()
      WHERE task_id = $1 AND host = $2 AND worktree IS NOT NULL AND worktree_removed_at IS NULL`,
    [taskId, host],
  );
}

/** Time the worker ran over all of a task's attempts (a running one counts until now). */
export async function totalRunTimeMs(db: Queryable, taskId: number): Promise<number> {
  const result = await db.query<{ ms: number | null }>(
    `SELECT COALESCE(sum(EXTRACT(EPOCH FROM (COALESCE(finished_at, now()) - started_at)) * 1000), 0)::float8 AS ms
       FROM runs WHERE task_id = $1`,
    [taskId],
  );
  return result.rows[0]?.ms ?? 0;
}
