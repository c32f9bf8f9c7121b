import type { Context, Probot } from "probot";
import { enqueueAutoMerge } from "../db/lifecycle.js";
import { withTransaction } from "../db/pool.js";
import { getRepoByGithubId } from "../db/repos.js";
import { findTask, findTaskByPullRequest, type TaskChanges, type TaskRow } from "../db/tasks.js";
import type { MergeEvidence, TaskEvent } from "../domain/types.js";
import { applyInDelivery, type IntakeDependencies, oncePerDelivery } from "./intake.js";
import { type PullRequestEvent, parsePayload, pullRequestEventSchema } from "./payloads.js";

/** What GET /repos/{owner}/{repo}/pulls/{pull_number} says, the only source of merge truth. */
export interface VerifiedPull {
  number: number;
  html_url: string;
  state: string;
  merged: boolean;
  merge_commit_sha: string | null;
  merged_at: string | null;
  merged_by: { login: string } | null;
  head: { ref: string; sha: string };
}

/** Evidence only from the API's answer, and only when it is complete. */
export function evidenceFrom(pull: VerifiedPull): MergeEvidence | null {
  if (!pull.merged || !pull.merge_commit_sha || !pull.merged_at) return null;
  return {
    prNumber: pull.number,
    prUrl: pull.html_url,
    mergeCommitSha: pull.merge_commit_sha,
    mergedAt: pull.merged_at,
    mergedBy: pull.merged_by?.login ?? null,
  };
}

const CLOSING_KEYWORDS = /\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(\d+)\b/gi;

/** Issues a PR body closes in its own repository ("Closes #12", "fixes #3"). */
export function closingIssueNumbers(body: string | null | undefined): number[] {
  return [...(body ?? "").matchAll(CLOSING_KEYWORDS)].map((match) => Number(match[1]));
}

/**
 * Merge evidence. A `pull_request.closed` payload saying `merged: true` proves nothing:
 * the PR is fetched from the API and only its answer, complete with merge commit and
 * time, moves the task to done (the schema refuses done without it).
 */
export function registerMergeHandlers(app: Probot, deps: IntakeDependencies): void {
  app.on("pull_request.closed", (context) =>
    oncePerDelivery(deps, context, () => onPullClosed(deps, context)),
  );
  app.on("pull_request.reopened", (context) =>
    oncePerDelivery(deps, context, () => onPullReopened(deps, context)),
  );
  app.on("check_suite.completed", (context) =>
    oncePerDelivery(deps, context, () => onChecksCompleted(deps, context)),
  );
}

async function taskForPull(
  deps: IntakeDependencies,
  event: PullRequestEvent,
): Promise<TaskRow | null> {
  const repo = await getRepoByGithubId(deps.pool, event.repository.id).catch(() => null);
  if (!repo) return null;
  const byPull = await findTaskByPullRequest(deps.pool, repo.id, {
    number: event.pull_request.number,
    headRef: event.pull_request.head.ref,
  });
  if (byPull) return byPull;
  for (const issue of closingIssueNumbers(event.pull_request.body)) {
    const task = await findTask(deps.pool, repo.id, issue);
    if (task) return task;
  }
  return null;
}

async function onPullClosed(deps: IntakeDependencies, context: Context): Promise<void> {
  const event = parsePayload(pullRequestEventSchema, context.payload, "pull_request.closed");
  const found = await taskForPull(deps, event);
  if (!found || found.state === "done") return;
  const response = await context.octokit.request("GET /repos/{owner}/{repo}/pulls/{pull_number}", {
    owner: event.repository.owner.login,
    repo: event.repository.name,
    pull_number: event.pull_request.number,
  });
  const pull = response.data as unknown as VerifiedPull;
  const evidence = evidenceFrom(pull);
  const cause = { actor: event.sender.login, cause: `delivery:${context.id}` };
  if (evidence) {
    const merged = mergedEvent(evidence, pull.head.sha, cause.actor);
    await applyInDelivery(deps, context, event, found.id, merged.event, cause, merged.changes);
    return;
  }
  if (event.pull_request.merged) {
    deps.log.warn(
      { delivery: context.id, pr: pull.number, task: found.id },
      "payload claims a merge the API does not confirm; ignored",
    );
  }
  const closed = { type: "pr_closed_unmerged" as const, actor: cause.actor, prNumber: pull.number };
  await applyInDelivery(deps, context, event, found.id, closed, cause);
}

async function onPullReopened(deps: IntakeDependencies, context: Context): Promise<void> {
  const event = parsePayload(pullRequestEventSchema, context.payload, "pull_request.reopened");
  const found = await taskForPull(deps, event);
  if (!found) return;
  const cause = { actor: event.sender.login, cause: `delivery:${context.id}` };
  const reopened = {
    type: "pr_reopened" as const,
    actor: cause.actor,
    prNumber: event.pull_request.number,
  };
  await applyInDelivery(deps, context, event, found.id, reopened, cause);
}

/** The pr_merged event and the evidence columns it writes, from a verified PR. */
export function mergedEvent(
  evidence: MergeEvidence,
  headSha: string,
  actor: string,
): { event: TaskEvent; changes: TaskChanges } {
  return {
    event: { type: "pr_merged", actor, evidence },
    changes: {
      prUrl: evidence.prUrl,
      prHeadSha: headSha,
      mergeCommitSha: evidence.mergeCommitSha,
      mergedAt: new Date(evidence.mergedAt),
      mergedBy: evidence.mergedBy,
    },
  };
}

/**
 * Checks finished on some commit: every auto-merge task whose PR is among the suite's gets
 * a `merge_pr` outbox entry. The dispatcher re-verifies everything (checks, reviews,
 * approval, head commit) right before merging, so a stale trigger merges nothing.
 */
async function onChecksCompleted(deps: IntakeDependencies, context: Context): Promise<void> {
  const payload = context.payload as {
    repository: { id: number };
    check_suite?: { pull_requests?: { number: number }[] };
  };
  const numbers = (payload.check_suite?.pull_requests ?? []).map((pull) => pull.number);
  if (numbers.length === 0) return;
  const repo = await getRepoByGithubId(deps.pool, payload.repository.id).catch(() => null);
  if (!repo) return;
  await withTransaction(deps.pool, async (client) => {
    for (const number of numbers) {
      const task = await findTaskByPullRequest(client, repo.id, { number, headRef: null });
      if (task) await enqueueAutoMerge(client, repo, task);
    }
  });
}
