import { DEFAULT_MAX_REVISIONS } from "../domain/transitions.js";
import { FINAL_STATES, TASK_STATES, type TaskSnapshot, type TaskState } from "../domain/types.js";
import type { Params } from "./params.js";
import type { Queryable } from "./pool.js";
import { REPO_JSON, type RepoRow } from "./repos.js";

export interface TaskRow {
  id: number;
  repoId: number;
  issueNumber: number;
  title: string;
  state: TaskState;
  priority: number;
  attempts: number;
  maxAttempts: number;
  riskLabelled: boolean;
  approvedBy: string | null;
  approvedSha: string | null;
  workerProfile: string | null;
  baseBranch: string | null;
  branch: string | null;
  /** The repository config in force when the task was (re)queued. */
  config: Record<string, unknown>;
  statusCommentId: number | null;
  stateLabel: string | null;
  labels: string[];
  lastError: string | null;
  summary: string | null;
  prNumber: number | null;
  prUrl: string | null;
  prHeadSha: string | null;
  mergeCommitSha: string | null;
  mergedAt: Date | null;
  mergedBy: string | null;
  createdAt: Date;
  updatedAt: Date;
  queuedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  /** Not claimable before this (backoff after an infrastructure failure). */
  notBefore: Date | null;
  /** Consecutive infrastructure failures; any other settlement resets it. */
  infraRetries: number;
  /** Revision runs charged; capped by maxRevisions (the repository's max_revisions). */
  revisions: number;
  maxRevisions: number;
  /** The next (or current) run revises the open PR instead of attempting afresh. */
  revisionPending: boolean;
  /** The `overseer` check run last written, and the commit it is on. */
  checkRunId: number | null;
  checkRunSha: string | null;
  checkRunStatus: string | null;
}

export const TASK_COLUMNS = `tasks.id, tasks.repo_id AS "repoId", tasks.issue_number AS "issueNumber",
  tasks.title, tasks.state, tasks.priority, tasks.attempts, tasks.max_attempts AS "maxAttempts",
  tasks.risk_labelled AS "riskLabelled", tasks.approved_by AS "approvedBy", tasks.approved_sha AS "approvedSha",
  tasks.worker_profile AS "workerProfile", tasks.base_branch AS "baseBranch", tasks.branch,
  tasks.config, tasks.status_comment_id AS "statusCommentId", tasks.state_label AS "stateLabel",
  tasks.labels, tasks.last_error AS "lastError", tasks.summary, tasks.pr_number AS "prNumber",
  tasks.pr_url AS "prUrl", tasks.pr_head_sha AS "prHeadSha",
  tasks.merge_commit_sha AS "mergeCommitSha", tasks.merged_at AS "mergedAt",
  tasks.merged_by AS "mergedBy", tasks.created_at AS "createdAt", tasks.updated_at AS "updatedAt",
  tasks.queued_at AS "queuedAt", tasks.started_at AS "startedAt", tasks.finished_at AS "finishedAt",
  tasks.not_before AS "notBefore", tasks.infra_retries AS "infraRetries",
  tasks.revisions, tasks.max_revisions AS "maxRevisions",
  tasks.revision_pending AS "revisionPending", tasks.check_run_id AS "checkRunId",
  tasks.check_run_sha AS "checkRunSha", tasks.check_run_status AS "checkRunStatus"`;

/** TaskRow's columns that are times, which JSON carries as text. */
const TASK_TIMES = [
  "mergedAt",
  "createdAt",
  "updatedAt",
  "queuedAt",
  "startedAt",
  "finishedAt",
  "notBefore",
] as const satisfies readonly (keyof TaskRow)[];

/**
 * A task row that came as one JSON value (`row_to_json` over TASK_COLUMNS): one column to
 * describe and parse instead of forty, for the statements that run most (the claim).
 */
export function taskFromJson(json: Record<string, unknown>): TaskRow {
  const task = { ...json } as Record<string, unknown>;
  for (const key of TASK_TIMES) {
    const value = task[key];
    task[key] = value === null || value === undefined ? null : new Date(value as string);
  }
  return task as unknown as TaskRow;
}

export function snapshotOf(task: TaskRow): TaskSnapshot {
  return {
    state: task.state,
    attempts: task.attempts,
    maxAttempts: task.maxAttempts,
    riskLabelled: task.riskLabelled,
    approvedBy: task.approvedBy,
    approvedSha: task.approvedSha,
    lastError: task.lastError,
    prNumber: task.prNumber,
    revisions: task.revisions,
    maxRevisions: task.maxRevisions,
    revisionPending: task.revisionPending,
  };
}

export interface NewTask {
  repoId: number;
  issueNumber: number;
  title: string;
  state: TaskState;
  priority: number;
  maxAttempts: number;
  riskLabelled: boolean;
  workerProfile: string | null;
  baseBranch: string | null;
  branch: string;
  config: Record<string, unknown>;
  labels: string[];
  /** Default DEFAULT_MAX_REVISIONS. */
  maxRevisions?: number;
}

/**
 * Creates the task for (repository, issue) unless it exists. Concurrent callers race on
 * the unique constraint; exactly one creates, the rest get null.
 */
export async function insertTaskIfAbsent(db: Queryable, task: NewTask): Promise<TaskRow | null> {
  const result = await db.query<TaskRow>(
    `INSERT INTO tasks (repo_id, issue_number, title, state, priority, max_attempts,
                        risk_labelled, worker_profile, base_branch, branch, config, labels,
                        max_revisions)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT ON CONSTRAINT tasks_one_per_issue DO NOTHING
     RETURNING ${TASK_COLUMNS}`,
    [
      task.repoId,
      task.issueNumber,
      task.title,
      task.state,
      task.priority,
      task.maxAttempts,
      task.riskLabelled,
      task.workerProfile,
      task.baseBranch,
      task.branch,
      JSON.stringify(task.config),
      task.labels,
      task.maxRevisions ?? DEFAULT_MAX_REVISIONS,
    ],
  );
  return result.rows[0] ?? null;
}

/** A task by its id, or by its repository and issue. */
export type TaskRef = { id: number } | { repoId: number; issueNumber: number };

/**
 * Locks the task row for the rest of the transaction and reads its repository with it
 * (every state change goes through here, see task-changes.ts).
 */
export async function lockTaskWithRepo(
  db: Queryable,
  ref: TaskRef,
): Promise<{ task: TaskRow; repo: RepoRow } | null> {
  const where = "id" in ref ? "tasks.id = $1" : "tasks.repo_id = $1 AND tasks.issue_number = $2";
  const values = "id" in ref ? [ref.id] : [ref.repoId, ref.issueNumber];
  // Named (two shapes), so each connection plans it once: every state change starts here.
  const result = await db.query<TaskRow & { repo: RepoRow }>({
    name: "id" in ref ? "overseer-lock-task-by-id" : "overseer-lock-task-by-issue",
    text: `SELECT ${TASK_COLUMNS}, ${REPO_JSON} AS repo
       FROM tasks JOIN repos ON repos.id = tasks.repo_id
      WHERE ${where}
        FOR UPDATE OF tasks`,
    values,
  });
  const row = result.rows[0];
  if (!row) return null;
  const { repo, ...task } = row;
  return { task, repo };
}

export async function getTask(db: Queryable, id: number): Promise<TaskRow | null> {
  const result = await db.query<TaskRow>(`SELECT ${TASK_COLUMNS} FROM tasks WHERE id = $1`, [id]);
  return result.rows[0] ?? null;
}

export async function findTask(
  db: Queryable,
  repoId: number,
  issueNumber: number,
): Promise<TaskRow | null> {
  const result = await db.query<TaskRow>(
    `SELECT ${TASK_COLUMNS} FROM tasks WHERE repo_id = $1 AND issue_number = $2`,
    [repoId, issueNumber],
  );
  return result.rows[0] ?? null;
}

/** The task that owns a pull request, by its recorded number or by its head branch. */
export async function findTaskByPullRequest(
  db: Queryable,
  repoId: number,
  pr: { number: number; headRef: string | null },
): Promise<TaskRow | null> {
  const result = await db.query<TaskRow>(
    `SELECT ${TASK_COLUMNS} FROM tasks
      WHERE repo_id = $1 AND (pr_number = $2 OR ($3::text IS NOT NULL AND branch = $3))
      ORDER BY (pr_number = $2) DESC NULLS LAST LIMIT 1`,
    [repoId, pr.number, pr.headRef],
  );
  return result.rows[0] ?? null;
}

/** Fields a transition may change, beyond the snapshot itself. */
export interface TaskChanges {
  title?: string;
  labels?: string[];
  config?: Record<string, unknown>;
  maxAttempts?: number;
  maxRevisions?: number;
  riskLabelled?: boolean;
  priority?: number;
  workerProfile?: string | null;
  baseBranch?: string | null;
  branch?: string;
  summary?: string | null;
  prUrl?: string | null;
  prHeadSha?: string | null;
  mergeCommitSha?: string;
  mergedAt?: Date;
  mergedBy?: string | null;
  notBefore?: Date | null;
  infraRetries?: number;
}

const CHANGE_COLUMNS: Record<keyof TaskChanges, string> = {
  title: "title",
  labels: "labels",
  config: "config",
  maxAttempts: "max_attempts",
  maxRevisions: "max_revisions",
  riskLabelled: "risk_labelled",
  priority: "priority",
  workerProfile: "worker_profile",
  baseBranch: "base_branch",
  branch: "branch",
  summary: "summary",
  prUrl: "pr_url",
  prHeadSha: "pr_head_sha",
  mergeCommitSha: "merge_commit_sha",
  mergedAt: "merged_at",
  mergedBy: "merged_by",
  notBefore: "not_before",
  infraRetries: "infra_retries",
};

/**
 * Writes a transition's outcome (the caller holds the row lock, see lockTask, or checks
 * the row in the same statement), as the first part of a statement that also writes its
 * audit event and effects; `condition`, an SQL boolean, must hold too.
 */
export function updateTaskSql(
  params: Params,
  id: number,
  next: TaskSnapshot,
  previous: TaskState,
  changes: TaskChanges = {},
  condition?: string,
): string {
  const state = `${params.add(next.state)}::task_state`;
  const before = `${params.add(previous)}::task_state`;
  const sets = [
    `state = ${state}`,
    `attempts = ${params.add(next.attempts)}`,
    `last_error = ${params.add(next.lastError)}`,
    `approved_by = ${params.add(next.approvedBy)}`,
    `approved_sha = ${params.add(next.approvedSha)}`,
    `risk_labelled = ${params.add(next.riskLabelled)}`,
    `pr_number = ${params.add(next.prNumber)}`,
    `revisions = ${params.add(next.revisions)}`,
    `revision_pending = ${params.add(next.revisionPending)}`,
    ...stateTimesSql(state, before, `${params.add(FINAL_STATES)}::task_state[]`),
  ];
  for (const [key, value] of Object.entries(changes) as [keyof TaskChanges, unknown][]) {
    // The risk flag is part of the snapshot, written above as the transition left it.
    if (value === undefined || key === "riskLabelled") continue;
    sets.push(
      `${CHANGE_COLUMNS[key]} = ${params.add(key === "config" ? JSON.stringify(value) : value)}`,
    );
  }
  return `UPDATE tasks SET ${sets.join(", ")}
           WHERE id = ${params.add(id)}::bigint AND state = ${before}${condition ? ` AND ${condition}` : ""}
          RETURNING ${TASK_COLUMNS}`;
}

/**
 * The SET clauses for the times a state change moves (`state`, `before`: SQL expressions of
 * type task_state; `finalStates`: a task_state[] expression): every write of a task's state
 * goes through here, the claim statement's too.
 */
export function stateTimesSql(state: string, before: string, finalStates: string): string[] {
  return [
    "updated_at = now()",
    // Back from running means requeued through no fault of its own (a runner died, shut
    // down, or met an outage): it keeps its place in the queue.
    `queued_at = CASE WHEN ${state} = 'queued' AND ${before} NOT IN ('queued', 'running')
       THEN now() ELSE queued_at END`,
    `started_at = CASE WHEN ${state} = 'running' AND ${before} <> 'running'
       THEN now() ELSE started_at END`,
    `finished_at = CASE WHEN ${state} = ANY(${finalStates}) THEN
       CASE WHEN ${before} = ${state} THEN finished_at ELSE now() END ELSE NULL END`,
  ];
}

export async function setStatusCommentId(db: Queryable, id: number, commentId: number) {
  await db.query("UPDATE tasks SET status_comment_id = $2 WHERE id = $1", [id, commentId]);
}

export async function setStateLabel(db: Queryable, id: number, label: string | null) {
  await db.query("UPDATE tasks SET state_label = $2 WHERE id = $1", [id, label]);
}

/** The check run the outbox last wrote for the task, and the commit it is on. */
export async function setCheckRun(
  db: Queryable,
  id: number,
  checkRun: { id: number; sha: string; status: string },
) {
  await db.query(
    "UPDATE tasks SET check_run_id = $2, check_run_sha = $3, check_run_status = $4 WHERE id = $1",
    [id, checkRun.id, checkRun.sha, checkRun.status],
  );
}

/**
 * The worker profile an `agent:` label picked (or null: back to the repository's), with
 * the labels seen. Not a state change: the next run uses it; a running one keeps its own.
 */
export async function setWorkerProfile(
  db: Queryable,
  id: number,
  change: { workerProfile: string | null; labels: string[] },
): Promise<void> {
  await db.query("UPDATE tasks SET worker_profile = $2, labels = $3 WHERE id = $1", [
    id,
    change.workerProfile,
    change.labels,
  ]);
}

export async function countTasksByState(db: Queryable): Promise<Record<TaskState, number>> {
  const result = await db.query<{ state: TaskState; count: number }>(
    "SELECT state, count(*)::int AS count FROM tasks GROUP BY state",
  );
  const counts = Object.fromEntries(TASK_STATES.map((state) => [state, 0])) as Record<
    TaskState,
    number
  >;
  for (const row of result.rows) counts[row.state] = row.count;
  return counts;
}

/**
 * Records the PR's new head commit (someone pushed to it) while the task awaits merge;
 * false when the task has moved on meanwhile (a revision started, the PR merged).
 */
export async function movePullHead(
  db: Queryable,
  id: number,
  pull: { prNumber: number; sha: string },
): Promise<boolean> {
  const result = await db.query(
    `UPDATE tasks SET pr_head_sha = $3
      WHERE id = $1 AND pr_number = $2 AND state = 'awaiting_merge'
        AND pr_head_sha IS DISTINCT FROM $3`,
    [id, pull.prNumber, pull.sha],
  );
  return result.rowCount === 1;
}

/** Why a task looks stuck: the watchdog's three cases (see findStuckTasks). */
export type StuckReason = "running_without_run" | "queued_unclaimable" | "queued_unclaimed";

export interface StuckTask {
  id: number;
  state: TaskState;
  why: StuckReason;
  /** Seconds in this state (since its last change, by the database's clock). */
  forSeconds: number;
  attempts: number;
  maxAttempts: number;
  installationId: number | null;
  repoFullName: string;
  issueNumber: number;
}

/**
 * Tasks in one state past a threshold with nothing to explain it:
 * - running, with no run running for longer than a lease (nothing will ever settle it);
 * - queued with its attempts (or revisions) used up, so no claim can take it;
 * - queued and claimable for longer than `queuedAfterMs` while a runner heartbeats, its
 *   repository has a free slot and its profile is not paused (waiting for a backoff, an
 *   approval or a merge is explained, and not a finding).
 */
export async function findStuckTasks(
  db: Queryable,
  limits: { runningGraceMs: number; queuedAfterMs: number; staleAfterMs: number },
): Promise<StuckTask[]> {
  const result = await db.query<StuckTask>(
    `SELECT * FROM (
       SELECT t.id, t.state,
              CASE
                WHEN t.state = 'running' THEN 'running_without_run'
                WHEN CASE WHEN t.revision_pending THEN t.revisions >= t.max_revisions
                          ELSE t.attempts >= t.max_attempts END THEN 'queued_unclaimable'
                ELSE 'queued_unclaimed' END AS why,
              (EXTRACT(EPOCH FROM now() - t.updated_at))::float8 AS "forSeconds",
              t.attempts, t.max_attempts AS "maxAttempts",
              r.installation_id AS "installationId", r.full_name AS "repoFullName",
              t.issue_number AS "issueNumber", t.updated_at, t.not_before,
              r.running < COALESCE((t.config->>'concurrency')::int, 2) AS "repoHasRoom",
              EXISTS (SELECT 1 FROM worker_profiles wp
                       WHERE wp.name = COALESCE(t.worker_profile, t.config->>'worker')
                         AND wp.paused_until > now()) AS paused
         FROM tasks t JOIN repos r ON r.id = t.repo_id
        WHERE t.state IN ('running', 'queued')
          AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.task_id = t.id AND runs.state = 'running')
     ) candidate
     WHERE (why = 'running_without_run'
             AND updated_at < now() - $1 * interval '1 millisecond')
        OR why = 'queued_unclaimable'
        OR (why = 'queued_unclaimed'
             AND updated_at < now() - $2 * interval '1 millisecond'
             AND (not_before IS NULL OR not_before <= now())
             AND "repoHasRoom" AND NOT paused
             AND EXISTS (SELECT 1 FROM runners WHERE stopped_at IS NULL
                           AND heartbeat_at >= now() - $3 * interval '1 millisecond'))
     ORDER BY id LIMIT 100`,
    [limits.runningGraceMs, limits.queuedAfterMs, limits.staleAfterMs],
  );
  return result.rows.map(({ id, state, why, forSeconds, attempts, maxAttempts, ...rest }) => ({
    id,
    state,
    why,
    forSeconds,
    attempts,
    maxAttempts,
    installationId: rest.installationId,
    repoFullName: rest.repoFullName,
    issueNumber: rest.issueNumber,
  }));
}

/** Queued tasks per worker profile (by the profile they run with), for these profiles. */
export async function countWaitingForProfile(
  db: Queryable,
  profiles: string[],
): Promise<Map<string, number>> {
  if (profiles.length === 0) return new Map();
  const result = await db.query<{ profile: string; waiting: number }>(
    `SELECT COALESCE(worker_profile, config->>'worker') AS profile, count(*)::int AS waiting
       FROM tasks WHERE state = 'queued'
        AND COALESCE(worker_profile, config->>'worker') = ANY($1)
      GROUP BY 1`,
    [profiles],
  );
  return new Map(result.rows.map((row) => [row.profile, row.waiting]));
}
