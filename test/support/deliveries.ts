import type { Queryable } from "../../src/db/pool.js";

/** A stored delivery as its row says, for tests. */
export interface DeliveryRow {
  outcome: "pending" | "processed" | "rejected" | "dead";
  attempts: number;
  /** Taken by a process right now. */
  taken: boolean;
  error: string | null;
}

export function deliveryRow(db: Queryable, id: string): Promise<DeliveryRow | null> {
  return db
    .query<DeliveryRow>(
      `SELECT outcome, attempts, lease_token IS NOT NULL AS taken, error
         FROM deliveries WHERE id = $1`,
      [id],
    )
    .then((result) => result.rows[0] ?? null);
}

/**
 * Waits until the attempt a delivery was answered for has ended: processed, rejected or
 * dead, or failed and waiting for its retry. Null when it was never stored (ignored at the
 * door, or refused). What the webhook senders of the tests wait for, so a test reads the
 * database after a delivery as it did when deliveries were processed before the answer.
 */
export async function settledDelivery(
  db: Queryable,
  id: string,
  timeoutMs = 30_000,
): Promise<DeliveryRow | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await deliveryRow(db, id);
    if (!row) return null;
    if (row.outcome !== "pending" || (!row.taken && row.attempts > 0)) return row;
    if (Date.now() > deadline) {
      throw new Error(`delivery ${id} still ${row.taken ? "being processed" : "waiting"}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Waits until a delivery is processed (through any retries); throws if it ends otherwise. */
export async function processedDelivery(
  db: Queryable,
  id: string,
  timeoutMs = 30_000,
): Promise<DeliveryRow> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await deliveryRow(db, id);
    if (row && row.outcome !== "pending") {
      if (row.outcome !== "processed") {
        throw new Error(`delivery ${id} ended ${row.outcome}: ${row.error ?? "no error"}`);
      }
      return row;
    }
    if (Date.now() > deadline)
      throw new Error(`delivery ${id} not processed: ${JSON.stringify(row)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
