import { runTaskAction } from "./task-action.js";

/** `overseer cancel TASK`: cancels the task (its worktree goes; a running worker is stopped), as `/cancel` would. */
export function cancelCommand(task: string, options: { json?: boolean }): Promise<void> {
  return runTaskAction("cancel", task, options);
}
