import { fileURLToPath } from "node:url";
import { runner } from "node-pg-migrate";
import pg from "pg";
import type { Logger } from "pino";
import type { Queryable } from "./pool.js";

export const MIGRATIONS_DIR = fileURLToPath(new URL("../../migrations", import.meta.url));
const MIGRATIONS_TABLE = "pgmigrations";

/**
 * Applies pending migrations. node-pg-migrate takes a session advisory lock first and
 * (in `wait` mode) blocks a second process until the first is done, so two processes
 * starting at once apply each migration exactly once.
 */
export async function migrate(url: string, log?: Logger): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const applied = await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      migrationsTable: MIGRATIONS_TABLE,
      direction: "up",
      advisoryLockMode: "wait",
      singleTransaction: true,
      logger: {
        debug: () => undefined,
        info: (message: string) => log?.debug(message),
        warn: (message: string) => log?.warn(message),
        error: (message: string) => log?.error(message),
      },
    });
    const names = applied.map((migration) => migration.name);
    if (names.length > 0) log?.info({ migrations: names }, "applied database migrations");
    return names;
  } finally {
    await client.end();
  }
}

/** The newest applied migration, or null for an empty database. */
export async function schemaVersion(db: Queryable): Promise<string | null> {
  const exists = await db.query<{ found: boolean }>("SELECT to_regclass($1) IS NOT NULL AS found", [
    MIGRATIONS_TABLE,
  ]);
  if (!exists.rows[0]?.found) return null;
  const result = await db.query<{ name: string }>(
    `SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY run_on DESC, id DESC LIMIT 1`,
  );
  return result.rows[0]?.name ?? null;
}
