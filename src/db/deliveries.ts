import type { Queryable } from "./pool.js";

export interface DeliveryRecord {
  id: string;
  event: string;
  action: string | null;
  repoId: number | null;
}

export async function isDeliverySeen(db: Queryable, id: string): Promise<boolean> {
  const result = await db.query("SELECT 1 FROM deliveries WHERE id = $1", [id]);
  return (result.rowCount ?? 0) > 0;
}

/**
 * Records a delivery id; false when it was already recorded. Called inside the
 * transaction that applies the delivery, so a crash before commit leaves the id
 * unrecorded and GitHub's redelivery is processed.
 */
export async function recordDelivery(db: Queryable, delivery: DeliveryRecord): Promise<boolean> {
  const result = await db.query(
    `INSERT INTO deliveries (id, event, action, repo_id) VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO NOTHING`,
    [delivery.id, delivery.event, delivery.action, delivery.repoId],
  );
  return result.rowCount === 1;
}

/** Records a delivery that was refused (a malformed payload) with the reason. */
export async function recordRejectedDelivery(
  db: Queryable,
  delivery: DeliveryRecord,
  reason: string,
): Promise<void> {
  await db.query(
    `INSERT INTO deliveries (id, event, action, repo_id, outcome, error)
     VALUES ($1, $2, $3, $4, 'rejected', $5)
     ON CONFLICT (id) DO NOTHING`,
    [delivery.id, delivery.event, delivery.action, delivery.repoId, reason],
  );
}
