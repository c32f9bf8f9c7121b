import type { Detector } from "../detector.js";

/** Findings about GitHub's side of a task (missed webhooks), found by conditional polling. */
export const githubDetectors: Detector[] = [];
