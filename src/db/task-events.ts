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

/**
 * The INSERT behind appendTaskEvent, for statements that write more than the event; with
 * `onlyWith`, only if that CTE of the statement has a row.
 */
export function appendTaskEventSql(params: Params, entry: NewTaskEvent, onlyWith?: string): string {
  const values = [
    [entry.taskId, "bigint"],
    [entry.event, "text"],
    [entry.fromState, "task_state"],
    [entry.toState, "task_state"],
    [entry.actor, "text"],
    [entry.cause, "text"],
    [JSON.stringify(entry.detail ?? {}), "jsonb"],
  ].map(([value, type]) => `${params.add(value)}::${type}`);
  const columns = "task_id, event, from_state, to_state, actor, cause, detail";
  return onlyWith
    ? `INSERT INTO task_events (${columns}) SELECT ${values.join(", ")} FROM ${onlyWith}`
    : `INSERT INTO task_events (${columns}) VALUES (${values.join(", ")})`;
}

/**
 * Appends the event unless the task's latest event of the same name carries the same
 * `detail.reason` (an auto-merge declined for the same reason on every check suite is
 * worth one line in the trail, not fifty).
 */
export async function appendTaskEventOnChange(
  db: Queryable,
  entry: NewTaskEvent & { detail: { reason: string } & Record<string, unknown> },
): Promise<boolean> {
  const result = await db.query(
    `INSERT INTO task_events (task_id, event, from_state, to_state, actor, cause, detail)
     SELECT $1, $2, $3, $4, $5, $6, $7::jsonb
      WHERE NOT EXISTS (
        SELECT 1 FROM (SELECT detail FROM task_events WHERE task_id = $1 AND event = $2
                        ORDER BY id DESC LIMIT 1) latest
         WHERE latest.detail->>'reason' = $7::jsonb->>'reason')`,
    [
      entry.taskId,
      entry.event,
      entry.fromState,
      entry.toState,
      entry.actor,
      entry.cause,
      JSON.stringify(entry.detail),
    ],
  );
  return result.rowCount === 1;
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
