import { type OverseerEnv, readEnv } from "../config/env.js";
import { type Database, openDatabase } from "../db/database.js";
import { classify, errorMessage } from "../errors.js";
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
 * and closes it afterwards. Logs go to stderr, at warn unless LOG_LEVEL asks for more.
 */
export async function withDatabase<T>(
  work: (db: Database, log: Logger, env: OverseerEnv) => Promise<T>,
  options: { migrate: boolean },
): Promise<T> {
  const env = loadEnvOrExit();
  const log = createLogger(env.logLevel === "info" ? "warn" : env.logLevel, process.stderr);
  const db = await openDatabase(env, log, options).catch(failAndExit);
  try {
    return await work(db, log, env);
  } finally {
    await db.close();
  }
}
