import pg from "pg";
import type { Logger } from "pino";
import { ConfigError } from "../errors.js";
import { describeDatabaseTarget, scrubPassword } from "./url.js";

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Anything that can run a query: the pool, or a client inside a transaction. */
export type Queryable = Pick<pg.Pool, "query">;

// bigint columns (ids from GitHub) fit in a JS number for as long as GitHub's ids do.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

/**
 * At start-up, a DATABASE_URL that does not answer is the operator's to fix (wrong host,
 * port or password): a configuration error, so the process exits 78 at once instead of
 * retrying forever.
 */
export class DatabaseUnreachableError extends ConfigError {
  override name = "DatabaseUnreachableError";
}

export function createPool(url: string, log?: Logger, max = 10): Pool {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 10_000 });
  // An idle client losing its connection must not crash the process; the next query
  // reconnects, and /healthz reports the outage meanwhile.
  pool.on("error", (error) => {
    log?.error(
      { err: Object.assign(new Error(scrubPassword(error.message, url)), { stack: error.stack }) },
      "idle database connection failed",
    );
  });
  return pool;
}

/** Connects once so that a wrong DATABASE_URL fails at start-up with a clear message. */
export async function assertReachable(pool: Pool, url: string): Promise<void> {
  try {
    await pool.query("SELECT 1");
  } catch (error) {
    throw new DatabaseUnreachableError(
      `cannot connect to PostgreSQL at ${describeDatabaseTarget(url)}: ${scrubPassword(
        connectionErrorText(error),
        url,
      )}`,
    );
  }
}

function connectionErrorText(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) {
    return error.errors.map((inner: unknown) => connectionErrorText(inner)).join("; ");
  }
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code && !error.message.includes(code) ? `${code} ${error.message}` : error.message;
  }
  return String(error);
}

export async function withTransaction<T>(
  pool: Pool,
  work: (client: PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
