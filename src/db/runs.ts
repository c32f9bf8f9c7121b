import type { Queryable } from "./pool.js";

/** Marks the task's active run as asked to stop; returns the run ids to notify. */
export async function requestStopForTask(
  db: Queryable,
  taskId: number,
  actor: string,
): Promise<number[]> {
  const result = await db.query<{ id: number }>(
    `UPDATE runs SET stop_requested_at = COALESCE(stop_requested_at, now()),
                     stop_requested_by = COALESCE(stop_requested_by, $2)
      WHERE task_id = $1 AND state = 'running'
      RETURNING id`,
    [taskId, actor],
  );
  return result.rows.map((row) => row.id);
}
