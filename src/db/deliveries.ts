import type { Queryable } from "./pool.js";

/**
 * Webhook deliveries: every X-GitHub-Delivery id seen, and, until it is processed, the
 * delivery itself as a work item (see the delivery-queue migration for its outcomes).
 *
 * Who may write what, so that a delivery is applied once whatever the races:
 * - the handler's own transaction marks it processed (markDeliveryApplied) with its changes,
 *   only while it is still pending; a second process applying it too finds it processed
 *   and writes nothing, even one whose lease expired mid-way;
 * - every other write about an attempt (finished with nothing to change, rejected, retry,
 *   dead, released) is fenced on the attempt's lease token, so a process whose lease
 *   expired cannot overwrite the attempt another process has taken since.
 */

export interface NewDelivery {
  id: string;
  event: string;
  action: string | null;
  /** `<repository id>#<issue or PR number>`, or null for an event about no one issue. */
  subject: string | null;
  /** The body exactly as GitHub signed it. */
  body: string;
}

export type StoredDelivery =
  /** Stored now; taken for this process when `leaseToken` is set, else left for any. */
  | { stored: "new"; leaseToken: string | null; attempts: number }
  /** A dead delivery that GitHub delivered again: pending once more, for any process. */
  | { stored: "rearmed" }
  | { stored: "duplicate" };

/**
 * Stores deliveries (distinct ids), each at most once, in one statement and so one
 * commit: the door gathers what arrives while its previous INSERT is under way. The first
 * `take` of them are also taken for this process (attempt 1, under a lease of `leaseMs`),
 * except one whose subject has an earlier delivery still pending, in the table or earlier
 * in the batch: that one waits its turn, for whichever process gets there first. A
 * redelivery of a delivery given up on arms it again; any other redelivery changes nothing.
 * Rows are written in id order, so two batches that share an id cannot deadlock.
 */
export async function storeDeliveries(
  db: Queryable,
  deliveries: NewDelivery[],
  take: { count: number; leaseMs: number },
): Promise<Map<string, StoredDelivery>> {
  const result = await db.query<{
    id: string;
    inserted: boolean;
    leaseToken: string | null;
    attempts: number;
  }>(
    // One row of parameters per delivery: a payload goes to the server as it is, never
    // escaped into an array literal (a 100-row batch of 12 KB payloads would cost the
    // event loop milliseconds).
    `WITH incoming (id, event, action, subject, body, ord) AS (
       VALUES ${deliveries.map((_, i) => `($${i * 5 + 3}, $${i * 5 + 4}, $${i * 5 + 5}, $${i * 5 + 6}, $${i * 5 + 7}, ${i + 1})`).join(",\n              ")}),
     turn AS (
       SELECT i.*, i.ord <= $1
                   AND NOT EXISTS (SELECT 1 FROM deliveries e
                                    WHERE i.subject IS NOT NULL AND e.subject = i.subject
                                      AND e.outcome = 'pending')
                   AND NOT EXISTS (SELECT 1 FROM incoming j
                                    WHERE j.subject = i.subject AND j.ord < i.ord) AS mine
         FROM incoming i)
     INSERT INTO deliveries AS d (id, event, action, subject, payload, outcome, attempts,
                                  lease_token, lease_expires_at)
     SELECT id, event, action, subject, body::json, 'pending',
            CASE WHEN mine THEN 1 ELSE 0 END,
            CASE WHEN mine THEN gen_random_uuid() END,
            CASE WHEN mine THEN now() + $2 * interval '1 millisecond' END
       FROM turn ORDER BY id
     ON CONFLICT (id) DO UPDATE
        SET outcome = 'pending', payload = EXCLUDED.payload, attempts = 0,
            next_attempt_at = now(), lease_token = NULL, lease_expires_at = NULL
      WHERE d.outcome = 'dead'
     RETURNING d.id, (xmax = 0) AS inserted, d.lease_token AS "leaseToken", d.attempts`,
    [
      take.count,
      take.leaseMs,
      ...deliveries.flatMap((delivery) => [
        delivery.id,
        delivery.event,
        delivery.action,
        delivery.subject,
        delivery.body,
      ]),
    ],
  );
  const stored = new Map<string, StoredDelivery>(
    deliveries.map((delivery) => [delivery.id, { stored: "duplicate" }]),
  );
  for (const row of result.rows) {
    stored.set(
      row.id,
      row.inserted
        ? { stored: "new", leaseToken: row.leaseToken, attempts: row.attempts }
        : { stored: "rearmed" },
    );
  }
  return stored;
}

/** Records a delivery refused at the door (a malformed payload) with the reason. */
export async function recordRejectedDelivery(
  db: Queryable,
  delivery: Pick<NewDelivery, "id" | "event" | "action">,
  reason: string,
): Promise<void> {
  await db.query(
    `INSERT INTO deliveries (id, event, action, outcome, error, processed_at)
     VALUES ($1, $2, $3, 'rejected', $4, now())
     ON CONFLICT (id) DO NOTHING`,
    [delivery.id, delivery.event, delivery.action, reason],
  );
}

/**
 * Inside the transaction that applies a delivery: marks it processed (with the repository
 * it is about) and says whether it was still pending. False: it was applied already
 * (another process, an earlier attempt) and the caller MUST write nothing more.
 */
export async function markDeliveryApplied(
  db: Queryable,
  id: string,
  repoId: number,
): Promise<boolean> {
  const result = await db.query(
    `UPDATE deliveries
        SET outcome = 'processed', repo_id = $2, processed_at = now(), payload = NULL,
            lease_token = NULL, lease_expires_at = NULL
      WHERE id = $1 AND outcome = 'pending'`,
    [id, repoId],
  );
  return result.rowCount === 1;
}

/** A pending delivery whose subject has an earlier one pending: it waits for that one. */
function waitsItsTurnSql(alias: string): string {
  return `${alias}.subject IS NOT NULL AND EXISTS (
            SELECT 1 FROM deliveries e
             WHERE e.subject = ${alias}.subject AND e.outcome = 'pending'
               AND (e.received_at, e.id) < (${alias}.received_at, ${alias}.id))`;
}

/** A delivery taken for processing: what its handlers receive, and the attempt's fence. */
export interface ClaimedDelivery {
  id: string;
  event: string;
  action: string | null;
  subject: string | null;
  payload: unknown;
  attempts: number;
  leaseToken: string;
}

/**
 * Takes up to `limit` pending deliveries that are due and not held by a live lease, oldest
 * first, skipping any whose subject has an earlier delivery still pending (that one goes
 * first, wherever it is). The LIMIT sits in a materialized CTE with SKIP LOCKED, so
 * concurrent processes never take the same delivery; the lease, not a held transaction,
 * covers the processing.
 */
export async function claimDueDeliveries(
  db: Queryable,
  limit: number,
  leaseMs: number,
): Promise<ClaimedDelivery[]> {
  const result = await db.query<ClaimedDelivery>(
    `WITH due AS MATERIALIZED (
       SELECT d.id FROM deliveries d
        WHERE d.outcome = 'pending' AND d.next_attempt_at <= now()
          AND (d.lease_expires_at IS NULL OR d.lease_expires_at < now())
          AND NOT (${waitsItsTurnSql("d")})
        ORDER BY d.next_attempt_at, d.received_at, d.id
        LIMIT $1
        FOR UPDATE SKIP LOCKED)
     UPDATE deliveries
        SET lease_token = gen_random_uuid(),
            lease_expires_at = now() + $2 * interval '1 millisecond',
            attempts = deliveries.attempts + 1
       FROM due WHERE deliveries.id = due.id
     RETURNING deliveries.id, deliveries.event, deliveries.action, deliveries.subject,
               deliveries.payload, deliveries.attempts, deliveries.lease_token AS "leaseToken"`,
    [limit, leaseMs],
  );
  return result.rows;
}

/** Whether another delivery about `subject` waits (its turn may have come). */
function followersSql(subject: string): string {
  return `EXISTS (SELECT 1 FROM deliveries
                   WHERE subject = ${subject} AND outcome = 'pending' AND id <> $1)`;
}

/**
 * The attempt ended: processed (its handlers ran and changed nothing, or their transaction
 * marked it already), rejected with a reason, or dead with the last error. Returns whether
 * a later delivery about the same subject is waiting.
 */
export async function settleDelivery(
  db: Queryable,
  claim: Pick<ClaimedDelivery, "id" | "leaseToken" | "subject">,
  outcome: "processed" | "rejected" | "dead",
  error: string | null = null,
): Promise<boolean> {
  const result = await db.query<{ followers: boolean }>(
    `WITH settled AS (
       UPDATE deliveries
          SET outcome = $3, processed_at = now(), error = COALESCE($4, error),
              payload = CASE WHEN $3 = 'dead' THEN payload END,
              lease_token = NULL, lease_expires_at = NULL
        WHERE id = $1 AND outcome = 'pending' AND lease_token = $2)
     SELECT ${followersSql("$5")} AS followers`,
    [claim.id, claim.leaseToken, outcome, error, claim.subject],
  );
  return result.rows[0]?.followers ?? false;
}

/** The attempt failed; the delivery is due again in `retryInMs`, for any process. */
export async function retryDelivery(
  db: Queryable,
  claim: Pick<ClaimedDelivery, "id" | "leaseToken">,
  error: string,
  retryInMs: number,
): Promise<void> {
  await db.query(
    `UPDATE deliveries
        SET error = $3, next_attempt_at = now() + $4 * interval '1 millisecond',
            lease_token = NULL, lease_expires_at = NULL
      WHERE id = $1 AND outcome = 'pending' AND lease_token = $2`,
    [claim.id, claim.leaseToken, error, retryInMs],
  );
}

/**
 * Hands taken deliveries back untried (this process is stopping): due at once for any
 * process, the attempt not counted.
 */
export async function releaseDeliveries(
  db: Queryable,
  claims: Pick<ClaimedDelivery, "id" | "leaseToken">[],
): Promise<void> {
  if (claims.length === 0) return;
  await db.query(
    `UPDATE deliveries
        SET lease_token = NULL, lease_expires_at = NULL, attempts = GREATEST(0, attempts - 1)
       FROM unnest($1::text[], $2::uuid[]) AS taken (id, lease_token)
      WHERE deliveries.id = taken.id AND deliveries.lease_token = taken.lease_token
        AND deliveries.outcome = 'pending'`,
    [claims.map((claim) => claim.id), claims.map((claim) => claim.leaseToken)],
  );
}

/**
 * Milliseconds until the next pending delivery may be claimed (0: one may be now), or
 * null when none is pending. One taken by a process counts from its lease's expiry; one
 * waiting its turn behind an earlier delivery does not count at all (the earlier one does).
 */
export async function nextDeliveryDueInMs(db: Queryable): Promise<number | null> {
  const result = await db.query<{ ms: number | null }>(
    `SELECT GREATEST(0, EXTRACT(EPOCH FROM min(GREATEST(d.next_attempt_at,
                       COALESCE(d.lease_expires_at, d.next_attempt_at))) - now()) * 1000)::float8 AS ms
       FROM deliveries d WHERE d.outcome = 'pending' AND NOT (${waitsItsTurnSql("d")})`,
  );
  return result.rows[0]?.ms ?? null;
}

export interface DeliveryView {
  pending: number;
  dead: number;
  oldestPendingAgeSeconds: number | null;
}

/** Deliveries waiting to be processed, the oldest one's age, and those given up on. */
export async function deliveryView(db: Queryable): Promise<DeliveryView> {
  const result = await db.query<DeliveryView>(
    `SELECT (SELECT count(*) FROM deliveries WHERE outcome = 'pending')::int AS pending,
            (SELECT count(*) FROM deliveries WHERE outcome = 'dead')::int AS dead,
            (SELECT EXTRACT(EPOCH FROM now() - min(received_at))
               FROM deliveries WHERE outcome = 'pending')::float8 AS "oldestPendingAgeSeconds"`,
  );
  return result.rows[0] ?? { pending: 0, dead: 0, oldestPendingAgeSeconds: null };
}
