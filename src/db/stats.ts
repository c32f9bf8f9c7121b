import type { Queryable } from "./pool.js";

/**
 * Aggregates for the dashboard's charts, over recent history (CHART_WINDOW_DAYS). Each is
 * one statement over indexed columns; the dashboard reads them on page view only.
 */

export const CHART_WINDOW_DAYS = 30;

export interface FinishedDay {
  /** YYYY-MM-DD (UTC). */
  day: string;
  done: number;
  failed: number;
  stopped: number;
  cancelled: number;
}

/** Tasks that reached a final state, per UTC day, the last `days` days (empty days too). */
export async function finishedPerDay(db: Queryable, days = 14): Promise<FinishedDay[]> {
  const result = await db.query<FinishedDay>(
    `WITH days AS (
       SELECT generate_series(date_trunc('day', now() AT TIME ZONE 'UTC') - ($1 - 1) * interval '1 day',
                              date_trunc('day', now() AT TIME ZONE 'UTC'), interval '1 day') AS day),
     finished AS (
       SELECT date_trunc('day', at AT TIME ZONE 'UTC') AS day, to_state
         FROM task_events
        WHERE at >= now() - $1 * interval '1 day'
          AND to_state IN ('done', 'failed', 'stopped', 'cancelled')
          AND to_state IS DISTINCT FROM from_state)
     SELECT to_char(days.day, 'YYYY-MM-DD') AS day,
            count(*) FILTER (WHERE finished.to_state = 'done')::int AS done,
            count(*) FILTER (WHERE finished.to_state = 'failed')::int AS failed,
            count(*) FILTER (WHERE finished.to_state = 'stopped')::int AS stopped,
            count(*) FILTER (WHERE finished.to_state = 'cancelled')::int AS cancelled
       FROM days LEFT JOIN finished ON finished.day = days.day
      GROUP BY days.day ORDER BY days.day`,
    [days],
  );
  return result.rows;
}

export interface Bucket {
  /** Upper bound in seconds; null for the last, open bucket. */
  le: number | null;
  count: number;
}

/** Upper bounds (seconds) of the run-duration buckets: 1, 5, 15, 30 minutes, 1, 2 hours. */
export const RUN_DURATION_BUCKETS_S = [60, 300, 900, 1_800, 3_600, 7_200];
/** Upper bounds (seconds) of the label-to-start buckets. */
export const LABEL_TO_START_BUCKETS_S = [1, 5, 15, 60, 300, 900, 3_600];

async function histogram(
  db: Queryable,
  valueSql: string,
  fromWhere: string,
  edges: readonly number[],
): Promise<Bucket[]> {
  const result = await db.query<{ bucket: number; count: number }>(
    `SELECT width_bucket(v, $1::float8[]) AS bucket, count(*)::int AS count
       FROM (SELECT ${valueSql} AS v ${fromWhere}) values_
      WHERE v IS NOT NULL
      GROUP BY 1`,
    // width_bucket counts a value equal to a bound into the next bucket; a hair above
    // each bound keeps "≤ bound" semantics, as Prometheus's `le` has.
    [edges.map((edge) => edge + 1e-9)],
  );
  const counts = new Map(result.rows.map((row) => [row.bucket, row.count]));
  return [...edges, null].map((le, index) => ({ le, count: counts.get(index) ?? 0 }));
}

/** Finished runs by how long they took (claim to settlement). */
export function runDurations(db: Queryable): Promise<Bucket[]> {
  return histogram(
    db,
    "EXTRACT(EPOCH FROM finished_at - started_at)::float8",
    `FROM runs WHERE finished_at >= now() - ${CHART_WINDOW_DAYS} * interval '1 day'`,
    RUN_DURATION_BUCKETS_S,
  );
}

/** Runs by how long their task waited from being queued (label, /run, /retry) to its worker starting. */
export function labelToStart(db: Queryable): Promise<Bucket[]> {
  return histogram(
    db,
    "EXTRACT(EPOCH FROM worker_started_at - queued_at)::float8",
    `FROM runs WHERE worker_started_at >= now() - ${CHART_WINDOW_DAYS} * interval '1 day'`,
    LABEL_TO_START_BUCKETS_S,
  );
}

export interface ProfileSuccess {
  profile: string;
  succeeded: number;
  /** Failed or timed out: the worker's own outcomes. */
  failed: number;
  /** Stopped or lost: not the worker's verdict, left out of the rate. */
  other: number;
  /** succeeded / (succeeded + failed); null when neither happened. */
  rate: number | null;
}

export async function successByProfile(db: Queryable): Promise<ProfileSuccess[]> {
  const result = await db.query<Omit<ProfileSuccess, "rate">>(
    `SELECT COALESCE(profile, '(unknown)') AS profile,
            count(*) FILTER (WHERE state = 'succeeded')::int AS succeeded,
            count(*) FILTER (WHERE state IN ('failed', 'timed_out'))::int AS failed,
            count(*) FILTER (WHERE state IN ('stopped', 'lost', 'cancelled'))::int AS other
       FROM runs
      WHERE finished_at >= now() - ${CHART_WINDOW_DAYS} * interval '1 day'
      GROUP BY 1 ORDER BY 1`,
  );
  return result.rows.map((row) => {
    const judged = row.succeeded + row.failed;
    return { ...row, rate: judged === 0 ? null : row.succeeded / judged };
  });
}
