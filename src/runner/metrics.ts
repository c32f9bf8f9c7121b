import type { RunOutcome } from "../db/runs.js";

/**
 * What a runner tells the metrics about its runs. A port, so the runner knows nothing of
 * Prometheus; src/web/metrics.ts implements it.
 */
export interface RunnerMetrics {
  /** A claim took `durationMs` (the claim statement and its transition). */
  claimed(durationMs: number): void;
  /** A worker started `labelToStartMs` after its task was queued (label, /run, /retry). */
  workerStarted(labelToStartMs: number): void;
  /** A run was settled, `durationMs` after it was claimed. */
  runSettled(outcome: RunOutcome, profile: string, durationMs: number): void;
}

export const NO_RUNNER_METRICS: RunnerMetrics = {
  claimed: () => undefined,
  workerStarted: () => undefined,
  runSettled: () => undefined,
};
