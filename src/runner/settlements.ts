import type { Settlement } from "../db/runs.js";
import { backoff } from "../domain/backoff.js";
import { classify } from "../errors.js";
import type { WorkerExit } from "./supervise.js";
import type { LimitDetection } from "./usage-limits.js";

/**
 * How a run ends, as the settlement written for it. Only the worker's own outcomes (exit
 * status, timeout, no changes) are charged as attempts. Anything else is classified once:
 * infrastructure that may recover (GitHub 5xx, a lock held too long, the network) requeues
 * the task after a growing backoff, uncharged; what retrying cannot fix (configuration, a
 * bug) fails it, uncharged, so `/retry` after the fix still has its attempts.
 */

/** Consecutive infrastructure failures after which the task fails instead of requeueing. */
export const MAX_INFRA_RETRIES = 5;

/** Every settlement but a requeue resets the infrastructure streak. */
const STREAK_RESET = { infraRetries: 0, notBefore: null } as const;

export function workerFailed(
  runner: string,
  reason: string,
  exit: Pick<WorkerExit, "exitCode" | "signal"> | null = null,
): Settlement {
  return {
    outcome: "failed",
    failureReason: reason,
    exitCode: exit?.exitCode ?? null,
    signal: exit?.signal ?? null,
    event: { type: "run_failed", runner, reason },
    changes: { ...STREAK_RESET },
  };
}

export function workerTimedOut(
  runner: string,
  reason: string,
  exit: Pick<WorkerExit, "exitCode" | "signal">,
): Settlement {
  return {
    outcome: "timed_out",
    failureReason: reason,
    exitCode: exit.exitCode,
    signal: exit.signal,
    event: { type: "run_timed_out", runner, reason },
    changes: { ...STREAK_RESET },
  };
}

export function stopped(
  runner: string,
  why: "stopped" | "shutdown",
  exit: WorkerExit | null,
  reason: string | null,
): Settlement {
  const facts = { exitCode: exit?.exitCode ?? null, signal: exit?.signal ?? null };
  if (why === "shutdown") {
    // The runner is going away: the work is not at fault, so the attempt is not charged.
    return {
      outcome: "lost",
      ...facts,
      failureReason: "runner shut down",
      charged: false,
      event: { type: "lease_lost", actor: runner },
    };
  }
  return {
    outcome: "stopped",
    ...facts,
    failureReason: reason,
    event: { type: "run_stopped", runner },
    changes: { ...STREAK_RESET },
  };
}

export interface InfraPolicy {
  /** First requeue delay; doubles per consecutive failure. */
  backoffBaseMs: number;
  now?: () => number;
  random?: () => number;
}

/** The settlement for an error thrown while preparing, pushing or opening the PR. */
export function settlementForError(
  runner: string,
  error: unknown,
  infraRetries: number,
  policy: InfraPolicy,
): Settlement {
  const failure = classify(error);
  const kind = failure.kind === "bug" ? "internal error" : failure.kind;
  if (!failure.retryable) {
    const reason = `${kind}: ${failure.message}`;
    return {
      outcome: "failed",
      failureReason: reason,
      charged: false,
      event: { type: "run_failed", runner, reason, charged: false },
      changes: { ...STREAK_RESET },
    };
  }
  const streak = infraRetries + 1;
  if (streak > MAX_INFRA_RETRIES) {
    const reason = `${kind} kept failing (${MAX_INFRA_RETRIES} retries): ${failure.message}`;
    return {
      outcome: "failed",
      failureReason: reason,
      charged: false,
      event: { type: "run_failed", runner, reason, charged: false },
      changes: { ...STREAK_RESET },
    };
  }
  const now = (policy.now ?? Date.now)();
  const delayMs = failure.retryAfterMs ?? backoff(policy.backoffBaseMs, streak, policy.random);
  const retryAt = new Date(now + delayMs);
  const reason = `${kind}: ${failure.message} (not counted as an attempt; retry ${streak} of ${MAX_INFRA_RETRIES} after ${retryAt.toISOString()})`;
  return {
    outcome: "lost",
    failureReason: reason,
    charged: false,
    event: { type: "run_requeued", runner, reason },
    changes: { infraRetries: streak, notBefore: retryAt },
  };
}

/**
 * The agent stopped at its usage or rate limit, or could not authenticate: uncharged, the
 * task back in the queue, and the profile paused until the reset the agent reported (or a
 * backoff from `backoffBaseMs`, doubling while no reset time comes).
 */
export function workerLimited(
  runner: string,
  limit: LimitDetection,
  exit: Pick<WorkerExit, "exitCode" | "signal">,
  backoffBaseMs: number,
): Settlement {
  const what = LIMIT_WORDS[limit.kind];
  const reason = `${what}: ${limit.evidence} (not counted as an attempt)`;
  return {
    outcome: "limited",
    failureReason: reason,
    exitCode: exit.exitCode,
    signal: exit.signal,
    charged: false,
    event: { type: "run_limited", runner, reason },
    pause: { kind: limit.kind, reason, resetAt: limit.resetAt, backoffBaseMs },
  };
}

const LIMIT_WORDS: Record<LimitDetection["kind"], string> = {
  usage_limit: "the agent hit its usage limit",
  rate_limit: "the agent was rate limited",
  auth: "the agent could not authenticate",
};
