import type { TaskState } from "../domain/types.js";
import { Params } from "./params.js";
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

export interface NewTaskEvent extends Cause {
  taskId: number;
  event: string;
  fromState: TaskState | null;
  toState: TaskState | null;
}

export async function appendTaskEvent(db: Queryable, entry: NewTaskEvent): Promise<void> {
  const params = new Params();
  await db.query(appendTaskEventSql(params, entry), params.values);
}

/** The INSERT behind appendTaskEvent, for statements that write more than the event. */
export function appendTaskEventSql(params: Params, entry: NewTaskEvent): string {
  const values = [
    entry.taskId,
    entry.event,
    entry.fromState,
    entry.toState,
    entry.actor,
    entry.cause,
    JSON.stringify(entry.detail ?? {}),
  ].map((value) => params.add(value));
  return `INSERT INTO task_events (task_id, event, from_state, to_state, actor, cause, detail)
          VALUES (${values.join(", ")})`;
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
