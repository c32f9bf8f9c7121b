import type { Queryable } from "./pool.js";

/**
 * Holds an installation's GitHub writes for `ms` (never shortening a longer pause another
 * process recorded): the outbox claim skips its entries until then.
 */
export async function pauseInstallation(
  db: Queryable,
  installationId: number,
  ms: number,
  reason: string,
): Promise<void> {
  await db.query(
    `INSERT INTO github_pauses (installation_id, until, reason)
     VALUES ($1, now() + $2 * interval '1 millisecond', $3)
     ON CONFLICT (installation_id) DO UPDATE
       SET until = GREATEST(github_pauses.until, EXCLUDED.until),
           reason = EXCLUDED.reason, updated_at = now()`,
    [installationId, ms, reason],
  );
}

/** Milliseconds the installation's writes are still held (0: not paused). */
export async function installationPausedForMs(
  db: Queryable,
  installationId: number,
): Promise<number> {
  const result = await db.query<{ ms: number }>(
    `SELECT GREATEST(0, EXTRACT(EPOCH FROM (until - now())) * 1000)::float8 AS ms
       FROM github_pauses WHERE installation_id = $1`,
    [installationId],
  );
  return result.rows[0]?.ms ?? 0;
}
