import { CHANNELS } from "./notify.js";
import type { Queryable } from "./pool.js";
import type { Lease } from "./runs.js";

/**
 * The `run_log_chunks` table: each run's log, as the runner writes it to disk, also in the
 * database in chunks, so any process (a dashboard, `overseer logs -f`) on any host can
 * read and follow a run executing anywhere. Only the newest `keepBytes` of a run are kept:
 * the file on the runner's host stays the complete copy.
 */

export interface LogChunk {
  seq: number;
  /** Where the chunk starts in the run's log file. */
  offset: number;
  body: Buffer;
}

/**
 * Appends a chunk, drops the run's chunks that end more than `keepBytes` before this
 * chunk's end, and NOTIFYs followers, in one statement. Fenced on the lease like every
 * write about a run: a runner that lost its run writes nothing (returns false).
 */
export async function appendRunLogChunk(
  db: Queryable,
  lease: Lease,
  chunk: LogChunk,
  keepBytes: number,
): Promise<boolean> {
  const result = await db.query<{ written: number }>(
    `WITH fenced AS (
       SELECT id FROM runs WHERE id = $1 AND lease_token = $2 AND state = 'running'),
     inserted AS (
       INSERT INTO run_log_chunks (run_id, seq, byte_offset, body)
       SELECT id, $3, $4, $5 FROM fenced
       RETURNING run_id),
     trimmed AS (
       DELETE FROM run_log_chunks
        WHERE run_id = (SELECT run_id FROM inserted)
          AND byte_offset + octet_length(body) <= $4::bigint + octet_length($5::bytea) - $6::bigint
        RETURNING 1)
     SELECT count(*)::int AS written, count(pg_notify($7, run_id::text)) AS notified
       FROM inserted`,
    [lease.runId, lease.token, chunk.seq, chunk.offset, chunk.body, keepBytes, CHANNELS.log],
  );
  return (result.rows[0]?.written ?? 0) === 1;
}

/** The run's chunks after `afterSeq`, oldest first. */
export async function readRunLogChunks(
  db: Queryable,
  runId: number,
  afterSeq = -1,
): Promise<LogChunk[]> {
  const result = await db.query<LogChunk>(
    `SELECT seq, byte_offset AS "offset", body FROM run_log_chunks
      WHERE run_id = $1 AND seq > $2 ORDER BY seq`,
    [runId, afterSeq],
  );
  return result.rows;
}

/** The run's chunks that end after `fromOffset` (a reader resuming mid-log), oldest first. */
export async function readRunLogChunksFrom(
  db: Queryable,
  runId: number,
  fromOffset: number,
): Promise<LogChunk[]> {
  const result = await db.query<LogChunk>(
    `SELECT seq, byte_offset AS "offset", body FROM run_log_chunks
      WHERE run_id = $1 AND byte_offset + octet_length(body) > $2 ORDER BY seq`,
    [runId, fromOffset],
  );
  return result.rows;
}
