import { runTaskAction } from "./task-action.js";

/** `overseer retry TASK`: a new attempt for a failed or stopped task, as `/retry` would. */
export function retryCommand(task: string, options: { json?: boolean }): Promise<void> {
  return runTaskAction("retry", task, options);
}
