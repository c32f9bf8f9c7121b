import os from "node:os";
import { type OverseerEnv, readEnv } from "../config/env.js";
import { type Database, openDatabase } from "../db/database.js";
import type { Queryable } from "../db/pool.js";
import { describeTaskName, findTaskId, parseTaskName } from "../db/task-views.js";
import { classify, errorMessage, InputError } from "../errors.js";
import { createLogger, type Logger } from "../log.js";

/** EX_CONFIG from sysexits.h: the configuration is wrong, retrying will not help. */
export const EXIT_CONFIG = 78;

/** One line on stderr and the exit code its kind calls for: 78 for configuration, else 1. */
export function failAndExit(error: unknown): never {
  process.stderr.write(`overseer: ${errorMessage(error)}\n`);
  process.exit(classify(error).kind === "config" ? EXIT_CONFIG : 1);
}

export function loadEnvOrExit(): OverseerEnv {
  try {
    return readEnv();
  } catch (error) {
    return failAndExit(error);
  }
}

/**
 * Runs a command against the database (shared with a running `npm start`, or DATABASE_URL)
 * and closes it afterwards. Logs go to stderr, at warn unless LOG_LEVEL asks for more. A
 * command fails by throwing: the database is closed first (an embedded server this
 * command started must not outlive it), then the error is one line and an exit status.
 */
export async function withDatabase<T>(
  work: (db: Database, log: Logger, env: OverseerEnv) => Promise<T>,
  options: { migrate: boolean },
): Promise<T> {
  const env = loadEnvOrExit();
  const log = createLogger(env.logLevel === "info" ? "warn" : env.logLevel, process.stderr);
  const db = await openDatabase(env, log, options).catch(failAndExit);
  let result: T;
  try {
    result = await work(db, log, env);
  } catch (error) {
    await db.close();
    return failAndExit(error);
  }
  await db.close();
  return result;
}

/**
 * The task an operator named (`42` or `owner/name#17`); an unknown one fails the command
 * with one line (exit 1).
 */
export async function resolveTask(db: Queryable, text: string): Promise<number> {
  const name = parseTaskName(text);
  const id = await findTaskId(db, name);
  if (id === null) throw new InputError(`no ${describeTaskName(name)}`);
  return id;
}

/**
 * Who is at the keyboard, for `operator:<name>` in the audit trail: the person behind
 * sudo when there is one, else the login.
 */
export function operatorName(): string {
  const viaSudo = process.env.SUDO_USER;
  if (viaSudo) return viaSudo;
  try {
    return os.userInfo().username;
  } catch {
    // No passwd entry for this uid (some containers): the uid still tells people apart.
    return `uid-${process.getuid?.() ?? "unknown"}`;
  }
}
