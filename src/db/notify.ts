import type { Queryable } from "./pool.js";

/** LISTEN/NOTIFY channels. Payloads are hints; listeners always re-read the tables. */
export const CHANNELS = {
  /** A task became claimable. */
  queue: "overseer_queue",
  /** A stop was requested; payload: the run id. */
  stop: "overseer_stop",
  /** An outbox entry is due. */
  outbox: "overseer_outbox",
} as const;

export type Channel = (typeof CHANNELS)[keyof typeof CHANNELS];

/** Inside a transaction, delivered only on commit (and once per distinct payload). */
export async function notify(db: Queryable, channel: Channel, payload = ""): Promise<void> {
  await db.query("SELECT pg_notify($1, $2)", [channel, payload]);
}
