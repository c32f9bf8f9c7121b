import type { Detector } from "../detector.js";
import { missedCancel, missedLabel } from "./labels.js";
import { missedPullClose, missedPullReopen } from "./pulls.js";
import { needsGithub } from "./shared.js";

/**
 * Findings about GitHub's side of a task (missed webhooks), found by conditional polling.
 * In this order: a merged PR is settled before a closed issue could read as a cancel.
 */
export const githubDetectors: Detector[] = [
  missedPullClose,
  missedPullReopen,
  missedCancel,
  missedLabel,
].map(needsGithub);
