import { runSummaryFor, type TaskRunSummary } from "../../db/runs.js";
import { setCheckRun, type TaskRow } from "../../db/tasks.js";
import {
  CHECK_RUN_NAME,
  type CheckRunView,
  renderCheckRun,
  statusOf,
  taskPageUrl,
} from "../check-run.js";
import type { GithubRequester } from "../octokit.js";
import { ignoreNotFound } from "./comments.js";

/**
 * Writes the task's `overseer` check run on its PR's head commit (POST
 * /repos/{owner}/{repo}/check-runs, PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}).
 *
 * A check run belongs to one commit and, once completed, is never reopened: a revision
 * starting gets a new check run on the PR's current head (so the PR shows it working), and
 * the revision's new commit gets its own. A check run left open on a commit the PR moved
 * past is completed as superseded. Each check run carries an external id naming the task
 * and the revision, so a delivery retried after a crash finds the one it already created
 * instead of creating a second.
 */

interface Repo {
  owner: string;
  repo: string;
}

export interface CheckRunDelivery {
  octokit: GithubRequester;
  repo: Repo;
  task: TaskRow;
  summary: TaskRunSummary;
  publicUrl?: string;
  /** An earlier attempt of this delivery may have created the check run already. */
  mayExist: boolean;
  now?: Date;
  /** Records the check run now current for the task. */
  onWritten?: (checkRun: { id: number; sha: string; status: string }) => Promise<void>;
}

export async function writeCheckRun(delivery: CheckRunDelivery): Promise<void> {
  const { octokit, repo, task } = delivery;
  const sha = task.prHeadSha;
  // No PR yet (or none found): nothing to put a check on.
  if (task.prNumber === null || !sha) return;
  const now = delivery.now ?? new Date();
  const output = renderCheckRun(viewOf(task, delivery.summary, delivery.publicUrl, now));
  const detailsUrl = taskPageUrl(delivery.publicUrl, task.id);
  const fields = {
    status: output.status,
    ...(output.conclusion
      ? { conclusion: output.conclusion, completed_at: now.toISOString() }
      : {}),
    ...(detailsUrl ? { details_url: detailsUrl } : {}),
    output: { title: output.title, summary: output.summary },
  };
  const externalId = `overseer-task-${task.id}-r${revisionShown(task)}`;

  let id = task.checkRunSha === sha && task.checkRunStatus !== "completed" ? task.checkRunId : null;
  if (id === null && delivery.mayExist) id = await findCheckRun(octokit, repo, sha, externalId);
  let written: number | null = null;
  if (id !== null) {
    const updated = await ignoreNotFound(
      octokit.request("PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}", {
        ...repo,
        check_run_id: id,
        ...fields,
      }),
    );
    if (updated) written = id;
  }
  if (written === null) {
    const created = await octokit.request("POST /repos/{owner}/{repo}/check-runs", {
      ...repo,
      name: CHECK_RUN_NAME,
      head_sha: sha,
      external_id: externalId,
      ...(output.status === "completed" ? {} : { started_at: now.toISOString() }),
      ...fields,
    });
    written = (created.data as { id: number }).id;
  }
  await completeSuperseded(octokit, repo, task, sha, now);
  await delivery.onWritten?.({ id: written, sha, status: output.status });
}

/** The revision a check run speaks for: the one queued or running, else the last one. */
function revisionShown(task: TaskRow): number {
  const queued = task.revisionPending && statusOf(task) === "queued";
  return task.revisions + (queued ? 1 : 0);
}

/** A check run still open on a commit the PR has moved past would spin there for ever. */
async function completeSuperseded(
  octokit: GithubRequester,
  repo: Repo,
  task: TaskRow,
  sha: string,
  now: Date,
): Promise<void> {
  if (task.checkRunId === null || task.checkRunSha === sha || task.checkRunStatus === "completed") {
    return;
  }
  await ignoreNotFound(
    octokit.request("PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}", {
      ...repo,
      check_run_id: task.checkRunId,
      status: "completed",
      conclusion: "neutral",
      completed_at: now.toISOString(),
      output: {
        title: `Superseded by ${sha.slice(0, 7)}`,
        summary: `The pull request moved on to ${sha}; its check run there says where the task stands.`,
      },
    }),
  );
}

async function findCheckRun(
  octokit: GithubRequester,
  repo: Repo,
  sha: string,
  externalId: string,
): Promise<number | null> {
  const response = await octokit.request("GET /repos/{owner}/{repo}/commits/{ref}/check-runs", {
    ...repo,
    ref: sha,
    check_name: CHECK_RUN_NAME,
    filter: "all",
    per_page: 100,
  });
  const runs = (response.data as { check_runs?: { id: number; external_id?: string | null }[] })
    .check_runs;
  return runs?.find((run) => run.external_id === externalId)?.id ?? null;
}

function viewOf(
  task: TaskRow,
  summary: TaskRunSummary,
  publicUrl: string | undefined,
  now: Date,
): CheckRunView {
  return {
    taskId: task.id,
    issueNumber: task.issueNumber,
    state: task.state,
    revisionPending: task.revisionPending,
    attempts: task.attempts,
    maxAttempts: task.maxAttempts,
    revisions: task.revisions,
    maxRevisions: task.maxRevisions,
    lastError: task.lastError,
    profile: summary.latest?.profile ?? task.workerProfile,
    // The agent's own last words when its transcript has them, else its summary file.
    latestRun: summary.latest && {
      ...summary.latest,
      lastMessage: summary.latest.lastMessage ?? task.summary,
    },
    totalMs: summary.totalMs,
    totalCostUsd: summary.totalCostUsd,
    detailsUrl: taskPageUrl(publicUrl, task.id),
    now,
  };
}

/** For the outbox: the check run for the task as it is now, recorded once written. */
export async function deliverTaskCheckRun(
  pool: Parameters<typeof runSummaryFor>[0],
  delivery: Omit<CheckRunDelivery, "summary" | "onWritten">,
): Promise<void> {
  const summary = await runSummaryFor(pool, delivery.task.id);
  await writeCheckRun({
    ...delivery,
    summary,
    onWritten: (checkRun) => setCheckRun(pool, delivery.task.id, checkRun),
  });
}
