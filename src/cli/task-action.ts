import { applyOperatorCommand, type OperatorCommand } from "../db/operator-commands.js";
import { InputError } from "../errors.js";
import { operatorName, resolveTask, withDatabase } from "./context.js";
import { paint, printJson, printLines, stateColour } from "./output.js";

/**
 * `retry`, `stop` and `cancel` share this: the named task, the command through the one
 * write path as `operator:<user>`, and the outcome in a line (or JSON). A refusal (say,
 * /retry on a running task) is one line on stderr and exit 1, as an unknown task is.
 */
export function runTaskAction(
  command: OperatorCommand,
  task: string,
  options: { json?: boolean },
): Promise<void> {
  return withDatabase(
    async (db) => {
      const id = await resolveTask(db.pool, task);
      const name = operatorName();
      const result = await applyOperatorCommand(db.pool, id, command, { name, via: "cli" });
      if (!result) throw new InputError(`no task ${id}`);
      if (!result.ok) throw new InputError(`task ${id}: ${result.reason}`);
      const from = result.previous ?? "new";
      const stopping = result.effects.some((effect) => effect.type === "stop_run");
      if (options.json) {
        return printJson({
          id,
          command,
          actor: `operator:${name}`,
          from,
          state: result.task.state,
          stopRequested: stopping,
        });
      }
      const change =
        from === result.task.state
          ? `still ${paint(stateColour(result.task.state), result.task.state)}`
          : `${from} → ${paint(stateColour(result.task.state), result.task.state)}`;
      printLines([
        `task ${id}: /${command} by operator:${name}: ${change}${
          stopping
            ? " (stop sent to its runner: SIGTERM to the worker's group, SIGKILL after its grace)"
            : ""
        }`,
      ]);
    },
    { migrate: false },
  );
}
