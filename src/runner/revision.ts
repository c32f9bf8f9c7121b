import type { Logger } from "pino";
import type { Pool } from "../db/pool.js";
import {
  openRevisionRequests,
  previousRunStartedAt,
  resolvedReviewCommentIds,
} from "../db/revisions.js";
import { type Claim, type Lease, recordRevisionStart, type Settlement } from "../db/runs.js";
import {
  type CommitAuthor,
  commitAll,
  commitsSince,
  type EnsuredWorktree,
  hasUncommittedChanges,
  pushBranch,
  remoteBranchSha,
  startRevision,
  type WorkspaceOptions,
  type WorkspaceTask,
} from "../workspace/index.js";
import type { RunnerGithub } from "./github.js";
import type { RevisionPrompt } from "./revision-prompt.js";
import { workerFailed } from "./settlements.js";
import type { WorkerExit } from "./supervise.js";

/**
 * A revision: a run on the branch of the task's open PR, judged by what it adds. It starts
 * from the PR's commit on origin, its prompt carries what was asked and the PR's feedback,
 * and it succeeds only with new commits on top of that commit, on a PR that is still open
 * from this branch, pushed without force and found on origin at the pushed commit. A
 * revision without new commits, or one that rewrote the branch, fails and pushes nothing,
 * so the PR stays exactly as it was.
 */

export interface RevisionRun {
  number: number;
  prNumber: number;
  /** The PR branch's commit the revision started from. */
  startSha: string;
  prompt: RevisionPrompt;
}

export async function prepareRevision(
  deps: { pool: Pool; log: Logger; author: CommitAuthor },
  claim: Claim,
  lease: Lease,
  workspace: { task: WorkspaceTask; options: WorkspaceOptions; worktree: EnsuredWorktree },
  github: RunnerGithub,
): Promise<RevisionRun> {
  const { task, repo, run } = claim;
  const number = run.revision ?? task.revisions;
  const prNumber = task.prNumber;
  if (prNumber === null) throw new Error(`task ${task.id} has a revision but no pull request`);
  const start = await startRevision(workspace.task, workspace.worktree, {
    ...workspace.options,
    author: deps.author,
  });
  await recordRevisionStart(deps.pool, lease, start.sha);
  const since = await previousRunStartedAt(deps.pool, task.id, run.id);
  const feedback = await github.pullRequestFeedback(repo.fullName, prNumber, since);
  const resolved = await resolvedReviewCommentIds(deps.pool, { repoId: repo.id, prNumber });
  const unresolved = feedback.reviewComments.filter(
    (comment) => !resolved.has(comment.inReplyTo ?? comment.id) && !resolved.has(comment.id),
  );
  const requests = await openRevisionRequests(deps.pool, task.id);
  deps.log.info(
    {
      revision: number,
      startSha: start.sha,
      requests: requests.length,
      reviewComments: unresolved.length,
      resolvedOmitted: feedback.reviewComments.length - unresolved.length,
    },
    "revision prepared",
  );
  return {
    number,
    prNumber,
    startSha: start.sha,
    prompt: {
      number,
      maxRevisions: task.maxRevisions,
      prNumber,
      requests: requests.map((request) => ({
        author: request.author,
        body: request.body,
        createdAt: request.createdAt.toISOString(),
        source: request.source,
      })),
      reviewComments: unresolved,
      reviews: feedback.reviews,
      conversation: feedback.conversation,
      resolvedOmitted: feedback.reviewComments.length - unresolved.length,
    },
  };
}

/** The revision's outcome: new commits pushed to the PR's branch, or a failure saying why not. */
export async function publishRevision(
  runner: string,
  revision: RevisionRun,
  prepared: {
    workspace: WorkspaceTask;
    options: WorkspaceOptions;
    worktree: EnsuredWorktree;
    github: RunnerGithub;
    repo: string;
    author: CommitAuthor;
    summary: () => Promise<string | null>;
    /** The settlement when the agent stopped at its limit (checked when it added nothing). */
    limited: () => Promise<Settlement | null>;
  },
  exit: WorkerExit,
): Promise<Settlement> {
  const { worktree, workspace, options, github } = prepared;
  if (await hasUncommittedChanges(worktree)) {
    await commitAll(
      worktree,
      `Overseer: changes left uncommitted by the worker (revision ${revision.number})`,
      prepared.author,
    );
  }
  const added = await commitsSince(worktree, revision.startSha);
  if (added === null) {
    return workerFailed(
      runner,
      `the agent rewrote the branch's history (${revision.startSha.slice(0, 7)} is no longer on it); a revision must add commits on top`,
      exit,
    );
  }
  if (added === 0) {
    return (await prepared.limited()) ?? workerFailed(runner, "the agent made no new commit", exit);
  }
  // Checked before pushing: commits for a PR that is gone would only clutter its branch.
  const pull = await github.pullRequest(prepared.repo, revision.prNumber);
  if (pull.state !== "open" || pull.headRef !== worktree.branch) {
    return workerFailed(
      runner,
      `pull request #${revision.prNumber} is ${pull.state} from ${pull.headRef}, not open from ${worktree.branch}; nothing was pushed`,
      exit,
    );
  }
  const pushed = await pushBranch(worktree, workspace, options);
  const remote = await remoteBranchSha(workspace, worktree.branch, options);
  if (remote !== pushed.sha) {
    return workerFailed(
      runner,
      `branch ${worktree.branch} is at ${remote ?? "nothing"} on origin, not the pushed ${pushed.sha}`,
      exit,
    );
  }
  const summary = await prepared.summary();
  return {
    outcome: "succeeded",
    exitCode: exit.exitCode,
    signal: exit.signal,
    headSha: pushed.sha,
    event: { type: "run_succeeded", runner, prNumber: revision.prNumber },
    changes: {
      prUrl: pull.url,
      prHeadSha: pushed.sha,
      ...(summary ? { summary } : {}),
      infraRetries: 0,
      notBefore: null,
    },
  };
}
