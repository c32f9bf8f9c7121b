import { createHash } from "node:crypto";
import type { RepoConfig } from "../config/repo-config.js";
import { branchName } from "../domain/branch.js";
import { agentProfileFromLabels, hasRiskLabel, priorityFromLabels } from "../domain/labels.js";
import { createTask, transition } from "../domain/transitions.js";
import type { Effect, TaskEvent, TaskState } from "../domain/types.js";
import { CHANNELS } from "./notify.js";
import { enqueueOutbox, enqueueOutboxSql, type NewOutboxEntry } from "./outbox.js";
import { Params, withClause } from "./params.js";
import { type Pool, type Queryable, withTransaction } from "./pool.js";
import type { RepoRow } from "./repos.js";
import { appendTaskEventSql, type Cause } from "./task-events.js";
import {
  insertTaskIfAbsent,
  lockTaskWithRepo,
  snapshotOf,
  type TaskChanges,
  type TaskRef,
  type TaskRow,
  updateTaskSql,
} from "./tasks.js";

/**
 * The one write path for task state. Every change, from a webhook, a runner, the CLI, the
 * dashboard or the watchdog, comes through here: lock the task, run the pure transition,
 * then write the task, its audit event (with the actor and cause) and its GitHub effects
 * (outbox entries, stop requests, runner wake-ups) in one statement of one transaction.
 */

export type ChangeResult =
  /** `previous`: the state the task was in when the lock was taken (null: just created). */
  | { ok: true; task: TaskRow; effects: Effect[]; previous: TaskState | null }
  | { ok: false; reason: string; task: TaskRow };

/** Applies `event` to the task in a transaction of its own; null when there is no such task. */
export function changeTask(
  pool: Pool,
  ref: TaskRef,
  event: TaskEvent,
  cause: Cause,
  changes: TaskChanges = {},
): Promise<ChangeResult | null> {
  return withTransaction(pool, (client) => changeTaskIn(client, ref, event, cause, changes));
}

/** The same inside the caller's transaction (say, the one that records a delivery). */
export async function changeTaskIn(
  client: Queryable,
  ref: TaskRef,
  event: TaskEvent,
  cause: Cause,
  changes: TaskChanges = {},
): Promise<ChangeResult | null> {
  const locked = await lockTaskWithRepo(client, ref);
  if (!locked) return null;
  return applyTransition(client, locked.repo, locked.task, event, cause, changes);
}

/**
 * For a task the caller has already locked (the claim locks it with SKIP LOCKED). Facts
 * that arrive with the event and that the state machine reasons about (the risk flag, the
 * attempt limit) are applied before the transition, so it decides on what is true now.
 */
export async function applyTransition(
  client: Queryable,
  repo: RepoRow,
  locked: TaskRow,
  event: TaskEvent,
  cause: Cause,
  changes: TaskChanges = {},
): Promise<ChangeResult> {
  const task: TaskRow = {
    ...locked,
    riskLabelled: changes.riskLabelled ?? locked.riskLabelled,
    maxAttempts: changes.maxAttempts ?? locked.maxAttempts,
    maxRevisions: changes.maxRevisions ?? locked.maxRevisions,
  };
  const result = transition(snapshotOf(task), event);
  if (!result.ok) return { ok: false, reason: result.reason, task: locked };
  const next = result.task;
  const writes = outboxEntriesFor(repo, task, result.effects, cause);
  if (next.state === "awaiting_merge" && task.state !== "awaiting_merge") {
    const merge = autoMergeEntry(repo, {
      ...task,
      state: next.state,
      prNumber: next.prNumber,
      config: changes.config ?? task.config,
    });
    if (merge) writes.push(merge);
  }
  const params = new Params();
  const updated = await runTransitionStatement(client, params, {
    update: updateTaskSql(params, task.id, next, locked.state, changes),
    taskId: task.id,
    audit: {
      taskId: task.id,
      event: event.type === "command" ? `command:${event.command}` : event.type,
      fromState: locked.state,
      toState: next.state,
      ...cause,
    },
    writes,
    effects: result.effects,
    actor: cause.actor,
    fromState: locked.state,
  });
  if (!updated) {
    throw new Error(`task ${task.id} changed state under a held lock (expected ${locked.state})`);
  }
  return { ok: true, task: updated, effects: result.effects, previous: locked.state };
}

/**
 * The trigger label was added (or `/run` said so): creates the task for the issue, or
 * re-queues the existing one. Concurrent deliveries for one issue race on the (repository,
 * issue) constraint: one creates, the others find the task and apply `labeled` to it.
 */
export async function queueTaskFor(
  client: Queryable,
  repo: RepoRow,
  issue: { number: number; title: string; labels: readonly string[] },
  config: RepoConfig,
  cause: Cause & { login: string },
): Promise<ChangeResult> {
  const labels = [...issue.labels];
  const riskLabelled = hasRiskLabel(labels, config.riskLabels);
  const workerProfile = agentProfileFromLabels(labels).profile ?? config.worker;
  const facts: TaskChanges = {
    title: issue.title,
    labels,
    config: { ...config } as Record<string, unknown>,
    maxAttempts: config.maxAttempts,
    maxRevisions: config.maxRevisions,
    riskLabelled,
    priority: priorityFromLabels(labels),
    workerProfile,
    baseBranch: config.base ?? repo.defaultBranch,
  };
  const fresh = createTask({
    maxAttempts: config.maxAttempts,
    maxRevisions: config.maxRevisions,
    riskLabelled,
  });
  const inserted = await insertTaskIfAbsent(client, {
    repoId: repo.id,
    issueNumber: issue.number,
    title: issue.title,
    state: fresh.task.state,
    priority: facts.priority ?? 2,
    maxAttempts: config.maxAttempts,
    riskLabelled,
    workerProfile,
    baseBranch: facts.baseBranch ?? null,
    branch: branchName(issue.number, issue.title),
    config: facts.config ?? {},
    labels,
    maxRevisions: config.maxRevisions,
  });
  if (inserted) {
    const params = new Params();
    await runTransitionStatement(client, params, {
      taskId: inserted.id,
      audit: {
        taskId: inserted.id,
        event: "labeled",
        fromState: null,
        toState: inserted.state,
        ...cause,
      },
      writes: outboxEntriesFor(repo, inserted, fresh.effects, cause),
      effects: fresh.effects,
      actor: cause.actor,
      fromState: null,
    });
    return { ok: true, task: inserted, effects: fresh.effects, previous: null };
  }
  const result = await changeTaskIn(
    client,
    { repoId: repo.id, issueNumber: issue.number },
    { type: "labeled", actor: cause.login },
    cause,
    facts,
  );
  if (!result) throw new Error(`task for ${repo.fullName}#${issue.number} vanished`);
  return result;
}

/**
 * Queues a merge attempt for a task awaiting merge under `merge: auto`; a no-op otherwise.
 * The dispatcher re-checks everything (checks, reviews, approval) right before merging.
 */
export async function enqueueAutoMerge(db: Queryable, repo: RepoRow, task: TaskRow): Promise<void> {
  const merge = autoMergeEntry(repo, task);
  if (merge) await enqueueOutbox(db, merge);
}

function autoMergeEntry(
  repo: RepoRow,
  task: Pick<TaskRow, "id" | "issueNumber" | "state" | "prNumber" | "config">,
): NewOutboxEntry | null {
  if (task.state !== "awaiting_merge" || task.prNumber === null) return null;
  if ((task.config as { merge?: string }).merge !== "auto") return null;
  return {
    taskId: task.id,
    installationId: repo.installationId ?? 0,
    repoFullName: repo.fullName,
    kind: "merge_pr",
    payload: { issueNumber: task.issueNumber, prNumber: task.prNumber },
    key: { coalesce: `merge:${task.id}` },
  };
}

interface TransitionWrites {
  /** The task's UPDATE (absent when the row was just inserted). */
  update?: string;
  taskId: number;
  audit: {
    taskId: number;
    event: string;
    fromState: TaskState | null;
    toState: TaskState | null;
  } & Cause;
  writes: NewOutboxEntry[];
  effects: Effect[];
  actor: string;
  /** The state before the change (null for a new task). */
  fromState: TaskState | null;
}

/**
 * One round trip: the task's update, its audit event, its outbox entries, the stop request
 * for its active run, and the NOTIFYs that wake dispatchers and runners (delivered when
 * the caller's transaction commits). Returns the updated row (or null if the update found
 * the task in another state, which the held lock rules out).
 */
async function runTransitionStatement(
  client: Queryable,
  params: Params,
  plan: TransitionWrites,
): Promise<TaskRow | null> {
  const ctes: [string, string][] = [];
  if (plan.update) ctes.push(["updated", plan.update]);
  ctes.push(["audit", appendTaskEventSql(params, plan.audit)]);
  ctes.push(...enqueueOutboxSql(params, plan.writes));
  const signals: string[] = [];
  if (plan.writes.length > 0) signals.push(`pg_notify(${params.add(CHANNELS.outbox)}, '')`);
  if (plan.effects.some((effect) => effect.type === "stop_run")) {
    ctes.push([
      "stopping",
      `UPDATE runs SET stop_requested_at = COALESCE(stop_requested_at, now()),
                       stop_requested_by = COALESCE(stop_requested_by, ${params.add(plan.actor)})
        WHERE task_id = ${params.add(plan.taskId)}::bigint AND state = 'running'
        RETURNING id`,
    ]);
    signals.push(
      `(SELECT count(pg_notify(${params.add(CHANNELS.stop)}, stopping.id::text)) FROM stopping)`,
    );
  }
  if (plan.effects.some((effect) => effect.type === "close_revision")) {
    // A revision that ran closes its requests in the name of its run; one withdrawn before
    // it started (or made moot) closes them with none.
    const ranIt =
      plan.fromState === "running"
        ? `(SELECT max(id) FROM runs WHERE task_id = ${params.add(plan.taskId)}::bigint)`
        : "NULL";
    ctes.push([
      "closed_requests",
      `UPDATE revision_requests SET closed_at = now(), run_id = ${ranIt}
        WHERE task_id = ${params.add(plan.taskId)}::bigint AND closed_at IS NULL`,
    ]);
  }
  if (plan.effects.some((effect) => effect.type === "wake_runners")) {
    signals.push(`pg_notify(${params.add(CHANNELS.queue)}, ${params.add(String(plan.taskId))})`);
  }
  const selected = [
    plan.update ? "updated.*" : "1 AS none",
    ...signals.map((s, i) => `${s} AS s${i}`),
  ];
  const from = plan.update ? " FROM updated" : "";
  const text = `${withClause(ctes)}
     SELECT ${selected.join(", ")}${from}`;
  const written = await client.query<TaskRow>({
    name: preparedName(text),
    text,
    values: params.values,
  });
  if (!plan.update) return null;
  const row = written.rows[0];
  if (!row) return null;
  // The signal columns are not part of the task.
  const task = { ...row } as TaskRow & Record<string, unknown>;
  for (let i = 0; i < signals.length; i += 1) delete task[`s${i}`];
  return task;
}

const preparedNames = new Map<string, string>();

/**
 * The statement's text varies only with the shape of the change (which columns, how many
 * outbox entries), so there are few of them: naming each by its text lets every
 * connection parse and plan it once instead of on every transition.
 */
function preparedName(text: string): string {
  let name = preparedNames.get(text);
  if (name === undefined) {
    name = `overseer-transition-${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
    // A bound on what the cache may hold, should shapes turn out to be many after all.
    if (preparedNames.size >= 1_000) preparedNames.clear();
    preparedNames.set(text, name);
  }
  return name;
}

/** The GitHub writes among a transition's effects. */
function outboxEntriesFor(
  repo: RepoRow,
  task: Pick<TaskRow, "id" | "issueNumber">,
  effects: Effect[],
  cause: Cause,
): NewOutboxEntry[] {
  const base = {
    taskId: task.id,
    installationId: repo.installationId ?? 0,
    repoFullName: repo.fullName,
  };
  const payload = { issueNumber: task.issueNumber };
  const writes: NewOutboxEntry[] = [];
  for (const effect of effects) {
    switch (effect.type) {
      case "status_comment":
        writes.push({
          ...base,
          kind: "status_comment",
          payload,
          key: { coalesce: `status:${task.id}` },
        });
        break;
      case "state_label":
        writes.push({
          ...base,
          kind: "state_label",
          payload,
          key: { coalesce: `label:${task.id}` },
        });
        break;
      case "check_run":
        writes.push({
          ...base,
          kind: "check_run",
          payload,
          key: { coalesce: `check:${task.id}` },
        });
        break;
      case "completion_comment":
        writes.push({
          ...base,
          kind: "completion_comment",
          payload,
          key: { dedupe: `completion:${task.id}` },
        });
        break;
      case "reply":
        writes.push({
          ...base,
          kind: "reply",
          payload: { ...payload, body: effect.text },
          key: { dedupe: `reply:${cause.cause}:${task.id}` },
        });
        break;
      case "stop_run":
      case "wake_runners":
      case "close_revision":
        // Written by the statement itself.
        break;
      case "remove_worktree":
        // Worktrees live on runner hosts: the runner on each removes those of done and
        // cancelled tasks on its next sweep.
        break;
    }
  }
  return writes;
}
