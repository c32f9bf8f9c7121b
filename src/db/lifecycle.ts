import { transition } from "../domain/transitions.js";
import type { Effect, TaskEvent } from "../domain/types.js";
import { CHANNELS, notify } from "./notify.js";
import { enqueueOutbox, type NewOutboxEntry } from "./outbox.js";
import type { Queryable } from "./pool.js";
import type { RepoRow } from "./repos.js";
import { requestStopForTask } from "./runs.js";
import { appendTaskEvent, type Cause } from "./task-events.js";
import { snapshotOf, type TaskChanges, type TaskRow, updateTask } from "./tasks.js";

export type ApplyResult =
  | { ok: true; task: TaskRow; effects: Effect[] }
  | { ok: false; reason: string; task: TaskRow };

/**
 * The one write path for task state: runs the pure transition, writes the task, the audit
 * event and the GitHub effects (outbox) together. The caller holds the task's row lock
 * inside a transaction, so either all of it commits or none of it does.
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
  const updated = await updateTask(db, task.id, result.task, task.state, changes);
  await appendTaskEvent(db, {
    taskId: task.id,
    event: event.type === "command" ? `command:${event.command}` : event.type,
    fromState: task.state,
    toState: updated.state,
    ...cause,
  });
  await performEffects(db, repo, updated, result.effects, cause);
  if (updated.state === "awaiting_merge" && task.state !== "awaiting_merge") {
    await enqueueAutoMerge(db, repo, updated);
  }
  return { ok: true, task: updated, effects: result.effects };
}

/**
 * Queues a merge attempt for a task awaiting merge under `merge: auto`; a no-op otherwise.
 * The dispatcher re-checks everything (checks, reviews, approval) right before merging.
 */
export async function enqueueAutoMerge(db: Queryable, repo: RepoRow, task: TaskRow): Promise<void> {
  if (task.state !== "awaiting_merge" || task.prNumber === null) return;
  if ((task.config as { merge?: string }).merge !== "auto") return;
  await enqueueOutbox(db, {
    taskId: task.id,
    installationId: repo.installationId ?? 0,
    repoFullName: repo.fullName,
    kind: "merge_pr",
    payload: { issueNumber: task.issueNumber, prNumber: task.prNumber },
    key: { coalesce: `merge:${task.id}` },
  });
}

/** Turns effects into outbox entries and notifications, inside the caller's transaction. */
export async function performEffects(
  db: Queryable,
  repo: RepoRow,
  task: TaskRow,
  effects: Effect[],
  cause: Cause,
): Promise<void> {
  const base = {
    taskId: task.id,
    installationId: repo.installationId ?? 0,
    repoFullName: repo.fullName,
  };
  const writes: NewOutboxEntry[] = [];
  for (const effect of effects) {
    switch (effect.type) {
      case "status_comment":
        writes.push({
          ...base,
          kind: "status_comment",
          payload: { issueNumber: task.issueNumber },
          key: { coalesce: `status:${task.id}` },
        });
        break;
      case "state_label":
        writes.push({
          ...base,
          kind: "state_label",
          payload: { issueNumber: task.issueNumber },
          key: { coalesce: `label:${task.id}` },
        });
        break;
      case "completion_comment":
        writes.push({
          ...base,
          kind: "completion_comment",
          payload: { issueNumber: task.issueNumber },
          key: { dedupe: `completion:${task.id}` },
        });
        break;
      case "reply":
        writes.push({
          ...base,
          kind: "reply",
          payload: { issueNumber: task.issueNumber, body: effect.text },
          key: { dedupe: `reply:${cause.cause}:${task.id}` },
        });
        break;
      case "stop_run":
        for (const runId of await requestStopForTask(db, task.id, cause.actor)) {
          await notify(db, CHANNELS.stop, String(runId));
        }
        break;
      case "wake_runners":
        await notify(db, CHANNELS.queue, String(task.id));
        break;
      case "remove_worktree":
        // Worktrees live on runner hosts: the runner on each removes those of done and
        // cancelled tasks on its next sweep.
        break;
    }
  }
  await enqueueOutbox(db, writes);
}
