import { transition } from "../domain/transitions.js";
import type { Effect, TaskEvent } from "../domain/types.js";
import { CHANNELS, notify } from "./notify.js";
import { enqueueOutbox, enqueueOutboxSql, type NewOutboxEntry } from "./outbox.js";
import { Params, withClause } from "./params.js";
import type { Queryable } from "./pool.js";
import type { RepoRow } from "./repos.js";
import { requestStopForTask } from "./runs.js";
import { appendTaskEventSql, type Cause } from "./task-events.js";
import {
  expectUpdated,
  snapshotOf,
  type TaskChanges,
  type TaskRow,
  updateTaskSql,
} from "./tasks.js";

export type ApplyResult =
  | { ok: true; task: TaskRow; effects: Effect[] }
  | { ok: false; reason: string; task: TaskRow };

/**
 * The one write path for task state: runs the pure transition, then writes the task, the
 * audit event and the GitHub effects (outbox entries and the dispatcher's wake-up) in one
 * statement. The caller holds the task's row lock inside a transaction, so either all of
 * it commits or none of it does.
 */
export async function applyTaskEvent(
  db: Queryable,
  repo: RepoRow,
  task: TaskRow,
  event: TaskEvent,
  cause: Cause,
  changes: TaskChanges = {},
): Promise<ApplyResult> {
  const result = transition(snapshotOf(task), event);
  if (!result.ok) return { ok: false, reason: result.reason, task };
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
  const ctes: [string, string][] = [
    ["updated", updateTaskSql(params, task.id, next, task.state, changes)],
    [
      "audit",
      appendTaskEventSql(params, {
        taskId: task.id,
        event: event.type === "command" ? `command:${event.command}` : event.type,
        fromState: task.state,
        toState: next.state,
        ...cause,
      }),
    ],
    ...enqueueOutboxSql(params, writes),
  ];
  const wake =
    writes.length > 0 ? `, (SELECT pg_notify(${params.add(CHANNELS.outbox)}, '')) AS wake` : "";
  const written = await db.query<TaskRow>(
    `${withClause(ctes)}
     SELECT updated.* FROM updated${wake}`,
    params.values,
  );
  const updated = expectUpdated(written.rows[0], task.id, task.state);
  await signalRunners(db, updated, result.effects, cause);
  return { ok: true, task: updated, effects: result.effects };
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

/** Turns effects into outbox entries and notifications, inside the caller's transaction. */
export async function performEffects(
  db: Queryable,
  repo: RepoRow,
  task: TaskRow,
  effects: Effect[],
  cause: Cause,
): Promise<void> {
  await enqueueOutbox(db, outboxEntriesFor(repo, task, effects, cause));
  await signalRunners(db, task, effects, cause);
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
        break;
      case "remove_worktree":
        // Worktrees live on runner hosts: the runner on each removes those of done and
        // cancelled tasks on its next sweep.
        break;
    }
  }
  return writes;
}

/** Stop requests and wake-ups for runners (NOTIFY, delivered on commit). */
async function signalRunners(
  db: Queryable,
  task: Pick<TaskRow, "id">,
  effects: Effect[],
  cause: Cause,
): Promise<void> {
  for (const effect of effects) {
    if (effect.type === "stop_run") {
      for (const runId of await requestStopForTask(db, task.id, cause.actor)) {
        await notify(db, CHANNELS.stop, String(runId));
      }
    } else if (effect.type === "wake_runners") {
      await notify(db, CHANNELS.queue, String(task.id));
    }
  }
}
