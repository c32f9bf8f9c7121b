import { MAX_BACKOFF_MS } from "../domain/backoff.js";
import type { Queryable } from "./pool.js";

/**
 * The `worker_profiles` table: per profile name, how many runs use it (kept by a trigger on
 * runs, for its `concurrency`) and whether it is paused because the agent behind it hit a
 * usage or rate limit or could not authenticate. A pause holds every task of the profile
 * on every runner, since the limit belongs to the account the profile's credentials name,
 * not to one task.
 */

export type PauseKind = "usage_limit" | "rate_limit" | "auth";

export interface ProfilePause {
  profile: string;
  kind: PauseKind;
  until: Date;
  reason: string;
  pausedAt: Date;
  /** The run whose exit caused it. */
  runId: number | null;
}

export interface ProfileRow {
  name: string;
  running: number;
  pause: ProfilePause | null;
}

/** Rows for a runner's profiles (for pauses and for `overseer status`). */
export async function ensureProfiles(db: Queryable, names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  await db.query(
    "INSERT INTO worker_profiles (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING",
    [names],
  );
}

/**
 * Starts keeping the running count of profiles that have a `concurrency`, from the runs
 * running now; profiles already counted cost one read. Call it in a transaction of its
 * own, holding nothing else (never inside a claim): the table lock waits for every
 * transaction that is adding or settling a run and holds off new ones until commit, so
 * the count taken is exact and the trigger carries it on from there. The lock also
 * excludes itself, so two runners starting at once count one after the other.
 */
export async function countProfiles(db: Queryable, names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  const counted = await db.query(
    "SELECT 1 FROM worker_profiles WHERE name = ANY($1::text[]) AND counted",
    [names],
  );
  if (counted.rowCount === new Set(names).size) return;
  await db.query("LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE");
  await ensureProfiles(db, names);
  await db.query(
    `UPDATE worker_profiles wp SET counted = true, updated_at = now(),
            running = (SELECT count(*) FROM runs WHERE runs.state = 'running' AND runs.profile = wp.name)
      WHERE wp.name = ANY($1::text[]) AND NOT wp.counted`,
    [names],
  );
}

export interface PauseRequest {
  profile: string;
  kind: PauseKind;
  reason: string;
  runId: number;
  /** When the agent said its limit resets; null: back off instead. */
  resetAt: Date | null;
  /** First backoff when no reset time was given; doubles with each further such pause. */
  backoffBaseMs: number;
}

/**
 * Pauses the profile until the reported reset, or for a backoff that doubles with each
 * consecutive pause that reported none (capped at MAX_BACKOFF_MS), and returns until when.
 * A pause never shortens one already in force: two runs of one account hitting the limit
 * report the same reset, or the later one the longer wait.
 */
export async function pauseProfile(db: Queryable, pause: PauseRequest): Promise<Date> {
  const backoff = (streak: string) =>
    `now() + LEAST($3::float8, $4::float8 * 2 ^ ${streak}) * interval '1 millisecond'`;
  const result = await db.query<{ until: Date }>(
    `INSERT INTO worker_profiles AS wp (name, paused_until, pause_kind, pause_reason, paused_at,
                                        paused_by_run, pause_streak)
     VALUES ($1, COALESCE($2::timestamptz, ${backoff("0")}), $5, $6, now(), $7,
             CASE WHEN $2::timestamptz IS NULL THEN 1 ELSE 0 END)
     ON CONFLICT (name) DO UPDATE SET
       paused_until = GREATEST(CASE WHEN wp.paused_until > now() THEN wp.paused_until END,
                               COALESCE($2::timestamptz, ${backoff("wp.pause_streak")})),
       pause_kind = $5, pause_reason = $6, paused_at = now(), paused_by_run = $7,
       pause_streak = CASE WHEN $2::timestamptz IS NULL THEN wp.pause_streak + 1 ELSE 0 END,
       updated_at = now()
     RETURNING paused_until AS until`,
    [
      pause.profile,
      pause.resetAt,
      MAX_BACKOFF_MS,
      pause.backoffBaseMs,
      pause.kind,
      pause.reason,
      pause.runId,
    ],
  );
  const until = result.rows[0]?.until;
  if (!until) throw new Error(`worker profile ${pause.profile} could not be paused`);
  return until;
}

/**
 * A run of the profile ended without hitting a limit: the backoff starts over next time.
 * The UPDATE, for the statement that settles the run (`profile`: an SQL expression; with
 * `when`, an SQL boolean, only if it holds).
 */
export function resetPauseStreakSql(profile: string, when = "true"): string {
  return `UPDATE worker_profiles SET pause_streak = 0
           WHERE ${when} AND name = ${profile} AND pause_streak > 0`;
}

const PAUSE_COLUMNS = `name AS profile, pause_kind AS kind, paused_until AS until,
  pause_reason AS reason, paused_at AS "pausedAt", paused_by_run AS "runId"`;

/** Profiles paused now, soonest to resume first (for `overseer status` and the dashboard). */
export async function listProfilePauses(db: Queryable): Promise<ProfilePause[]> {
  const result = await db.query<ProfilePause>(
    `SELECT ${PAUSE_COLUMNS} FROM worker_profiles
      WHERE paused_until > now() ORDER BY paused_until, name`,
  );
  return result.rows;
}

/** Every profile any runner has announced, with its running count and pause, if any. */
export async function listProfiles(db: Queryable): Promise<ProfileRow[]> {
  const result = await db.query<{ name: string; running: number } & Partial<ProfilePause>>(
    `SELECT name, running, ${PAUSE_COLUMNS} FROM worker_profiles ORDER BY name`,
  );
  return result.rows.map(({ name, running, ...pause }) => ({
    name,
    running,
    pause:
      pause.until && pause.until.getTime() > Date.now() && pause.kind
        ? (pause as ProfilePause)
        : null,
  }));
}

/**
 * The pause in force for the profile of the task's latest run: what the task is waiting
 * for when it was requeued after the agent hit its limit.
 */
export async function pauseForTask(db: Queryable, taskId: number): Promise<ProfilePause | null> {
  const result = await db.query<ProfilePause>(
    `SELECT ${PAUSE_COLUMNS} FROM worker_profiles
      WHERE paused_until > now()
        AND name = (SELECT profile FROM runs WHERE task_id = $1 ORDER BY id DESC LIMIT 1)`,
    [taskId],
  );
  return result.rows[0] ?? null;
}
