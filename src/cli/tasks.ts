import { isTaskState, listTasks, taskListJson } from "../db/task-views.js";
import { TASK_STATES } from "../domain/types.js";
import { InputError } from "../errors.js";
import { withDatabase } from "./context.js";
import { ago, formatTable, printJson, printLines, shorten, stateColour } from "./output.js";

export interface TasksOptions {
  state?: string;
  repo?: string;
  json?: boolean;
}

/** `overseer tasks [--state S] [--repo owner/name] [--json]`: one row per task, newest change first. */
export function tasksCommand(options: TasksOptions): Promise<void> {
  return withDatabase(
    async (db) => {
      const state = options.state?.replaceAll("-", "_");
      if (state !== undefined && !isTaskState(state)) {
        throw new InputError(
          `--state: expected one of ${TASK_STATES.join(", ")}, got "${options.state}"`,
        );
      }
      const tasks = await listTasks(db.pool, { state, repo: options.repo });
      if (options.json) {
        return printJson(tasks.map(taskListJson));
      }
      if (tasks.length === 0) return printLines(["no tasks"]);
      const now = Date.now();
      printLines(
        formatTable(
          ["ID", "TASK", "STATE", "ATTEMPTS", "PR", "PROFILE", "UPDATED", "TITLE"],
          tasks.map((task) => [
            String(task.id),
            `${task.repo}#${task.issue}`,
            { text: task.state, colour: stateColour(task.state) },
            `${task.attempts}/${task.maxAttempts}`,
            task.pr === null ? "—" : `#${task.pr}`,
            task.profile ?? "default",
            ago((now - task.updatedAt.getTime()) / 1_000),
            shorten(task.title, 60),
          ]),
        ),
      );
    },
    { migrate: false },
  );
}
