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
     ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL`,
    [runner.id, runner.host, runner.pid, runner.version, runner.capacity],
  );
}

export async function heartbeatRunner(db: Queryable, id: string): Promise<void> {
  await db.query("UPDATE runners SET heartbeat_at = now() WHERE id = $1", [id]);
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
