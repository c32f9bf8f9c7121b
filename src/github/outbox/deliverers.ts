import { enqueueOutbox, type OutboxEntry, type OutboxKind } from "../../db/outbox.js";
import type { Pool } from "../../db/pool.js";
import { pauseForTask } from "../../db/profiles.js";
import { getRepo } from "../../db/repos.js";
import { latestRunProfile, totalRunTimeMs } from "../../db/runs.js";
import { appendTaskEventOnChange } from "../../db/task-events.js";
import { getTask, setStateLabel, setStatusCommentId, type TaskRow } from "../../db/tasks.js";
import { actor } from "../../domain/actors.js";
import { agentProfileFromLabels } from "../../domain/labels.js";
import { stateLabel } from "../../domain/transitions.js";
import { InputError } from "../../errors.js";
import { mergeWhenReady } from "../auto-merge.js";
import { type GithubRequester, splitRepo } from "../octokit.js";
import {
  COMPLETION_MARKER,
  type CompletionView,
  renderCompletionComment,
  renderStatusComment,
  STATUS_MARKER,
  type StatusView,
} from "../status-comment.js";
import { deliverTaskCheckRun } from "./check-runs.js";
import { type CommentTarget, ignoreNotFound, upsertMarkedComment } from "./comments.js";

/**
 * One deliverer per outbox kind. Each reads the current state of the task when it runs
 * (never the state at enqueue time), so a coalesced entry always sends the latest text,
 * and each is idempotent: delivering twice has the effect of delivering once.
 */

export interface DeliveryContext {
  pool: Pool;
  octokit: GithubRequester;
  entry: OutboxEntry;
  target: CommentTarget;
  /** The App's id: only its own comments' markers count. */
  appId: number;
  /** Where the dashboard is reachable from outside (OVERSEER_PUBLIC_URL), for links. */
  publicUrl?: string;
}

type Deliverer = (ctx: DeliveryContext) => Promise<void>;

export const DELIVERERS: Record<OutboxKind, Deliverer> = {
  status_comment: deliverStatusComment,
  state_label: deliverStateLabel,
  completion_comment: deliverCompletionComment,
  reply: deliverReply,
  reaction: deliverReaction,
  merge_pr: deliverMerge,
  check_run: deliverCheckRun,
  escalation: deliverEscalation,
};

export function deliveryContext(
  pool: Pool,
  octokit: GithubRequester,
  entry: OutboxEntry,
  appId: number,
  publicUrl?: string,
): DeliveryContext {
  const target = {
    ...splitRepo(entry.repoFullName),
    issueNumber: Number(entry.payload.issueNumber),
  };
  return { pool, octokit, entry, target, appId, ...(publicUrl ? { publicUrl } : {}) };
}

async function deliverCheckRun({ pool, octokit, entry, target, publicUrl }: DeliveryContext) {
  const task = await requireTask(pool, entry);
  await deliverTaskCheckRun(pool, {
    octokit,
    repo: { owner: target.owner, repo: target.repo },
    task,
    mayExist: entry.attempts > 1,
    ...(publicUrl ? { publicUrl } : {}),
  });
}

async function deliverStatusComment({ pool, octokit, entry, target, appId }: DeliveryContext) {
  const task = await requireTask(pool, entry);
  const waiting = task.state === "queued" || task.state === "awaiting_approval";
  const pause = waiting ? await pauseForTask(pool, task.id) : null;
  // A task without a profile of its own runs the operator's default: name the one it ran.
  const worker = task.workerProfile ?? (await latestRunProfile(pool, task.id));
  const commentId = await upsertMarkedComment(
    octokit,
    target,
    renderStatusComment({ ...statusViewOf(task), pause, worker }),
    {
      appId,
      knownId: task.statusCommentId,
      marker: STATUS_MARKER(task.id),
      mayExist: entry.attempts > 1,
    },
  );
  if (commentId !== task.statusCommentId) await setStatusCommentId(pool, task.id, commentId);
}

/** `overseer:<state>` is the only state label: add the new one, then remove the old. */
async function deliverStateLabel({ pool, octokit, entry, target }: DeliveryContext) {
  const task = await requireTask(pool, entry);
  const wanted = stateLabel(task.state);
  if (task.stateLabel === wanted) return;
  const issue = { owner: target.owner, repo: target.repo, issue_number: target.issueNumber };
  await octokit.request("POST /repos/{owner}/{repo}/issues/{issue_number}/labels", {
    ...issue,
    labels: [wanted],
  });
  if (task.stateLabel) {
    await ignoreNotFound(
      octokit.request("DELETE /repos/{owner}/{repo}/issues/{issue_number}/labels/{name}", {
        ...issue,
        name: task.stateLabel,
      }),
    );
  }
  await setStateLabel(pool, task.id, wanted);
}

async function deliverCompletionComment({ pool, octokit, entry, target, appId }: DeliveryContext) {
  const task = await requireTask(pool, entry);
  const body = renderCompletionComment(await completionViewOf(pool, task));
  await upsertMarkedComment(octokit, target, body, {
    appId,
    knownId: null,
    marker: COMPLETION_MARKER(task.id),
    mayExist: entry.attempts > 1,
    createOnly: true,
  });
}

async function deliverReply({ octokit, entry, target, appId }: DeliveryContext) {
  const marker = `<!-- overseer:reply id=${entry.id} -->`;
  await upsertMarkedComment(octokit, target, `${marker}\n${String(entry.payload.body)}`, {
    appId,
    knownId: null,
    marker,
    mayExist: entry.attempts > 1,
    createOnly: true,
  });
}

/**
 * The watchdog's one comment about a finding it could not repair. The marker names the
 * entry's dedupe key (finding kind and subject), so a retried delivery finds the comment
 * it already posted instead of posting a second.
 */
async function deliverEscalation({ octokit, entry, target, appId }: DeliveryContext) {
  const marker = `<!-- overseer:escalation key=${entry.dedupeKey ?? entry.id} -->`;
  await upsertMarkedComment(octokit, target, `${marker}\n${String(entry.payload.body)}`, {
    appId,
    knownId: null,
    marker,
    mayExist: entry.attempts > 1,
    createOnly: true,
  });
}

async function deliverReaction({ octokit, entry, target }: DeliveryContext) {
  const route =
    entry.payload.on === "review_comment"
      ? "POST /repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions"
      : "POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions";
  await octokit.request(route, {
    owner: target.owner,
    repo: target.repo,
    comment_id: Number(entry.payload.commentId),
    content: String(entry.payload.content ?? "+1"),
  });
}

/**
 * A declined merge is not a failure: the reason is recorded on the task (once per reason),
 * and said on the issue when people must act (once per head commit).
 */
async function deliverMerge({ pool, octokit, entry, target }: DeliveryContext) {
  const task = await requireTask(pool, entry);
  const repo = await getRepo(pool, task.repoId);
  const decision = await mergeWhenReady(pool, octokit, task, {
    owner: target.owner,
    repo: target.repo,
    githubId: repo.githubId,
  });
  if (decision.merge) return;
  if (decision.announce) {
    await enqueueOutbox(pool, {
      taskId: task.id,
      installationId: entry.installationId,
      repoFullName: entry.repoFullName,
      kind: "reply",
      payload: { issueNumber: task.issueNumber, body: decision.announce.body },
      key: { dedupe: decision.announce.key },
    });
  }
  await appendTaskEventOnChange(pool, {
    taskId: task.id,
    event: "auto_merge_declined",
    fromState: null,
    toState: null,
    actor: actor.overseer("auto-merge"),
    cause: `outbox:${entry.id}`,
    detail: { reason: decision.reason, pr: task.prNumber },
  });
}

async function requireTask(pool: Pool, entry: OutboxEntry): Promise<TaskRow> {
  const task = entry.taskId === null ? null : await getTask(pool, entry.taskId);
  if (!task) throw new InputError(`task ${entry.taskId} no longer exists`);
  return task;
}

function statusViewOf(task: TaskRow): StatusView {
  return {
    taskId: task.id,
    state: task.state,
    attempts: task.attempts,
    maxAttempts: task.maxAttempts,
    branch: task.branch,
    prNumber: task.prNumber,
    prUrl: task.prUrl,
    lastError: task.lastError,
    logTail: null,
    queuedAt: task.queuedAt,
    startedAt: task.startedAt,
    finishedAt: task.finishedAt,
    now: new Date(),
    worker: task.workerProfile,
    mergeCommitSha: task.mergeCommitSha,
    label: (task.config as { label?: string }).label ?? null,
    approval: {
      riskLabelled: task.riskLabelled,
      approvedBy: task.approvedBy,
      approvedSha: task.approvedSha,
    },
    revisions: task.revisions,
    maxRevisions: task.maxRevisions,
    revisionPending: task.revisionPending,
    workerFromLabel:
      task.workerProfile !== null &&
      agentProfileFromLabels(task.labels).profile === task.workerProfile,
  };
}

async function completionViewOf(pool: Pool, task: TaskRow): Promise<CompletionView> {
  if (!task.prNumber || !task.prUrl || !task.mergeCommitSha || !task.mergedAt) {
    throw new InputError(`task ${task.id} has no merge evidence to report`);
  }
  return {
    taskId: task.id,
    prNumber: task.prNumber,
    prUrl: task.prUrl,
    mergeCommitSha: task.mergeCommitSha,
    mergedBy: task.mergedBy,
    attempts: task.attempts,
    totalMs: task.mergedAt.getTime() - task.createdAt.getTime(),
    runMs: await totalRunTimeMs(pool, task.id),
    summary: task.summary,
  };
}
