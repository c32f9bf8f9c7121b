import { constants } from "node:fs";
import { open } from "node:fs/promises";
import type { Claim, Settlement } from "../db/runs.js";
import { defangSummary } from "../domain/defang.js";
import {
  commitAll,
  commitsAheadOfBase,
  hasUncommittedChanges,
  pushBranch,
  remoteBranchSha,
} from "../workspace/index.js";
import type { Prepared } from "./attempt.js";
import { workerFailed } from "./settlements.js";
import type { WorkerExit } from "./supervise.js";

export const OVERSEER_AUTHOR = { name: "Overseer", email: "overseer@users.noreply.github.com" };
const SUMMARY_LIMIT_BYTES = 16 * 1024;

/** Commit what was left, push, check the remote, find or open the PR. */
export async function publish(
  runnerId: string,
  claim: Claim,
  prepared: Prepared,
  exit: WorkerExit,
  /** The settlement when the agent stopped at its usage limit (it may say so and exit 0). */
  limited: () => Promise<Settlement | null> = async () => null,
): Promise<Settlement> {
  const { worktree, workspace, options, github, values } = prepared;
  const { task, repo, run } = claim;
  if (await hasUncommittedChanges(worktree)) {
    await commitAll(
      worktree,
      `Overseer: changes left uncommitted by the worker (#${task.issueNumber})`,
      OVERSEER_AUTHOR,
    );
  }
  if ((await commitsAheadOfBase(worktree, worktree.base)) === 0) {
    return (await limited()) ?? workerFailed(runnerId, "worker exited without changes", exit);
  }
  const pushed = await pushBranch(worktree, workspace, options);
  const remote = await remoteBranchSha(workspace, worktree.branch, options);
  if (remote !== pushed.sha) {
    return workerFailed(
      runnerId,
      `branch ${worktree.branch} is at ${remote ?? "nothing"} on origin, not the pushed ${pushed.sha}`,
      exit,
    );
  }
  const written = await readSummary(values.summaryFile);
  const summary = written === null ? null : prepared.redact(written);
  const pull = await github.findOrOpenPullRequest(repo.fullName, {
    branch: worktree.branch,
    base: worktree.base,
    title: prepared.issue.title,
    body: pullRequestBody(task.issueNumber, summary, {
      runId: run.id,
      attempt: run.attempt,
      exit,
      sha: pushed.sha,
    }),
  });
  return {
    outcome: "succeeded",
    exitCode: exit.exitCode,
    signal: exit.signal,
    headSha: pushed.sha,
    event: { type: "run_succeeded", runner: runnerId, prNumber: pull.number },
    changes: {
      prUrl: pull.url,
      prHeadSha: pushed.sha,
      summary,
      branch: worktree.branch,
      infraRetries: 0,
      notBefore: null,
    },
  };
}

export async function commitWorkInProgress(prepared: Prepared, why: string): Promise<void> {
  const { worktree, workspace, options } = prepared;
  if (!(await hasUncommittedChanges(worktree))) return;
  await commitAll(worktree, `WIP (Overseer): ${why}`.trim(), OVERSEER_AUTHOR);
  await pushBranch(worktree, workspace, options);
}

/**
 * The summary the worker wrote, if it is a plain file: the worker chose what is at that
 * path, and a symlink to a file it could not read itself must not make Overseer read it.
 */
export async function readSummary(file: string): Promise<string | null> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    // Absent, or a symlink (ELOOP): no summary.
    return null;
  }
  try {
    if (!(await handle.stat()).isFile()) return null;
    const buffer = Buffer.alloc(SUMMARY_LIMIT_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, SUMMARY_LIMIT_BYTES, 0);
    const text = buffer.subarray(0, bytesRead).toString("utf8").trim();
    return text === "" ? null : text;
  } finally {
    await handle.close();
  }
}

export function pullRequestBody(
  issueNumber: number,
  summary: string | null,
  run: { runId: number; attempt: number; exit: WorkerExit; sha: string },
): string {
  return [
    `Closes #${issueNumber}`,
    "",
    summary === null ? "_The worker left no summary._" : defangSummary(summary, issueNumber),
    "",
    "---",
    `Overseer run ${run.runId}, attempt ${run.attempt}: worker exited ${run.exit.exitCode} after ${Math.round(run.exit.durationMs / 1000)} s; pushed ${run.sha}.`,
  ].join("\n");
}
