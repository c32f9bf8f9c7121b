import type { Detector } from "./detector.js";
import { expiredLease, runTimeout, runWithoutProcess, staleRunner } from "./detectors/leases.js";
import { outboxDead } from "./detectors/outbox.js";
import { workerWithoutRun } from "./detectors/processes.js";
import { profilePaused, repeatedFailure, stuckTask } from "./detectors/tasks.js";
import { orphanWorktree, worktreeMissing } from "./detectors/worktrees.js";
import { githubDetectors } from "./reconcile/index.js";

/**
 * Every detector, in the order a tick runs them: runners before their runs (a stale
 * runner's runs are requeued under its finding), processes, disk, outbox, then tasks
 * (a task requeued above is not also stuck), then GitHub.
 */
export const localDetectors: readonly Detector[] = [
  staleRunner,
  expiredLease,
  runWithoutProcess,
  runTimeout,
  workerWithoutRun,
  worktreeMissing,
  orphanWorktree,
  outboxDead,
  repeatedFailure,
  stuckTask,
  profilePaused,
];

export function allDetectors(): Detector[] {
  return [...localDetectors, ...githubDetectors];
}

/** GitHub findings need credentials; a process without them skips these and says so. */
export function needsGithub(detector: Detector): boolean {
  return githubDetectors.includes(detector);
}
