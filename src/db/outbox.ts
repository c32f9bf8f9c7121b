import { CHANNELS } from "./notify.js";
import { Params, withClause } from "./params.js";
import type { Queryable } from "./pool.js";
import { appendTaskEventSql, type NewTaskEvent } from "./task-events.js";

export type OutboxKind =
  | "status_comment"
  | "state_label"
  | "reply"
  | "reaction"
  | "completion_comment"
  | "merge_pr"
  | "check_run"
  /** The watchdog's one comment about a finding it could not repair (dedupe: kind and subject). */
  | "escalation";

export interface OutboxEntry {
  id: number;
  taskId: number | null;
  installationId: number;
  repoFullName: string;
  kind: OutboxKind;
  payload: Record<string, unknown>;
  dedupeKey: string | null;
  coalesceKey: string | null;
  version: number;
  attempts: number;
  lastError: string | null;
}

export interface NewOutboxEntry {
  taskId: number | null;
  installationId: number;
  repoFullName: string;
  kind: OutboxKind;
  payload: Record<string, unknown>;
  /**
   * `dedupe`: at most one entry ever under this key (a completion comment, a reply to one
   * command). `coalesce`: at most one pending entry; a newer write replaces its payload
   * and bumps its version, so five edits queued behind a slow API are sent once.
   */
  key: { dedupe: string } | { coalesce: string };
}

const COLUMNS = `outbox.id, outbox.task_id AS "taskId", outbox.installation_id AS "installationId",
  outbox.repo_full_name AS "repoFullName", outbox.kind, outbox.payload,
  outbox.dedupe_key AS "dedupeKey", outbox.coalesce_key AS "coalesceKey", outbox.version,
  outbox.attempts, outbox.last_error AS "lastError"`;

/**
 * Queues GitHub writes and wakes the dispatchers, in one statement (the NOTIFY is
 * delivered when the caller's transaction commits). Of several entries under one
 * coalesce key, the last wins, as it would have one statement at a time.
 */
export async function enqueueOutbox(
  db: Queryable,
  entries: NewOutboxEntry | NewOutboxEntry[],
): Promise<void> {
  const list = Array.isArray(entries) ? entries : [entries];
  if (list.length === 0) return;
  const params = new Params();
  const ctes = enqueueOutboxSql(params, list);
  await db.query(
    `${withClause(ctes)}
     SELECT pg_notify(${params.add(CHANNELS.outbox)}, '')`,
    params.values,
  );
}

/**
 * The INSERTs behind enqueueOutbox as named CTEs, for statements that write more than the
 * outbox; such a statement must also NOTIFY the outbox channel. With `onlyWith`, nothing is
 * written unless that CTE of the statement has a row.
 */
export function enqueueOutboxSql(
  params: Params,
  entries: NewOutboxEntry[],
  onlyWith?: string,
): [string, string][] {
  const dedupe = new Map<string, NewOutboxEntry>();
  const coalesce = new Map<string, NewOutboxEntry>();
  for (const entry of entries) {
    if ("dedupe" in entry.key) {
      if (!dedupe.has(entry.key.dedupe)) dedupe.set(entry.key.dedupe, entry);
    } else {
      coalesce.set(entry.key.coalesce, entry);
    }
  }
  const rows = (byKey: Map<string, NewOutboxEntry>) => {
    const values = [...byKey.values()];
    const column = (pick: (entry: NewOutboxEntry) => unknown, type: string) =>
      `${params.add(values.map(pick))}::${type}[]`;
    return `SELECT * FROM unnest(${column((e) => e.taskId, "bigint")},
      ${column((e) => e.installationId, "bigint")}, ${column((e) => e.repoFullName, "text")},
      ${column((e) => e.kind, "text")}, ${column((e) => JSON.stringify(e.payload), "jsonb")},
      ${params.add([...byKey.keys()])}::text[])${onlyWith ? ` WHERE EXISTS (SELECT 1 FROM ${onlyWith})` : ""}`;
  };
  const ctes: [string, string][] = [];
  if (dedupe.size > 0) {
    ctes.push([
      "outbox_deduped",
      `INSERT INTO outbox (task_id, installation_id, repo_full_name, kind, payload, dedupe_key)
       ${rows(dedupe)} ON CONFLICT (dedupe_key) DO NOTHING`,
    ]);
  }
  if (coalesce.size > 0) {
    ctes.push([
      "outbox_coalesced",
      `INSERT INTO outbox (task_id, installation_id, repo_full_name, kind, payload, coalesce_key)
       ${rows(coalesce)}
       ON CONFLICT (coalesce_key) WHERE delivered_at IS NULL AND dead_at IS NULL
       DO UPDATE SET payload = EXCLUDED.payload, version = outbox.version + 1,
                     updated_at = now()`,
    ]);
  }
  return ctes;
}

/**
 * Takes up to `limit` due entries for `leaseMs`. The LIMIT sits in a materialized CTE with
 * SKIP LOCKED so concurrent dispatchers never take the same entry; the lease (not a held
 * transaction) covers the API call, and an expired lease makes the entry due again.
 */
export async function claimDueOutbox(
  db: Queryable,
  limit: number,
  leaseMs: number,
  settleMs = 0,
): Promise<OutboxEntry[]> {
  const result = await db.query<OutboxEntry>(
    `WITH due AS MATERIALIZED (
       SELECT id FROM outbox
        WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= now()
          AND (locked_until IS NULL OR locked_until < now())
          AND (coalesce_key IS NULL OR updated_at <= now() - $3 * interval '1 millisecond')
          AND NOT EXISTS (SELECT 1 FROM github_pauses p
                           WHERE p.installation_id = outbox.installation_id AND p.until > now())
        ORDER BY next_attempt_at, id
        LIMIT $1
        FOR UPDATE SKIP LOCKED)
     UPDATE outbox SET locked_until = now() + $2 * interval '1 millisecond',
                       attempts = outbox.attempts + 1
       FROM due WHERE outbox.id = due.id
     RETURNING ${COLUMNS}`,
    [limit, leaseMs, settleMs],
  );
  return result.rows.sort((a, b) => a.id - b.id);
}

/**
 * Marks an entry delivered unless a newer write bumped its version meanwhile; then it is
 * made due again so the latest text goes out. Returns whether it was marked delivered.
 */
export async function markOutboxDelivered(db: Queryable, entry: OutboxEntry): Promise<boolean> {
  const done = await db.query(
    `UPDATE outbox SET delivered_at = now(), locked_until = NULL, last_error = NULL,
                       updated_at = now()
      WHERE id = $1 AND version = $2`,
    [entry.id, entry.version],
  );
  if (done.rowCount === 1) return true;
  await db.query("UPDATE outbox SET locked_until = NULL, next_attempt_at = now() WHERE id = $1", [
    entry.id,
  ]);
  return false;
}

export async function markOutboxRetry(
  db: Queryable,
  id: number,
  error: string,
  retryInMs: number,
): Promise<void> {
  await db.query(
    `UPDATE outbox SET locked_until = NULL, last_error = $2, updated_at = now(),
                       next_attempt_at = now() + $3 * interval '1 millisecond'
      WHERE id = $1`,
    [id, error, retryInMs],
  );
}

/**
 * Hands claimed entries back untried (their installation was paused meanwhile): unlocked,
 * and the claim's attempt not counted.
 */
export async function releaseOutbox(db: Queryable, ids: number[]): Promise<void> {
  if (ids.length === 0) return;
  await db.query(
    `UPDATE outbox SET locked_until = NULL, attempts = GREATEST(0, attempts - 1)
      WHERE id = ANY($1::bigint[])`,
    [ids],
  );
}

/**
 * Gives up on an entry and, for a task's entry, records why in its trail, in one
 * statement: whoever sees the entry dead also sees the event.
 */
export async function markOutboxDead(
  db: Queryable,
  id: number,
  error: string,
  event: NewTaskEvent | null,
): Promise<void> {
  const params = new Params();
  const dead = `UPDATE outbox SET locked_until = NULL, last_error = ${params.add(error)},
                       dead_at = now(), updated_at = now()
                 WHERE id = ${params.add(id)}`;
  if (event === null) {
    await db.query(dead, params.values);
    return;
  }
  await db.query(
    `${withClause([["dead", `${dead} RETURNING id`]])}
     ${appendTaskEventSql(params, event)}`,
    params.values,
  );
}

/** Milliseconds until the next pending entry is due (null: nothing pending). */
export async function nextOutboxDueInMs(db: Queryable, settleMs = 0): Promise<number | null> {
  const result = await db.query<{ ms: number | null }>(
    `SELECT GREATEST(0, EXTRACT(EPOCH FROM (min(GREATEST(
              o.next_attempt_at,
              COALESCE(o.locked_until, o.next_attempt_at),
              CASE WHEN o.coalesce_key IS NULL THEN o.next_attempt_at
                   ELSE o.updated_at + $1 * interval '1 millisecond' END,
              COALESCE(p.until, o.next_attempt_at))) - now())) * 1000)::float8 AS ms
       FROM outbox o LEFT JOIN github_pauses p ON p.installation_id = o.installation_id
      WHERE o.delivered_at IS NULL AND o.dead_at IS NULL`,
    [settleMs],
  );
  return result.rows[0]?.ms ?? null;
}

export interface OutboxView {
  pending: number;
  /** Given up on after too many attempts. */
  dead: number;
  /** Seconds the oldest pending entry has waited (database clock); null when none is. */
  oldestPendingAgeSeconds: number | null;
}

export async function outboxView(db: Queryable): Promise<OutboxView> {
  const result = await db.query<OutboxView>(
    `SELECT count(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL)::int AS pending,
            count(*) FILTER (WHERE dead_at IS NOT NULL)::int AS dead,
            (EXTRACT(EPOCH FROM now() - min(created_at) FILTER (
               WHERE delivered_at IS NULL AND dead_at IS NULL)))::float8 AS "oldestPendingAgeSeconds"
       FROM outbox WHERE delivered_at IS NULL`,
  );
  return result.rows[0] ?? { pending: 0, dead: 0, oldestPendingAgeSeconds: null };
}

/** An entry given up on: re-armed once by the watchdog, escalated after a second death. */
export interface DeadOutboxEntry {
  id: number;
  taskId: number | null;
  installationId: number;
  repoFullName: string;
  kind: OutboxKind;
  issueNumber: number | null;
  attempts: number;
  lastError: string | null;
  deadAt: Date;
  rearmedAt: Date | null;
}

export async function findDeadOutbox(db: Queryable): Promise<DeadOutboxEntry[]> {
  const result = await db.query<DeadOutboxEntry>(
    `SELECT id, task_id AS "taskId", installation_id AS "installationId",
            repo_full_name AS "repoFullName", kind,
            (payload->>'issueNumber')::int AS "issueNumber", attempts,
            last_error AS "lastError", dead_at AS "deadAt", rearmed_at AS "rearmedAt"
       FROM outbox WHERE dead_at IS NOT NULL AND delivered_at IS NULL
        -- Superseded: a later write under the same coalesce key was sent or is pending.
        AND NOT EXISTS (SELECT 1 FROM outbox newer
                         WHERE newer.coalesce_key = outbox.coalesce_key AND newer.id > outbox.id
                           AND newer.dead_at IS NULL)
      ORDER BY id LIMIT 100`,
  );
  return result.rows;
}

/**
 * Makes a dead entry due again with a fresh count of attempts, once (`again`: a person said
 * to try once more): false when it is no longer dead or was re-armed before. The NOTIFY wakes the dispatchers on commit.
 */
export async function rearmDeadOutbox(
  db: Queryable,
  id: number,
  options: { again?: boolean } = {},
): Promise<boolean> {
  const result = await db.query(
    `WITH rearmed AS (
       UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = now(),
                         locked_until = NULL, rearmed_at = now(), updated_at = now()
        WHERE id = $1 AND dead_at IS NOT NULL AND delivered_at IS NULL
          AND (rearmed_at IS NULL OR $3)
          -- A newer pending entry under the same coalesce key already carries the latest text.
          AND NOT EXISTS (SELECT 1 FROM outbox pending
                           WHERE pending.coalesce_key = outbox.coalesce_key
                             AND pending.delivered_at IS NULL AND pending.dead_at IS NULL)
        RETURNING id)
     SELECT pg_notify($2, '') FROM rearmed`,
    [id, CHANNELS.outbox, options.again ?? false],
  );
  return result.rowCount === 1;
}

/**
 * Queues an entry under a dedupe key unless one was ever queued under it; returns whether
 * this call queued it (the watchdog escalates each finding once, however many ticks see it).
 */
export async function enqueueOnce(
  db: Queryable,
  entry: NewOutboxEntry & { key: { dedupe: string } },
): Promise<boolean> {
  const result = await db.query(
    `WITH queued AS (
       INSERT INTO outbox (task_id, installation_id, repo_full_name, kind, payload, dedupe_key)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING
       RETURNING id)
     SELECT pg_notify($7, '') FROM queued`,
    [
      entry.taskId,
      entry.installationId,
      entry.repoFullName,
      entry.kind,
      JSON.stringify(entry.payload),
      entry.key.dedupe,
      CHANNELS.outbox,
    ],
  );
  return result.rowCount === 1;
}
