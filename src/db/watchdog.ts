import type { Queryable } from "./pool.js";

/**
 * The `watchdog_state` table: one row, written by the process holding the watchdog's
 * advisory lock after each tick, read by every process that reports on it.
 */

/** The advisory lock key the elected watchdog holds for as long as its session lives. */
export const WATCHDOG_LOCK_KEY = 7_263_400_117;

export interface WatchdogState {
  leader: string;
  leaderSince: Date;
  lastTickAt: Date;
  tickMs: number;
  findings: number;
  failures: Record<string, string>;
  /** Seconds since the last tick, by the database's clock. */
  ageSeconds: number;
}

export async function recordWatchdogTick(
  db: Queryable,
  tick: { leader: string; tickMs: number; findings: number; failures: Record<string, string> },
): Promise<void> {
  await db.query(
    `INSERT INTO watchdog_state (leader, leader_since, last_tick_at, tick_ms, findings, failures)
     VALUES ($1, now(), now(), $2, $3, $4)
     ON CONFLICT (id) DO UPDATE SET
       leader_since = CASE WHEN watchdog_state.leader = EXCLUDED.leader
                           THEN watchdog_state.leader_since ELSE now() END,
       leader = EXCLUDED.leader, last_tick_at = now(), tick_ms = EXCLUDED.tick_ms,
       findings = EXCLUDED.findings, failures = EXCLUDED.failures`,
    [tick.leader, tick.tickMs, tick.findings, JSON.stringify(tick.failures)],
  );
}

export async function readWatchdogState(db: Queryable): Promise<WatchdogState | null> {
  const result = await db.query<WatchdogState>(
    `SELECT leader, leader_since AS "leaderSince", last_tick_at AS "lastTickAt",
            tick_ms AS "tickMs", findings, failures,
            (EXTRACT(EPOCH FROM now() - last_tick_at))::float8 AS "ageSeconds"
       FROM watchdog_state`,
  );
  return result.rows[0] ?? null;
}
