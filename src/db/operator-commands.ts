import { actor } from "../domain/actors.js";
import type { CommandName } from "../domain/types.js";
import type { Pool } from "./pool.js";
import { type ChangeResult, changeTask } from "./task-changes.js";

/** The commands an operator may give from the CLI or the dashboard. */
export const OPERATOR_COMMANDS = [
  "retry",
  "stop",
  "cancel",
] as const satisfies readonly CommandName[];
export type OperatorCommand = (typeof OPERATOR_COMMANDS)[number];

export function isOperatorCommand(value: string): value is OperatorCommand {
  return (OPERATOR_COMMANDS as readonly string[]).includes(value);
}

/**
 * `/retry`, `/stop` or `/cancel` on behalf of an operator, through the one write path: the
 * same transition, status comment, labels and runner signals as the slash-command, with
 * `operator:<name>` in the audit trail and where it came from in the event's detail.
 */
export function applyOperatorCommand(
  pool: Pool,
  taskId: number,
  command: OperatorCommand,
  operator: { name: string; via: "cli" | "dashboard" },
): Promise<ChangeResult | null> {
  const who = actor.operator(operator.name);
  return changeTask(
    pool,
    { id: taskId },
    { type: "command", command, actor: who },
    {
      actor: who,
      cause: `command:/${command}`,
      detail: { command: `/${command}`, via: operator.via },
    },
  );
}
