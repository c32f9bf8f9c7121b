import { runTaskAction } from "./task-action.js";

/** `overseer stop TASK`: stops the task's worker (or a queued task), as `/stop` would. */
export function stopCommand(task: string, options: { json?: boolean }): Promise<void> {
  return runTaskAction("stop", task, options);
}
