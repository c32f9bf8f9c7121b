import { backoff } from "../../domain/backoff.js";
import { classify } from "../../errors.js";

/**
 * What to do with an outbox entry whose delivery failed: try again (after GitHub's
 * Retry-After or rate-limit reset when it gave one, else an exponential backoff), or give
 * up and record the failure on the task. 5xx, network errors and rate limits are retried;
 * other 4xx, and entries that can no longer be delivered, are final.
 */

export type RetryDecision =
  | {
      retry: true;
      delayMs: number;
      /** GitHub named the wait (a rate limit): it holds for the whole installation. */
      toldToWait: boolean;
      message: string;
    }
  | { retry: false; message: string };

export function decideRetry(
  error: unknown,
  attempts: number,
  policy: { maxAttempts: number; backoffBaseMs: number },
  now = Date.now(),
  random = Math.random,
): RetryDecision {
  const failure = classify(error, now);
  if (!failure.retryable || attempts >= policy.maxAttempts) {
    return { retry: false, message: failure.message };
  }
  return {
    retry: true,
    delayMs: failure.retryAfterMs ?? backoff(policy.backoffBaseMs, attempts, random),
    toldToWait: failure.retryAfterMs !== null,
    message: failure.message,
  };
}
