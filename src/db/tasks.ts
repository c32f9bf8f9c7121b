import { TASK_STATES, type TaskState } from "../domain/types.js";
import type { Queryable } from "./pool.js";

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
