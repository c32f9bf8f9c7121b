import type { Logger } from "pino";
import type { Probot } from "probot";
import { withTransaction } from "../db/pool.js";
import { findRepoByGithubId } from "../db/repos.js";
import { changeTaskIn, enqueueAutoMerge } from "../db/task-changes.js";
import type { Cause } from "../db/task-events.js";
import { findTask, findTaskByPullRequest, type TaskChanges, type TaskRow } from "../db/tasks.js";
import { actor } from "../domain/actors.js";
import type { MergeEvidence, TaskEvent } from "../domain/types.js";
import {
  type Delivery,
  type HandlerDependencies,
  onDelivery,
  recordDeliveryIn,
} from "./deliveries.js";
import type { GithubRequester } from "./octokit.js";
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
  body?: string | null;
  /** `repo` is null when the head repository (a fork) was deleted. */
  head: { ref: string; sha: string; repo?: { id: number; full_name?: string } | null };
}

/**
 * Only the task's own PR is evidence: its head is the task's branch in the task's own
 * repository (a fork can name a branch like ours), and, once Overseer recorded the PR's
 * number, it is that PR.
 */
export function isTasksOwnPull(
  pull: Pick<VerifiedPull, "number" | "head">,
  task: Pick<TaskRow, "branch" | "prNumber">,
  repoGithubId: number,
): boolean {
  return (
    pull.head.repo?.id === repoGithubId &&
    task.branch !== null &&
    pull.head.ref === task.branch &&
    (task.prNumber === null || task.prNumber === pull.number)
  );
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
 * Merge evidence. A `pull_request.closed` payload proves nothing, not even that the PR is
 * closed (deliveries can be stale, reordered or replayed): the PR is fetched from the API,
 * and only its answer moves the task. Done needs the task's own PR merged, complete with
 * merge commit and time (the schema refuses done without it); another merged PR that
 * closed the issue cancels the task as resolved elsewhere.
 */
export function registerMergeHandlers(app: Probot, deps: HandlerDependencies): void {
  const pullRequest = { schema: pullRequestEventSchema };
  onDelivery(app, deps, "pull_request.closed", pullRequest, (delivery) =>
    onPullClosed(deps, delivery),
  );
  onDelivery(app, deps, "pull_request.reopened", pullRequest, (delivery) =>
    onPullReopened(deps, delivery),
  );
  onDelivery(app, deps, "pull_request.synchronize", pullRequest, (delivery) =>
    onPullPushed(deps, delivery),
  );
  onDelivery(app, deps, "check_suite.completed", {}, (delivery) =>
    onChecksCompleted(deps, delivery),
  );
}

/**
 * The task a PR belongs to. Null only when Overseer does not know the repository or no
 * task matches; a database failure is thrown, so the delivery fails (5xx) rather than
 * being acknowledged with the merge unrecorded.
 */
async function taskForPull(
  deps: HandlerDependencies,
  event: PullRequestEvent,
): Promise<TaskRow | null> {
  const repo = await findRepoByGithubId(deps.pool, event.repository.id);
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

async function fetchPull(delivery: Delivery, event: PullRequestEvent): Promise<VerifiedPull> {
  const response = await delivery.context.octokit.request(
    "GET /repos/{owner}/{repo}/pulls/{pull_number}",
    {
      owner: event.repository.owner.login,
      repo: event.repository.name,
      pull_number: event.pull_request.number,
    },
  );
  return response.data as VerifiedPull;
}

async function onPullClosed(deps: HandlerDependencies, delivery: Delivery): Promise<void> {
  const event = parsePayload(
    pullRequestEventSchema,
    delivery.context.payload,
    "pull_request.closed",
  );
  const found = await taskForPull(deps, event);
  if (!found || found.state === "done") return;
  const pull = await fetchPull(delivery, event);
  if (event.pull_request.merged && !evidenceFrom(pull)) {
    delivery.log.warn(
      { task: found.id, pr: pull.number },
      "payload claims a merge the API does not confirm; ignored",
    );
  }
  await settleClosedPull(
    {
      octokit: delivery.context.octokit,
      log: delivery.log,
      apply: (taskEvent, changes) =>
        applyInDelivery(deps, delivery, event, found.id, taskEvent, changes),
    },
    { task: found, repository: event.repository, pull, login: event.sender.login },
  );
}

/** Where a closed PR's verdict goes: the delivery's transaction, or the watchdog's repair. */
export interface PullSettlement {
  octokit: GithubRequester;
  log: Logger;
  apply(taskEvent: TaskEvent, changes?: TaskChanges): Promise<void>;
}

export type SettledPull =
  | "not_closed"
  | "merged"
  | "closed_unmerged"
  | "resolved_elsewhere"
  | "ignored";

/**
 * What a closed PR means for its task, decided from the API's answer (`pull`) only: the
 * task's own PR merged with complete evidence → done; closed unmerged → failed; another
 * PR that merged and closed the issue → resolved elsewhere. The `pull_request.closed`
 * webhook and the watchdog's poll both decide here.
 */
export async function settleClosedPull(
  io: PullSettlement,
  settle: {
    task: TaskRow;
    repository: { id: number; name: string; owner: { login: string } };
    pull: VerifiedPull;
    /** Who closed or merged it, as far as known (the delivery's sender). */
    login: string;
  },
): Promise<SettledPull> {
  const { task, repository, pull, login } = settle;
  const log = io.log.child({ task: task.id, pr: pull.number });
  if (pull.state === "open") {
    log.warn("delivery says the PR closed; the API says it is open: nothing changes");
    return "not_closed";
  }
  const evidence = evidenceFrom(pull);
  if (!isTasksOwnPull(pull, task, repository.id)) {
    if (evidence && (await closedTheIssue(io.octokit, repository, pull, task))) {
      await io.apply({ type: "resolved_elsewhere", actor: login, prNumber: pull.number });
      log.info("another PR resolved the issue; task cancelled");
      return "resolved_elsewhere";
    }
    log.info({ head: pull.head.repo?.full_name ?? null }, "not the task's own PR; ignored");
    return "ignored";
  }
  if (evidence) {
    const merged = mergedEvent(evidence, pull.head.sha, login);
    await io.apply(merged.event, merged.changes);
    log.info({ mergeCommit: evidence.mergeCommitSha }, "merge verified");
    return "merged";
  }
  await io.apply({ type: "pr_closed_unmerged", actor: login, prNumber: pull.number });
  return "closed_unmerged";
}

/** The merged PR says it closes the task's issue, and the API says the issue is closed. */
async function closedTheIssue(
  octokit: GithubRequester,
  repository: { name: string; owner: { login: string } },
  pull: VerifiedPull,
  task: TaskRow,
): Promise<boolean> {
  if (!closingIssueNumbers(pull.body).includes(task.issueNumber)) return false;
  const issue = await octokit.request("GET /repos/{owner}/{repo}/issues/{issue_number}", {
    owner: repository.owner.login,
    repo: repository.name,
    issue_number: task.issueNumber,
  });
  return (issue.data as { state: string }).state === "closed";
}

async function onPullReopened(deps: HandlerDependencies, delivery: Delivery): Promise<void> {
  const event = parsePayload(
    pullRequestEventSchema,
    delivery.context.payload,
    "pull_request.reopened",
  );
  const found = await taskForPull(deps, event);
  if (!found) return;
  const pull = await fetchPull(delivery, event);
  await settleReopenedPull(
    {
      log: delivery.log,
      apply: (taskEvent) => applyInDelivery(deps, delivery, event, found.id, taskEvent),
    },
    { task: found, repositoryId: event.repository.id, pull, login: event.sender.login },
  );
}

/** A reopened PR resumes its task only if the API says it is open and is the task's own. */
export async function settleReopenedPull(
  io: Pick<PullSettlement, "log" | "apply">,
  settle: { task: TaskRow; repositoryId: number; pull: VerifiedPull; login: string },
): Promise<boolean> {
  const { task, pull } = settle;
  if (pull.state !== "open" || !isTasksOwnPull(pull, task, settle.repositoryId)) {
    io.log.info(
      { task: task.id, pr: pull.number, state: pull.state },
      "reopened delivery for a PR that is not the task's open PR; ignored",
    );
    return false;
  }
  await io.apply({ type: "pr_reopened", actor: settle.login, prNumber: pull.number });
  return true;
}

/**
 * Someone pushed to a PR. For a task under `merge: auto` a merge attempt is queued at once:
 * it reads the PR from the API, and a head that is not the commit Overseer pushed (or one
 * approved since) stops auto-merge with a comment on the issue (see auto-merge.ts).
 */
async function onPullPushed(deps: HandlerDependencies, delivery: Delivery): Promise<void> {
  const event = parsePayload(
    pullRequestEventSchema,
    delivery.context.payload,
    "pull_request.synchronize",
  );
  const repo = await findRepoByGithubId(deps.pool, event.repository.id);
  if (!repo) return;
  const task = await findTaskByPullRequest(deps.pool, repo.id, {
    number: event.pull_request.number,
    headRef: null,
  });
  if (!task || task.prNumber !== event.pull_request.number) return;
  await enqueueAutoMerge(deps.pool, repo, task);
}

/** Applies one event to the PR's task in the delivery's transaction. */
async function applyInDelivery(
  deps: HandlerDependencies,
  delivery: Delivery,
  event: PullRequestEvent,
  taskId: number,
  taskEvent: TaskEvent,
  changes?: TaskChanges,
): Promise<void> {
  const cause: Cause = {
    actor: actor.github(event.sender.login),
    cause: `delivery:${delivery.id}`,
  };
  await recordDeliveryIn(
    deps,
    delivery,
    event.repository,
    event.installation?.id ?? null,
    async (client) => {
      const result = await changeTaskIn(client, { id: taskId }, taskEvent, cause, changes);
      if (result && !result.ok)
        delivery.log.info({ task: taskId, refused: result.reason }, "ignored");
    },
  );
}

/** The pr_merged event and the evidence columns it writes, from a verified PR. */
export function mergedEvent(
  evidence: MergeEvidence,
  headSha: string,
  login: string,
): { event: TaskEvent; changes: TaskChanges } {
  return {
    event: { type: "pr_merged", actor: login, evidence },
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
async function onChecksCompleted(deps: HandlerDependencies, delivery: Delivery): Promise<void> {
  const payload = delivery.context.payload as {
    repository: { id: number };
    check_suite?: { pull_requests?: { number: number }[] };
  };
  const numbers = (payload.check_suite?.pull_requests ?? []).map((pull) => pull.number);
  if (numbers.length === 0) return;
  const repo = await findRepoByGithubId(deps.pool, payload.repository.id);
  if (!repo) return;
  await withTransaction(deps.pool, async (client) => {
    for (const number of numbers) {
      const task = await findTaskByPullRequest(client, repo.id, { number, headRef: null });
      if (task) await enqueueAutoMerge(client, repo, task);
    }
  });
}
