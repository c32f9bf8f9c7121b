import type { Queryable } from "./pool.js";

export interface RunnerRow {
  id: string;
  host: string;
  pid: number;
  version: string;
  capacity: number;
  startedAt: Date;
  heartbeatAt: Date;
  stoppedAt: Date | null;
}

const COLUMNS = `id, host, pid, version, capacity, started_at AS "startedAt",
  heartbeat_at AS "heartbeatAt", stopped_at AS "stoppedAt"`;

export async function registerRunner(
  db: Queryable,
  runner: { id: string; host: string; pid: number; version: string; capacity: number },
): Promise<void> {
  await db.query(
    `INSERT INTO runners (id, host, pid, version, capacity) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL, stale_at = NULL`,
    [runner.id, runner.host, runner.pid, runner.version, runner.capacity],
  );
}

export async function heartbeatRunner(db: Queryable, id: string): Promise<void> {
  await db.query("UPDATE runners SET heartbeat_at = now(), stale_at = NULL WHERE id = $1", [id]);
}

export async function markRunnerStopped(db: Queryable, id: string): Promise<void> {
  await db.query("UPDATE runners SET stopped_at = now() WHERE id = $1", [id]);
}

export async function listRunners(db: Queryable): Promise<RunnerRow[]> {
  const result = await db.query<RunnerRow>(
    `SELECT ${COLUMNS} FROM runners ORDER BY stopped_at NULLS FIRST, heartbeat_at DESC LIMIT 100`,
  );
  return result.rows;
}

/** A runner as the operator sees it: how long since it was last heard from, what it runs. */
export interface RunnerHealth extends RunnerRow {
  /** Seconds since its last heartbeat, by the database's clock (hosts' clocks may differ). */
  heartbeatAgeSeconds: number;
  status: "alive" | "stale" | "stopped";
  activeRuns: number;
}

/** Registered runners, live ones first; stale after `staleAfterMs` without a heartbeat. */
export async function listRunnerHealth(
  db: Queryable,
  staleAfterMs: number,
): Promise<RunnerHealth[]> {
  const result = await db.query<RunnerHealth>(
    `SELECT ${COLUMNS},
            (EXTRACT(EPOCH FROM now() - heartbeat_at))::float8 AS "heartbeatAgeSeconds",
            CASE WHEN stopped_at IS NOT NULL THEN 'stopped'
                 WHEN heartbeat_at < now() - $1 * interval '1 millisecond' THEN 'stale'
                 ELSE 'alive' END AS status,
            (SELECT count(*)::int FROM runs WHERE runs.runner_id = runners.id
                AND runs.state = 'running') AS "activeRuns"
       FROM runners
      ORDER BY stopped_at IS NOT NULL, heartbeat_at DESC
      LIMIT 100`,
    [staleAfterMs],
  );
  return result.rows;
}

/** A runner silent past the stale threshold that is not marked stale yet or still holds runs. */
export interface StaleRunner {
  id: string;
  host: string;
  pid: number;
  heartbeatAgeSeconds: number;
  markedStale: boolean;
  runningRuns: number;
}

export async function findStaleRunners(
  db: Queryable,
  staleAfterMs: number,
): Promise<StaleRunner[]> {
  const result = await db.query<StaleRunner>(
    `SELECT * FROM (
       SELECT id, host, pid,
              (EXTRACT(EPOCH FROM now() - heartbeat_at))::float8 AS "heartbeatAgeSeconds",
              stale_at IS NOT NULL AS "markedStale",
              (SELECT count(*)::int FROM runs WHERE runs.runner_id = runners.id
                  AND runs.state = 'running') AS "runningRuns"
         FROM runners
        WHERE stopped_at IS NULL AND heartbeat_at < now() - $1 * interval '1 millisecond'
     ) stale
     WHERE NOT "markedStale" OR "runningRuns" > 0
     ORDER BY id LIMIT 100`,
    [staleAfterMs],
  );
  return result.rows;
}

/**
 * Marks the runner stale if it is still silent, and cuts its runs' leases short so they
 * are requeued like any expired lease. Returns false when it heartbeated meanwhile.
 */
export async function markRunnerStale(
  db: Queryable,
  id: string,
  staleAfterMs: number,
): Promise<boolean> {
  const result = await db.query(
    `WITH marked AS (
       UPDATE runners SET stale_at = COALESCE(stale_at, now())
        WHERE id = $1 AND stopped_at IS NULL
          AND heartbeat_at < now() - $2 * interval '1 millisecond'
        RETURNING id),
     expired AS (
       UPDATE runs SET lease_expires_at = LEAST(lease_expires_at, now() - interval '1 millisecond')
        WHERE runner_id IN (SELECT id FROM marked) AND state = 'running'
        RETURNING id)
     SELECT (SELECT count(*) FROM expired) AS expired FROM marked`,
    [id, staleAfterMs],
  );
  return result.rowCount === 1;
}

/** Whether these runners heartbeat within the stale threshold (by the database's clock). */
export async function aliveRunnerIds(db: Queryable, staleAfterMs: number): Promise<Set<string>> {
  const result = await db.query<{ id: string }>(
    `SELECT id FROM runners WHERE stopped_at IS NULL
        AND heartbeat_at >= now() - $1 * interval '1 millisecond'`,
    [staleAfterMs],
  );
  return new Set(result.rows.map((row) => row.id));
}
