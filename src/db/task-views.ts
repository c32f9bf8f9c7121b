import { TASK_STATES, type TaskState } from "../domain/types.js";
import { InputError } from "../errors.js";
import type { Queryable } from "./pool.js";

/**
 * Read models for the operator surface (CLI and dashboard): tasks, their runs and events
 * in the shapes `overseer … --json` prints. Reads only; every change goes through
 * task-changes.ts.
 */

/** One row of `overseer tasks --json` (DESIGN.md, Operator surface). */
export interface TaskListItem {
  id: number;
  repo: string;
  issue: number;
  title: string;
  state: TaskState;
  attempts: number;
  maxAttempts: number;
  branch: string | null;
  pr: number | null;
  profile: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface TaskFilter {
  state?: TaskState;
  /** owner/name, matched as GitHub does: case-insensitively. */
  repo?: string;
  /** Words matched against title, repository, branch; a number also matches the issue. */
  search?: string;
  limit?: number;
}

const LIST_COLUMNS = `tasks.id, repos.full_name AS repo, tasks.issue_number AS issue, tasks.title,
  tasks.state, tasks.attempts, tasks.max_attempts AS "maxAttempts", tasks.branch,
  tasks.pr_number AS pr, tasks.worker_profile AS profile, tasks.created_at AS "createdAt",
  tasks.updated_at AS "updatedAt"`;

export const DEFAULT_LIST_LIMIT = 500;

export async function listTasks(db: Queryable, filter: TaskFilter = {}): Promise<TaskListItem[]> {
  const where: string[] = [];
  const values: unknown[] = [];
  const add = (value: unknown) => {
    values.push(value);
    return `$${values.length}`;
  };
  if (filter.state) where.push(`tasks.state = ${add(filter.state)}::task_state`);
  if (filter.repo) where.push(`lower(repos.full_name) = lower(${add(filter.repo)})`);
  for (const word of (filter.search ?? "").split(/\s+/).filter(Boolean).slice(0, 8)) {
    const pattern = add(`%${word.replace(/[\\%_]/g, "\\$&")}%`);
    const issue = /^#?(\d{1,9})$/.exec(word)?.[1];
    where.push(
      `(tasks.title ILIKE ${pattern} OR repos.full_name ILIKE ${pattern} OR tasks.branch ILIKE ${pattern}${
        issue
          ? ` OR tasks.issue_number = ${add(Number(issue))} OR tasks.id = ${add(Number(issue))}`
          : ""
      })`,
    );
  }
  const limit = add(Math.min(Math.max(1, filter.limit ?? DEFAULT_LIST_LIMIT), 5_000));
  const result = await db.query<TaskListItem>(
    `SELECT ${LIST_COLUMNS} FROM tasks JOIN repos ON repos.id = tasks.repo_id
      ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY tasks.updated_at DESC, tasks.id DESC LIMIT ${limit}`,
    values,
  );
  return result.rows;
}

/** How an operator names a task: its id, or `owner/name#N`. */
export type TaskName = { id: number } | { repo: string; issue: number };

export function parseTaskName(text: string): TaskName {
  const trimmed = text.trim();
  if (/^\d{1,15}$/.test(trimmed)) return { id: Number(trimmed) };
  const match = /^([A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+)#(\d{1,9})$/.exec(trimmed);
  if (match?.[1] && match[2]) return { repo: match[1], issue: Number(match[2]) };
  throw new InputError(
    `${JSON.stringify(text)} is not a task: give its id (e.g. 42) or owner/name#issue (e.g. octo/widgets#17)`,
  );
}

/** The task's id, or null when there is no such task. */
export async function findTaskId(db: Queryable, name: TaskName): Promise<number | null> {
  const result =
    "id" in name
      ? await db.query<{ id: number }>("SELECT id FROM tasks WHERE id = $1", [name.id])
      : await db.query<{ id: number }>(
          `SELECT tasks.id FROM tasks JOIN repos ON repos.id = tasks.repo_id
            WHERE lower(repos.full_name) = lower($1) AND tasks.issue_number = $2`,
          [name.repo, name.issue],
        );
  return result.rows[0]?.id ?? null;
}

export function describeTaskName(name: TaskName): string {
  return "id" in name ? `task ${name.id}` : `task for ${name.repo}#${name.issue}`;
}

/** A run as `overseer show` lists it. `outcome` is `running` while it runs. */
export interface RunView {
  id: number;
  attempt: number;
  outcome: string;
  reason: string | null;
  startedAt: Date;
  endedAt: Date | null;
  host: string;
  runner: string;
  profile: string | null;
  logFormat: string;
  durationMs: number;
  exitCode: number | null;
  signal: string | null;
  /** While it runs: when the lease was last renewed. */
  heartbeatAt: Date;
  stopRequestedAt: Date | null;
  turns: number | null;
  costUsd: number | null;
  inputTokens: number | null;
  outputTokens: number | null;
  lastMessage: string | null;
  logPath: string | null;
}

const RUN_VIEW_COLUMNS = `runs.id, runs.attempt, runs.state::text AS outcome,
  runs.failure_reason AS reason, runs.started_at AS "startedAt", runs.finished_at AS "endedAt",
  runs.host, runs.runner_id AS runner, runs.profile, runs.log_format AS "logFormat",
  (EXTRACT(EPOCH FROM COALESCE(runs.finished_at, now()) - runs.started_at) * 1000)::float8 AS "durationMs",
  runs.exit_code AS "exitCode", runs.signal, runs.heartbeat_at AS "heartbeatAt",
  runs.stop_requested_at AS "stopRequestedAt", runs.agent_turns AS turns,
  runs.agent_cost_usd::float8 AS "costUsd", runs.agent_input_tokens AS "inputTokens",
  runs.agent_output_tokens AS "outputTokens", runs.agent_last_message AS "lastMessage",
  runs.log_path AS "logPath"`;

export async function listRunsOfTask(db: Queryable, taskId: number): Promise<RunView[]> {
  const result = await db.query<RunView>(
    `SELECT ${RUN_VIEW_COLUMNS} FROM runs WHERE runs.task_id = $1 ORDER BY runs.id`,
    [taskId],
  );
  return result.rows;
}

export async function getRunView(db: Queryable, runId: number): Promise<RunView | null> {
  const result = await db.query<RunView>(
    `SELECT ${RUN_VIEW_COLUMNS} FROM runs WHERE runs.id = $1`,
    [runId],
  );
  return result.rows[0] ?? null;
}

/** An audit-trail entry as `overseer show` lists it. */
export interface EventView {
  at: Date;
  type: string;
  actor: string;
  cause: string | null;
  from: TaskState | null;
  to: TaskState | null;
  detail: Record<string, unknown>;
}

export async function listEventsOfTask(db: Queryable, taskId: number): Promise<EventView[]> {
  const result = await db.query<EventView>(
    `SELECT at, event AS type, actor, cause, from_state AS "from", to_state AS "to", detail
       FROM task_events WHERE task_id = $1 ORDER BY id`,
    [taskId],
  );
  return result.rows;
}

export interface Evidence {
  pr: number;
  prUrl: string;
  mergeCommitSha: string;
  mergedAt: Date;
  mergedBy: string | null;
}

/** Everything `overseer show` prints about a task. */
export interface TaskDetail extends TaskListItem {
  riskLabelled: boolean;
  approvedBy: string | null;
  baseBranch: string | null;
  prUrl: string | null;
  lastError: string | null;
  summary: string | null;
  queuedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  notBefore: Date | null;
  evidence: Evidence | null;
  runs: RunView[];
  events: EventView[];
}

export async function getTaskDetail(db: Queryable, id: number): Promise<TaskDetail | null> {
  const result = await db.query<
    Omit<TaskDetail, "evidence" | "runs" | "events"> & {
      mergeCommitSha: string | null;
      mergedAt: Date | null;
      mergedBy: string | null;
    }
  >(
    `SELECT ${LIST_COLUMNS}, tasks.risk_labelled AS "riskLabelled", tasks.approved_by AS "approvedBy",
            tasks.base_branch AS "baseBranch", tasks.pr_url AS "prUrl",
            tasks.last_error AS "lastError", tasks.summary, tasks.queued_at AS "queuedAt",
            tasks.started_at AS "startedAt", tasks.finished_at AS "finishedAt",
            tasks.not_before AS "notBefore", tasks.merge_commit_sha AS "mergeCommitSha",
            tasks.merged_at AS "mergedAt", tasks.merged_by AS "mergedBy"
       FROM tasks JOIN repos ON repos.id = tasks.repo_id WHERE tasks.id = $1`,
    [id],
  );
  const row = result.rows[0];
  if (!row) return null;
  const { mergeCommitSha, mergedAt, mergedBy, ...task } = row;
  const evidence =
    task.pr !== null && task.prUrl && mergeCommitSha && mergedAt
      ? { pr: task.pr, prUrl: task.prUrl, mergeCommitSha, mergedAt, mergedBy }
      : null;
  const [runs, events] = await Promise.all([listRunsOfTask(db, id), listEventsOfTask(db, id)]);
  return { ...task, evidence, runs, events };
}

/** How much work waits, and for how long. */
export interface QueueView {
  /** Tasks in `queued`. */
  depth: number;
  /** Of those, the ones a runner could take now (approved, under attempts, no backoff). */
  claimable: number;
  awaitingApproval: number;
  running: number;
  oldestQueuedAt: Date | null;
  /** Seconds the oldest claimable task has waited (database clock). */
  oldestClaimableAgeSeconds: number | null;
}

export async function queueView(db: Queryable): Promise<QueueView> {
  const result = await db.query<QueueView>(
    `SELECT count(*) FILTER (WHERE state = 'queued')::int AS depth,
            count(*) FILTER (WHERE state = 'queued' AND (NOT risk_labelled OR approved_by IS NOT NULL)
                               AND attempts < max_attempts
                               AND (not_before IS NULL OR not_before <= now()))::int AS claimable,
            count(*) FILTER (WHERE state = 'awaiting_approval')::int AS "awaitingApproval",
            count(*) FILTER (WHERE state = 'running')::int AS running,
            min(queued_at) FILTER (WHERE state = 'queued') AS "oldestQueuedAt",
            (EXTRACT(EPOCH FROM now() - min(COALESCE(not_before, queued_at)) FILTER (
               WHERE state = 'queued' AND (NOT risk_labelled OR approved_by IS NOT NULL)
                 AND attempts < max_attempts AND (not_before IS NULL OR not_before <= now()))))::float8
              AS "oldestClaimableAgeSeconds"
       FROM tasks WHERE state IN ('queued', 'awaiting_approval', 'running')`,
  );
  const row = result.rows[0];
  return (
    row ?? {
      depth: 0,
      claimable: 0,
      awaitingApproval: 0,
      running: 0,
      oldestQueuedAt: null,
      oldestClaimableAgeSeconds: null,
    }
  );
}

export function isTaskState(value: string): value is TaskState {
  return (TASK_STATES as readonly string[]).includes(value);
}

/** The task's newest run (the one `overseer logs` shows), or null before its first. */
export async function latestRunView(db: Queryable, taskId: number): Promise<RunView | null> {
  const result = await db.query<RunView>(
    `SELECT ${RUN_VIEW_COLUMNS} FROM runs WHERE runs.task_id = $1 ORDER BY runs.id DESC LIMIT 1`,
    [taskId],
  );
  return result.rows[0] ?? null;
}

/** A run in progress, for the runners page. */
export interface ActiveRunView {
  runId: number;
  taskId: number;
  repo: string;
  issue: number;
  runner: string;
  host: string;
  startedAt: Date;
  /** Seconds since its lease was last renewed (database clock). */
  heartbeatAgeSeconds: number;
  stopRequested: boolean;
}

export async function listActiveRuns(db: Queryable): Promise<ActiveRunView[]> {
  const result = await db.query<ActiveRunView>(
    `SELECT runs.id AS "runId", runs.task_id AS "taskId", repos.full_name AS repo,
            tasks.issue_number AS issue, runs.runner_id AS runner, runs.host,
            runs.started_at AS "startedAt",
            (EXTRACT(EPOCH FROM now() - runs.heartbeat_at))::float8 AS "heartbeatAgeSeconds",
            runs.stop_requested_at IS NOT NULL AS "stopRequested"
       FROM runs JOIN tasks ON tasks.id = runs.task_id JOIN repos ON repos.id = tasks.repo_id
      WHERE runs.state = 'running'
      ORDER BY runs.started_at`,
  );
  return result.rows;
}

/** A row of `overseer tasks --json` and GET /api/tasks (DESIGN.md's fields, and the title). */
export function taskListJson(task: TaskListItem) {
  return {
    id: task.id,
    repo: task.repo,
    issue: task.issue,
    title: task.title,
    state: task.state,
    attempts: task.attempts,
    maxAttempts: task.maxAttempts,
    branch: task.branch,
    pr: task.pr,
    profile: task.profile,
    updatedAt: task.updatedAt,
  };
}

/** `overseer show --json` and GET /api/tasks/:id: the task, its runs, events and evidence. */
export function taskDetailJson(detail: TaskDetail) {
  const { runs, events, ...task } = detail;
  return {
    ...task,
    runs: runs.map((run) => ({
      id: run.id,
      attempt: run.attempt,
      outcome: run.outcome,
      reason: run.reason,
      startedAt: run.startedAt,
      endedAt: run.endedAt,
      host: run.host,
      runner: run.runner,
      profile: run.profile,
      durationMs: Math.round(run.durationMs),
      exitCode: run.exitCode,
      signal: run.signal,
      turns: run.turns,
      costUsd: run.costUsd,
      inputTokens: run.inputTokens,
      outputTokens: run.outputTokens,
      lastMessage: run.lastMessage,
    })),
    events,
  };
}
