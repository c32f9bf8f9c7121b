import { getRepo } from "../../db/repos.js";
import type { ChangeResult } from "../../db/task-changes.js";
import { getTask, type TaskRow } from "../../db/tasks.js";
import {
  type PolledTask,
  tasksWithClosedPulls,
  tasksWithOpenPulls,
} from "../../db/tasks-polled.js";
import { actor } from "../../domain/actors.js";
import { PR_CLOSED_UNMERGED_ERROR } from "../../domain/transitions.js";
import {
  isTasksOwnPull,
  settleClosedPull,
  settleReopenedPull,
  type VerifiedPull,
} from "../../github/merges.js";
import type { GithubRequester } from "../../github/octokit.js";
import type { DetectedFinding, Detector, RepairOutcome, WatchdogContext } from "../detector.js";
import { inBatches } from "./batches.js";
import { readConditionally } from "./conditional.js";
import {
  applyRepair,
  installations,
  isUnreadable,
  outcomeOf,
  repairCause,
  repositoryOf,
  unreadableFinding,
} from "./shared.js";

/**
 * A task's PR merged, closed or reopened while its webhook was missed. One conditional GET
 * per watched task's PR (unchanged: 304, no rate limit); the decision is the webhook's own
 * (src/github/merges.ts): only the API's answer counts, only the task's own PR (head in the
 * task's repository, on the task's branch, the recorded number) is evidence.
 */

export const MISSED_PR_CLOSE = "missed_pr_close";
export const MISSED_PR_REOPEN = "missed_pr_reopen";

/**
 * The PR as the API has it now (a 304 answers with the stored copy). PRs are never
 * deleted, so a 404 means the repository cannot be read, and is thrown.
 */
export async function readPull(
  ctx: WatchdogContext,
  github: GithubRequester,
  polled: PolledTask,
): Promise<VerifiedPull> {
  const repository = repositoryOf(polled.repo);
  const answer = await readConditionally(ctx.pool, github, {
    key: `pull:${polled.repo.githubId}:${polled.task.prNumber}`,
    route: "GET /repos/{owner}/{repo}/pulls/{pull_number}",
    params: {
      owner: repository.owner.login,
      repo: repository.name,
      pull_number: polled.task.prNumber,
    },
    now: ctx.now,
    store: !ctx.readOnly,
  });
  return answer.data as VerifiedPull;
}

function subjectOf({ task, repo }: PolledTask): string {
  return `${repo.fullName}#${task.issueNumber} (PR #${task.prNumber})`;
}

async function detectPulls(
  ctx: WatchdogContext,
  kind: string,
  tasks: PolledTask[],
  describe: (
    pull: VerifiedPull,
    polled: PolledTask,
  ) => Omit<DetectedFinding, "id" | "kind" | "subject" | "taskId" | "issue" | "facts"> | null,
): Promise<DetectedFinding[]> {
  const requesterFor = installations(ctx);
  const unreadable = new Map<number, DetectedFinding>();
  const found = await inBatches(tasks, async (polled) => {
    if (unreadable.has(polled.repo.id)) return null;
    let pull: VerifiedPull;
    try {
      pull = await readPull(ctx, await requesterFor(polled.repo.installationId ?? 0), polled);
    } catch (error) {
      if (!isUnreadable(error)) throw error;
      unreadable.set(polled.repo.id, unreadableFinding(kind, polled.repo, error));
      return null;
    }
    if (!isTasksOwnPull(pull, polled.task, polled.repo.githubId)) return null;
    const described = describe(pull, polled);
    if (!described) return null;
    const finding: DetectedFinding = {
      id: `${kind}:task:${polled.task.id}:pr:${pull.number}`,
      kind,
      subject: subjectOf(polled),
      taskId: polled.task.id,
      ...described,
      issue: {
        installationId: polled.repo.installationId ?? 0,
        repoFullName: polled.repo.fullName,
        number: polled.task.issueNumber,
      },
      facts: { taskId: polled.task.id, prNumber: pull.number },
    };
    return finding;
  });
  return [
    ...found.filter((finding): finding is DetectedFinding => finding !== null),
    ...unreadable.values(),
  ];
}

/** The task and repository the finding names, if the task still has that PR. */
async function reread(
  ctx: WatchdogContext,
  finding: DetectedFinding,
  stillWatched: (task: TaskRow) => boolean,
): Promise<PolledTask | null> {
  const task = await getTask(ctx.pool, Number(finding.facts.taskId));
  if (!task || task.prNumber !== finding.facts.prNumber || !stillWatched(task)) return null;
  const repo = await getRepo(ctx.pool, task.repoId);
  return repo.installationId === null ? null : { task, repo };
}

function watchesOpenPull(task: TaskRow): boolean {
  return (
    task.state === "awaiting_merge" ||
    (task.revisionPending && ["queued", "awaiting_approval", "running"].includes(task.state))
  );
}

function watchesClosedPull(task: TaskRow): boolean {
  return task.state === "failed" && task.lastError === PR_CLOSED_UNMERGED_ERROR;
}

const NO_LONGER: RepairOutcome = {
  repaired: false,
  moot: true,
  detail: "no longer stands: the task moved on or has another PR",
};

export const missedPullClose: Detector = {
  kind: MISSED_PR_CLOSE,
  async detect(ctx) {
    return detectPulls(
      ctx,
      MISSED_PR_CLOSE,
      await tasksWithOpenPulls(ctx.pool),
      (pull, { task }) => {
        if (pull.state !== "closed") return null;
        const merged = pull.merged
          ? `merged${pull.merged_at ? ` at ${pull.merged_at}` : ""}${pull.merged_by ? ` by ${pull.merged_by.login}` : ""}`
          : "closed without merging";
        return {
          evidence: `the task is ${task.state} but GitHub says its PR #${pull.number} was ${merged}; no webhook recorded it`,
          repair: pull.merged
            ? "record the merge from the API's answer (the task is done)"
            : "fail the task as the PR's close would (reopening the PR resumes it)",
          safe: true,
        };
      },
    );
  },
  async repair(ctx, finding, by) {
    const polled = await reread(ctx, finding, watchesOpenPull);
    if (!polled) return NO_LONGER;
    const github = await installations(ctx)(polled.repo.installationId ?? 0);
    const pull = await readPull(ctx, github, polled);
    const cause = repairCause(MISSED_PR_CLOSE, finding, by);
    let result: ChangeResult | null = null;
    const settled = await settleClosedPull(
      {
        octokit: github,
        log: ctx.log,
        apply: async (event, changes) => {
          result = await applyRepair(ctx, polled.task.id, event, cause, changes);
        },
      },
      {
        task: polled.task,
        repository: repositoryOf(polled.repo),
        pull,
        login: pull.merged_by?.login ?? actor.watchdog(MISSED_PR_CLOSE),
      },
    );
    if (settled === "not_closed" || settled === "ignored") {
      return { repaired: false, moot: true, detail: `no longer stands: the PR is ${pull.state}` };
    }
    return outcomeOf(
      result,
      settled === "merged"
        ? "merge recorded; task done"
        : `task settled: ${settled.replace("_", " ")}`,
    );
  },
};

export const missedPullReopen: Detector = {
  kind: MISSED_PR_REOPEN,
  async detect(ctx) {
    return detectPulls(ctx, MISSED_PR_REOPEN, await tasksWithClosedPulls(ctx.pool), (pull) =>
      pull.state === "open"
        ? {
            evidence: `the task failed because PR #${pull.number} closed unmerged, but GitHub says the PR is open again; no webhook recorded it`,
            repair: "resume the task: back to awaiting merge, as the reopen would",
            safe: true,
          }
        : null,
    );
  },
  async repair(ctx, finding, by) {
    const polled = await reread(ctx, finding, watchesClosedPull);
    if (!polled) return NO_LONGER;
    const github = await installations(ctx)(polled.repo.installationId ?? 0);
    const pull = await readPull(ctx, github, polled);
    let result: ChangeResult | null = null;
    const cause = repairCause(MISSED_PR_REOPEN, finding, by);
    const reopened = await settleReopenedPull(
      {
        log: ctx.log,
        apply: async (event) => {
          result = await applyRepair(ctx, polled.task.id, event, cause);
        },
      },
      {
        task: polled.task,
        repositoryId: polled.repo.githubId,
        pull,
        login: actor.watchdog(MISSED_PR_REOPEN),
      },
    );
    if (!reopened)
      return { repaired: false, moot: true, detail: `no longer stands: the PR is ${pull.state}` };
    return outcomeOf(result, "task resumed: awaiting merge");
  },
};
