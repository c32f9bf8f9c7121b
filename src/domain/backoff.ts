/** Exponential backoff shared by every retry loop (outbox deliveries, requeued tasks). Pure. */

export const MAX_BACKOFF_MS = 10 * 60_000;

/** base · 2^(attempt−1), capped, with ±20% jitter so a fleet does not retry in step. */
export function backoff(baseMs: number, attempt: number, random = Math.random): number {
  const exponential = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exponential * (0.8 + 0.4 * random()));
}
