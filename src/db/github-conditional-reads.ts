import type { Queryable } from "./pool.js";

/** One stored read of GitHub (see migrations/1764210000000_github-conditional-reads.sql). */
export interface ConditionalRead {
  key: string;
  etag: string | null;
  body: unknown;
  fetchedAt: Date;
  /** Milliseconds since it was fetched, by the database's clock (the one fetchedAt is in). */
  ageMs: number;
  actedOn: string | null;
}

const COLUMNS = `key, etag, body, fetched_at AS "fetchedAt",
  (EXTRACT(EPOCH FROM now() - fetched_at) * 1000)::float8 AS "ageMs", acted_on AS "actedOn"`;

export async function findConditionalRead(
  db: Queryable,
  key: string,
): Promise<ConditionalRead | null> {
  const result = await db.query<ConditionalRead>(
    `SELECT ${COLUMNS} FROM github_conditional_reads WHERE key = $1`,
    [key],
  );
  return result.rows[0] ?? null;
}

/** Stores a fresh answer (200, or a 404 without ETag); what was acted on is kept. */
export async function storeConditionalRead(
  db: Queryable,
  read: { key: string; etag: string | null; body: unknown },
): Promise<void> {
  await db.query(
    `INSERT INTO github_conditional_reads (key, etag, body, fetched_at)
     VALUES ($1, $2, $3::jsonb, now())
     ON CONFLICT (key) DO UPDATE SET etag = EXCLUDED.etag, body = EXCLUDED.body,
       fetched_at = EXCLUDED.fetched_at`,
    [read.key, read.etag, JSON.stringify(read.body ?? null)],
  );
}

/** Records that the consequence of GitHub event `eventId` was applied or refused. */
export async function markActedOn(db: Queryable, key: string, eventId: string): Promise<void> {
  await db.query("UPDATE github_conditional_reads SET acted_on = $2 WHERE key = $1", [
    key,
    eventId,
  ]);
}
