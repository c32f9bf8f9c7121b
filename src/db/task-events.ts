import type { TaskState } from "../domain/types.js";
import type { Queryable } from "./pool.js";

/** Who or what caused a change: a person, a runner, the watchdog; and through which channel. */
export interface Cause {
  actor: string;
  /** e.g. `delivery:<id>`, `command:/retry`, `finding:expired_lease`, `runner:<id>`. */
  cause: string;
  detail?: Record<string, unknown>;
}

export interface TaskEventRow {
  id: number;
  taskId: number;
  at: Date;
  event: string;
  fromState: TaskState | null;
  toState: TaskState | null;
  actor: string;
  cause: string | null;
  detail: Record<string, unknown>;
}

export async function appendTaskEvent(
  db: Queryable,
  entry: {
    taskId: number;
    event: string;
    fromState: TaskState | null;
    toState: TaskState | null;
  } & Cause,
): Promise<void> {
  await db.query(
    `INSERT INTO task_events (task_id, event, from_state, to_state, actor, cause, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [
      entry.taskId,
      entry.event,
      entry.fromState,
      entry.toState,
      entry.actor,
      entry.cause,
      JSON.stringify(entry.detail ?? {}),
    ],
  );
}

export async function listTaskEvents(db: Queryable, taskId: number): Promise<TaskEventRow[]> {
  const result = await db.query<TaskEventRow>(
    `SELECT id, task_id AS "taskId", at, event, from_state AS "fromState", to_state AS "toState",
            actor, cause, detail
       FROM task_events WHERE task_id = $1 ORDER BY id`,
    [taskId],
  );
  return result.rows;
}
