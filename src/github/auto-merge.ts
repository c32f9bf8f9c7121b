import type { Pool } from "../db/pool.js";
import { changeTask } from "../db/task-changes.js";
import type { TaskRow } from "../db/tasks.js";
import { actor } from "../domain/actors.js";
import { OverseerError } from "../errors.js";
import { evidenceFrom, mergedEvent, type VerifiedPull } from "./merges.js";
import type { GithubRequester } from "./octokit.js";

interface PullForMerge extends VerifiedPull {
  draft?: boolean;
  mergeable: boolean | null;
  mergeable_state: string;
}

/** GitHub computes mergeability in the background after a push; ask again shortly. */
const MERGEABILITY_RETRY_MS = 3_000;

function mergeabilityNotKnownYet(prNumber: number): OverseerError {
  return new OverseerError(
    "github",
    `GitHub is still computing whether PR #${prNumber} is mergeable`,
    {
      retryable: true,
      retryAfterMs: MERGEABILITY_RETRY_MS,
    },
  );
}

const GREEN_CONCLUSIONS = new Set(["success", "neutral", "skipped"]);
/** "clean": checks and reviews satisfy branch protection; "has_hooks": same, with hooks. */
const MERGEABLE_STATES = new Set(["clean", "has_hooks"]);

export type MergeDecision = { merge: true } | { merge: false; reason: string };

/**
 * Merges a task's PR under `merge: auto` when, right now: the task awaits merge, a
 * risk-labelled task was approved, the PR is open, not a draft, mergeable with checks and
 * reviews satisfied (mergeable_state "clean"), and every check run and status on its head
 * commit passed. Then records the evidence read back from the API. Anything else: no merge.
 */
export async function mergeWhenReady(
  pool: Pool,
  octokit: GithubRequester,
  task: TaskRow,
  target: { owner: string; repo: string },
): Promise<MergeDecision> {
  const policy = task.config as { merge?: string; mergeMethod?: string };
  if (task.state !== "awaiting_merge" || task.prNumber === null) {
    return { merge: false, reason: `task is ${task.state}` };
  }
  if (policy.merge !== "auto") return { merge: false, reason: "merge policy is manual" };
  if (task.riskLabelled && !task.approvedBy) {
    return { merge: false, reason: "risk-labelled task without /approve" };
  }
  const pull = (
    await octokit.request("GET /repos/{owner}/{repo}/pulls/{pull_number}", {
      ...target,
      pull_number: task.prNumber,
    })
  ).data as PullForMerge;
  if (pull.state !== "open" || pull.draft) return { merge: false, reason: "PR is not open" };
  if (pull.mergeable === null) throw mergeabilityNotKnownYet(pull.number);
  if (!pull.mergeable || !MERGEABLE_STATES.has(pull.mergeable_state)) {
    return { merge: false, reason: `PR is not mergeable (${pull.mergeable_state})` };
  }
  const checks = await checksPassed(octokit, target, pull.head.sha);
  if (!checks.merge) return checks;

  await octokit.request("PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge", {
    ...target,
    pull_number: pull.number,
    merge_method: policy.mergeMethod ?? "squash",
    // Merge exactly the commit whose checks we saw; GitHub refuses if the head moved.
    sha: pull.head.sha,
  });
  const merged = (
    await octokit.request("GET /repos/{owner}/{repo}/pulls/{pull_number}", {
      ...target,
      pull_number: pull.number,
    })
  ).data as VerifiedPull;
  const evidence = evidenceFrom(merged);
  if (!evidence)
    throw new Error(`PR #${pull.number} merge was accepted but is not reported merged`);
  const done = mergedEvent(evidence, merged.head.sha, merged.merged_by?.login ?? "overseer");
  await changeTask(
    pool,
    { id: task.id },
    done.event,
    { actor: actor.overseer("auto-merge"), cause: `auto-merge:${pull.number}` },
    done.changes,
  );
  return { merge: true };
}

async function checksPassed(
  octokit: GithubRequester,
  target: { owner: string; repo: string },
  sha: string,
): Promise<MergeDecision> {
  const runs = (
    await octokit.request("GET /repos/{owner}/{repo}/commits/{ref}/check-runs", {
      ...target,
      ref: sha,
      per_page: 100,
    })
  ).data as { check_runs: { name: string; status: string; conclusion: string | null }[] };
  for (const run of runs.check_runs) {
    if (run.status !== "completed") return { merge: false, reason: `check ${run.name} is pending` };
    if (!GREEN_CONCLUSIONS.has(run.conclusion ?? "")) {
      return { merge: false, reason: `check ${run.name} concluded ${run.conclusion}` };
    }
  }
  const status = (
    await octokit.request("GET /repos/{owner}/{repo}/commits/{ref}/status", { ...target, ref: sha })
  ).data as { state: string; total_count: number };
  if (status.total_count > 0 && status.state !== "success") {
    return { merge: false, reason: `commit status is ${status.state}` };
  }
  return { merge: true };
}
