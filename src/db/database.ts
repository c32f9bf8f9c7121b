import pg from "pg";
import type { Logger } from "pino";
import type { OverseerEnv } from "../config/env.js";
import { type EmbeddedServer, startEmbeddedPostgres } from "./embedded.js";
import { migrate } from "./migrate.js";
import { assertReachable, createPool, type Pool } from "./pool.js";
import { withDatabase } from "./url.js";

export interface Database {
  pool: Pool;
  url: string;
  embedded: EmbeddedServer | undefined;
  close(): Promise<void>;
}

const EMBEDDED_DATABASE = "overseer";

/**
 * Connects to DATABASE_URL, or starts the embedded server under OVERSEER_HOME, and
 * brings the schema up to date.
 */
export async function openDatabase(
  env: Pick<OverseerEnv, "databaseUrl" | "home">,
  log: Logger,
  options: { migrate?: boolean } = {},
): Promise<Database> {
  let embedded: EmbeddedServer | undefined;
  let url = env.databaseUrl;
  if (!url) {
    embedded = await startEmbeddedPostgres(env.home, log);
    await ensureDatabaseExists(embedded.adminUrl, EMBEDDED_DATABASE);
    url = withDatabase(embedded.adminUrl, EMBEDDED_DATABASE);
  }
  const pool = createPool(url, log);
  try {
    await assertReachable(pool, url);
    if (options.migrate !== false) await migrate(url, log);
  } catch (error) {
    await pool.end().catch(() => undefined);
    await embedded?.stop().catch(() => undefined);
    throw error;
  }
  return {
    pool,
    url,
    embedded,
    async close() {
      await pool.end().catch(() => undefined);
      await embedded?.stop();
    },
  };
}

export async function ensureDatabaseExists(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`).catch((error) => {
        // Another process created it between our look and our create.
        if ((error as { code?: string }).code !== "42P04") throw error;
      });
    }
  } finally {
    await client.end();
  }
}
