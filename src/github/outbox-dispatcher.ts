import type { Logger } from "pino";
import { CHANNELS, type Listener, listen } from "../db/notify.js";
import {
  claimDueOutbox,
  markOutboxDead,
  markOutboxDelivered,
  markOutboxRetry,
  nextOutboxDueInMs,
  type OutboxEntry,
} from "../db/outbox.js";
import type { Pool } from "../db/pool.js";
import { appendTaskEvent } from "../db/task-events.js";
import { getTask, setStateLabel, setStatusCommentId, type TaskRow } from "../db/tasks.js";
import { stateLabel } from "../domain/transitions.js";
import { mergeWhenReady } from "./auto-merge.js";
import {
  COMPLETION_MARKER,
  renderCompletionComment,
  renderStatusComment,
  STATUS_MARKER,
} from "./status-comment.js";

/** The slice of Octokit the dispatcher uses: documented REST routes only. */
export interface GithubRequester {
  request(route: string, parameters?: Record<string, unknown>): Promise<{ data: unknown }>;
}

export interface DispatcherOptions {
  pool: Pool;
  /** Connection string for the dedicated LISTEN connection. */
  databaseUrl: string;
  log: Logger;
  octokitFor(installationId: number): Promise<GithubRequester>;
  /** First retry delay; doubles per attempt up to MAX_BACKOFF_MS. */
  backoffBaseMs?: number;
  maxAttempts?: number;
  /** Fallback polling when no notification arrives. */
  pollIntervalMs?: number;
  /**
   * A coalescing entry (status comment, state label) waits until it has not changed for
   * this long, so a task moving queued → running → awaiting merge in a few seconds costs
   * one comment and one label, not three of each.
   */
  settleMs?: number;
}

const MAX_BACKOFF_MS = 10 * 60_000;
const DEFAULT_MAX_ATTEMPTS = 12;
const LEASE_MS = 60_000;
const BATCH_SIZE = 20;

/**
 * Delivers outbox entries to GitHub: at least once, made idempotent per kind (sticky
 * comments are found by their hidden marker before a second one is created, labels and
 * reactions are idempotent on GitHub's side). It owns retry: 5xx, network errors and rate
 * limits are retried with exponential backoff or the server's Retry-After; other 4xx are
 * final and recorded on the task.
 */
export class OutboxDispatcher {
  readonly #options: Required<DispatcherOptions>;
  #listener: Listener | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #draining: Promise<void> | undefined;
  #again = false;

  constructor(options: DispatcherOptions) {
    this.#options = {
      backoffBaseMs: 1_000,
      maxAttempts: DEFAULT_MAX_ATTEMPTS,
      pollIntervalMs: 5_000,
      settleMs: 0,
      ...options,
    };
  }

  async start(): Promise<void> {
    this.#running = true;
    this.#listener = await listen({
      databaseUrl: this.#options.databaseUrl,
      channels: [CHANNELS.outbox],
      onNotification: () => this.wake(),
      onLost: (error) =>
        this.#options.log.warn(
          { err: error.message },
          "outbox listener lost; polling until it is back",
        ),
    });
    this.wake();
  }

  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    await this.#draining;
    await this.#listener?.close();
    this.#listener = undefined;
  }

  /** Drains now (coalescing concurrent wake-ups into one extra pass). */
  wake(): void {
    if (!this.#running) return;
    if (this.#draining) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#draining = this.drain()
      .catch((error: unknown) => this.#options.log.error({ err: error }, "outbox drain failed"))
      .finally(async () => {
        this.#draining = undefined;
        if (this.#again) {
          this.#again = false;
          this.wake();
        } else {
          await this.#scheduleNext();
        }
      });
  }

  /** Delivers every entry that is due now. Exposed for tests and the CLI. */
  async drain(): Promise<void> {
    for (;;) {
      const entries = await claimDueOutbox(
        this.#options.pool,
        BATCH_SIZE,
        LEASE_MS,
        this.#options.settleMs,
      );
      if (entries.length === 0) return;
      for (const entry of entries) await this.#deliverOne(entry);
    }
  }

  async #scheduleNext(): Promise<void> {
    if (!this.#running) return;
    const dueIn = await nextOutboxDueInMs(this.#options.pool, this.#options.settleMs).catch(
      () => null,
    );
    const delay = Math.min(dueIn ?? this.#options.pollIntervalMs, this.#options.pollIntervalMs);
    this.#timer = setTimeout(() => this.wake(), Math.max(delay, 10));
  }

  async #deliverOne(entry: OutboxEntry): Promise<void> {
    const { log, pool } = this.#options;
    try {
      const octokit = await this.#options.octokitFor(entry.installationId);
      await deliver(pool, octokit, entry);
      await markOutboxDelivered(pool, entry);
      log.debug(
        { outbox: entry.id, kind: entry.kind, task: entry.taskId },
        "outbox entry delivered",
      );
    } catch (error) {
      const failure = classifyFailure(error);
      const message = `${entry.kind}: ${failure.message}`;
      if (failure.retryable && entry.attempts < this.#options.maxAttempts) {
        const delay = failure.retryAfterMs ?? backoff(this.#options.backoffBaseMs, entry.attempts);
        await markOutboxRetry(pool, entry.id, message, delay);
        log.warn(
          { outbox: entry.id, task: entry.taskId, delay, err: message },
          "outbox delivery will retry",
        );
        return;
      }
      await markOutboxDead(pool, entry.id, message);
      log.error({ outbox: entry.id, task: entry.taskId, err: message }, "outbox delivery gave up");
      if (entry.taskId !== null) {
        await appendTaskEvent(pool, {
          taskId: entry.taskId,
          event: "outbox_failed",
          fromState: null,
          toState: null,
          actor: "outbox",
          cause: `outbox:${entry.id}`,
          detail: { kind: entry.kind, error: message, attempts: entry.attempts },
        });
      }
    }
  }
}

interface Target {
  owner: string;
  repo: string;
}

function targetOf(entry: OutboxEntry): Target {
  const [owner = "", repo = ""] = entry.repoFullName.split("/");
  return { owner, repo };
}

async function deliver(pool: Pool, octokit: GithubRequester, entry: OutboxEntry): Promise<void> {
  const target = targetOf(entry);
  const issueNumber = Number(entry.payload.issueNumber);
  switch (entry.kind) {
    case "status_comment": {
      const task = await requireTask(pool, entry);
      const body = renderStatusComment(statusViewOf(task));
      const commentId = await upsertMarkedComment(octokit, target, issueNumber, body, {
        knownId: task.statusCommentId,
        marker: STATUS_MARKER(task.id),
        mayExist: entry.attempts > 1,
      });
      if (commentId !== task.statusCommentId) await setStatusCommentId(pool, task.id, commentId);
      return;
    }
    case "state_label": {
      const task = await requireTask(pool, entry);
      const wanted = stateLabel(task.state);
      if (task.stateLabel === wanted) return;
      await octokit.request("POST /repos/{owner}/{repo}/issues/{issue_number}/labels", {
        ...target,
        issue_number: issueNumber,
        labels: [wanted],
      });
      if (task.stateLabel) {
        await ignoreNotFound(
          octokit.request("DELETE /repos/{owner}/{repo}/issues/{issue_number}/labels/{name}", {
            ...target,
            issue_number: issueNumber,
            name: task.stateLabel,
          }),
        );
      }
      await setStateLabel(pool, task.id, wanted);
      return;
    }
    case "completion_comment": {
      const task = await requireTask(pool, entry);
      const body = renderCompletionComment(await completionViewOf(pool, task));
      await upsertMarkedComment(octokit, target, issueNumber, body, {
        knownId: null,
        marker: COMPLETION_MARKER(task.id),
        mayExist: entry.attempts > 1,
        createOnly: true,
      });
      return;
    }
    case "reply": {
      const marker = `<!-- overseer:reply id=${entry.id} -->`;
      await upsertMarkedComment(
        octokit,
        target,
        issueNumber,
        `${marker}\n${String(entry.payload.body)}`,
        {
          knownId: null,
          marker,
          mayExist: entry.attempts > 1,
          createOnly: true,
        },
      );
      return;
    }
    case "merge_pr": {
      const task = await requireTask(pool, entry);
      await mergeWhenReady(pool, octokit, task, target);
      return;
    }
    case "reaction":
      await octokit.request("POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", {
        ...target,
        comment_id: Number(entry.payload.commentId),
        content: String(entry.payload.content ?? "+1"),
      });
      return;
  }
}

/**
 * Edits the known comment, or creates one. When an earlier attempt may have created it
 * before crashing (or before its id was recorded), looks for the marker first, so a retry
 * never posts a duplicate.
 */
async function upsertMarkedComment(
  octokit: GithubRequester,
  target: Target,
  issueNumber: number,
  body: string,
  options: { knownId: number | null; marker: string; mayExist: boolean; createOnly?: boolean },
): Promise<number> {
  let commentId = options.knownId;
  if (commentId === null && options.mayExist) {
    commentId = await findMarkedComment(octokit, target, issueNumber, options.marker);
    if (commentId !== null && options.createOnly) return commentId;
  }
  if (commentId !== null) {
    const edited = await ignoreNotFound(
      octokit.request("PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}", {
        ...target,
        comment_id: commentId,
        body,
      }),
    );
    // Someone deleted the sticky comment: post a new one.
    if (edited) return commentId;
  }
  const created = await octokit.request(
    "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
    {
      ...target,
      issue_number: issueNumber,
      body,
    },
  );
  return (created.data as { id: number }).id;
}

const COMMENT_PAGES_SEARCHED = 10;

async function findMarkedComment(
  octokit: GithubRequester,
  target: Target,
  issueNumber: number,
  marker: string,
): Promise<number | null> {
  for (let page = 1; page <= COMMENT_PAGES_SEARCHED; page += 1) {
    const response = await octokit.request(
      "GET /repos/{owner}/{repo}/issues/{issue_number}/comments",
      { ...target, issue_number: issueNumber, per_page: 100, page },
    );
    const comments = response.data as { id: number; body?: string }[];
    const found = comments.find((comment) => comment.body?.startsWith(marker));
    if (found) return found.id;
    if (comments.length < 100) return null;
  }
  return null;
}

async function ignoreNotFound<T>(request: Promise<T>): Promise<T | null> {
  try {
    return await request;
  } catch (error) {
    if ((error as { status?: number }).status === 404) return null;
    throw error;
  }
}

async function requireTask(pool: Pool, entry: OutboxEntry): Promise<TaskRow> {
  const task = entry.taskId === null ? null : await getTask(pool, entry.taskId);
  if (!task) throw new PermanentError(`task ${entry.taskId} no longer exists`);
  return task;
}

function statusViewOf(task: TaskRow) {
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
  };
}

async function completionViewOf(pool: Pool, task: TaskRow) {
  if (!task.prNumber || !task.prUrl || !task.mergeCommitSha || !task.mergedAt) {
    throw new PermanentError(`task ${task.id} has no merge evidence to report`);
  }
  const runs = await pool.query<{ ms: number | null }>(
    `SELECT COALESCE(sum(EXTRACT(EPOCH FROM (COALESCE(finished_at, now()) - started_at)) * 1000), 0)::float8 AS ms
       FROM runs WHERE task_id = $1`,
    [task.id],
  );
  return {
    taskId: task.id,
    prNumber: task.prNumber,
    prUrl: task.prUrl,
    mergeCommitSha: task.mergeCommitSha,
    mergedBy: task.mergedBy,
    attempts: task.attempts,
    totalMs: task.mergedAt.getTime() - task.createdAt.getTime(),
    runMs: runs.rows[0]?.ms ?? 0,
    summary: task.summary,
  };
}

class PermanentError extends Error {
  override name = "PermanentError";
}

export interface FailureClass {
  retryable: boolean;
  retryAfterMs: number | null;
  message: string;
}

/** Which GitHub failures are worth retrying, and when GitHub asked us to come back. */
export function classifyFailure(error: unknown, now = Date.now()): FailureClass {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof PermanentError) return { retryable: false, retryAfterMs: null, message };
  const status = (error as { status?: number }).status;
  const headers = ((error as { response?: { headers?: Record<string, string> } }).response
    ?.headers ?? {}) as Record<string, string | undefined>;
  const retryAfter = Number(headers["retry-after"]);
  const resetAt = Number(headers["x-ratelimit-reset"]) * 1000;
  const retryAfterMs =
    Number.isFinite(retryAfter) && retryAfter >= 0
      ? retryAfter * 1000
      : headers["x-ratelimit-remaining"] === "0" && Number.isFinite(resetAt)
        ? Math.max(0, resetAt - now)
        : null;
  if (status === undefined) return { retryable: true, retryAfterMs: null, message };
  const rateLimited =
    status === 429 || (status === 403 && (retryAfterMs !== null || /rate limit/i.test(message)));
  const retryable = status >= 500 || status === 408 || rateLimited;
  return {
    retryable,
    retryAfterMs: retryable ? retryAfterMs : null,
    message: `HTTP ${status}: ${message}`,
  };
}

/** base · 2^(attempt−1), capped, with ±20% jitter so a fleet does not retry in step. */
export function backoff(baseMs: number, attempt: number, random = Math.random): number {
  const exponential = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exponential * (0.8 + 0.4 * random()));
}
