import type { Pool } from "../db/pool.js";
import { changeTask } from "../db/task-changes.js";
import type { TaskRow } from "../db/tasks.js";
import { actor } from "../domain/actors.js";
import { codeSpan } from "../domain/markdown.js";
import { OverseerError } from "../errors.js";
import { evidenceFrom, isTasksOwnPull, mergedEvent, type VerifiedPull } from "./merges.js";
import type { GithubRequester } from "./octokit.js";

interface PullForMerge extends VerifiedPull {
  draft?: boolean;
  mergeable: boolean | null;
  mergeable_state: string;
}

/** The repository a task's PR must live in, as route parameters and GitHub's id. */
export interface MergeTarget {
  owner: string;
  repo: string;
  githubId: number;
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
/** GitHub's largest page of check runs and statuses. */
const PER_PAGE = 100;
/** 2,000 check runs on one commit is no CI anyone runs; past it, decline rather than read on. */
const MAX_PAGES = 20;

export type MergeDecision =
  | { merge: true }
  /** `announce`: said on the issue (once per head commit), not only in the audit trail. */
  | { merge: false; reason: string; announce?: { key: string; body: string } };

/**
 * Merges a task's PR under `merge: auto` only when what would be merged is what was
 * reviewed, right now: the task awaits merge; the PR is open, not a draft, and its head is
 * the task's branch in this repository; the head commit is the one Overseer pushed (or one
 * a commander approved since); a risk-labelled task is approved for that commit; GitHub
 * says it is mergeable with reviews satisfied; and every check run and status on that
 * commit passed, every page of them. Then it merges exactly that commit and records the
 * evidence read back from the API. Anything else: no merge.
 */
export async function mergeWhenReady(
  pool: Pool,
  octokit: GithubRequester,
  task: TaskRow,
  target: MergeTarget,
): Promise<MergeDecision> {
  const policy = task.config as { merge?: string; mergeMethod?: string };
  if (task.state !== "awaiting_merge" || task.prNumber === null) {
    return { merge: false, reason: `task is ${task.state}` };
  }
  if (policy.merge !== "auto") return { merge: false, reason: "merge policy is manual" };
  if (task.riskLabelled && !task.approvedBy) {
    return { merge: false, reason: "risk-labelled task without /approve" };
  }
  const route = { owner: target.owner, repo: target.repo };
  const pull = (
    await octokit.request("GET /repos/{owner}/{repo}/pulls/{pull_number}", {
      ...route,
      pull_number: task.prNumber,
    })
  ).data as PullForMerge;
  const reviewed = reviewedHead(task, pull, target);
  if (!reviewed.merge) return reviewed;
  if (pull.mergeable === null) throw mergeabilityNotKnownYet(pull.number);
  if (!pull.mergeable || !MERGEABLE_STATES.has(pull.mergeable_state)) {
    return { merge: false, reason: `PR is not mergeable (${pull.mergeable_state})` };
  }
  const checks = await checksPassed(octokit, route, pull.head.sha);
  if (!checks.merge) return checks;

  await octokit.request("PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge", {
    ...route,
    pull_number: pull.number,
    merge_method: policy.mergeMethod ?? "squash",
    // Merge exactly the commit whose checks we saw; GitHub refuses if the head moved.
    sha: pull.head.sha,
  });
  const merged = (
    await octokit.request("GET /repos/{owner}/{repo}/pulls/{pull_number}", {
      ...route,
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

/**
 * The PR is open, its head is the task's branch here, and the head commit is one that was
 * reviewed: the commit Overseer pushed, or one a commander approved after it. A push by
 * anyone after Overseer's stops auto-merge, and the issue is told.
 */
function reviewedHead(task: TaskRow, pull: PullForMerge, target: MergeTarget): MergeDecision {
  if (pull.state !== "open" || pull.draft) return { merge: false, reason: "PR is not open" };
  if (!isTasksOwnPull(pull, task, target.githubId)) {
    return {
      merge: false,
      reason: `PR head ${pull.head.repo?.full_name ?? "(deleted)"}:${pull.head.ref} is not the task's branch`,
    };
  }
  const head = pull.head.sha;
  if (head !== task.prHeadSha && head !== task.approvedSha) {
    return {
      merge: false,
      reason: `head ${head} is not the commit Overseer pushed (${task.prHeadSha ?? "none"})`,
      announce: { key: `auto-merge-stopped:${task.id}:${head}`, body: pushedAfterUs(task, pull) },
    };
  }
  // An approval given while the PR existed covers the commit it saw, and only that one.
  if (task.riskLabelled && task.approvedSha !== null && head !== task.approvedSha) {
    return {
      merge: false,
      reason: `the approval covers ${task.approvedSha}, not the head ${head}`,
    };
  }
  return { merge: true };
}

function pushedAfterUs(task: TaskRow, pull: PullForMerge): string {
  const branch = task.branch ? codeSpan(task.branch) : "the task's branch";
  return [
    `Auto-merge is stopped for #${pull.number}: ${branch} is now at ${pull.head.sha}, not at ${task.prHeadSha ?? "the commit Overseer pushed"}, which Overseer pushed.`,
    "",
    "Someone pushed after Overseer did, and Overseer merges only what it pushed or what a maintainer approved. Review the new commits, then comment `/approve` to let Overseer merge this head commit, or merge the PR yourself.",
  ].join("\n");
}

/** Every check run and every commit status on `sha` passed, all pages of them. */
async function checksPassed(
  octokit: GithubRequester,
  route: { owner: string; repo: string },
  sha: string,
): Promise<MergeDecision> {
  const runs = await readAllPages(
    octokit,
    "GET /repos/{owner}/{repo}/commits/{ref}/check-runs",
    { ...route, ref: sha },
    (data: { total_count: number; check_runs: CheckRun[] }) => ({
      items: data.check_runs,
      total: data.total_count,
    }),
  );
  if (!runs) return { merge: false, reason: `more than ${MAX_PAGES * PER_PAGE} check runs` };
  for (const run of runs.items) {
    if (run.status !== "completed") return { merge: false, reason: `check ${run.name} is pending` };
    if (!GREEN_CONCLUSIONS.has(run.conclusion ?? "")) {
      return { merge: false, reason: `check ${run.name} concluded ${run.conclusion}` };
    }
  }
  const statuses = await readAllPages(
    octokit,
    "GET /repos/{owner}/{repo}/commits/{ref}/status",
    { ...route, ref: sha },
    (data: { state: string; total_count: number; statuses: CommitStatus[] }) => ({
      items: data.statuses,
      total: data.total_count,
      state: data.state,
    }),
  );
  if (!statuses) return { merge: false, reason: `more than ${MAX_PAGES * PER_PAGE} statuses` };
  if (statuses.total > 0 && statuses.state !== "success") {
    return { merge: false, reason: `commit status is ${statuses.state}` };
  }
  for (const status of statuses.items) {
    if (status.state !== "success") {
      return { merge: false, reason: `status ${status.context} is ${status.state}` };
    }
  }
  return { merge: true };
}

interface CheckRun {
  name: string;
  status: string;
  conclusion: string | null;
}

interface CommitStatus {
  context: string;
  state: string;
}

/**
 * Reads a paginated list until it has `total` items or a page comes back short; null
 * when it would take more than MAX_PAGES. `state` is the first page's, where there is one.
 */
async function readAllPages<D, T>(
  octokit: GithubRequester,
  route: string,
  parameters: Record<string, unknown>,
  pick: (data: D) => { items: T[]; total: number; state?: string },
): Promise<{ items: T[]; total: number; state?: string } | null> {
  const items: T[] = [];
  let first: { total: number; state?: string } | undefined;
  for (let page = 1; page <= MAX_PAGES; page += 1) {
    const response = await octokit.request(route, { ...parameters, per_page: PER_PAGE, page });
    const picked = pick(response.data as D);
    first ??= { total: picked.total, state: picked.state };
    items.push(...picked.items);
    if (picked.items.length < PER_PAGE || items.length >= first.total) {
      return { items, ...first };
    }
  }
  return null;
}
