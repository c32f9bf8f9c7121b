import type { Queryable } from "./pool.js";

/**
 * What revisions are asked to do (`revision_requests`) and which review threads people
 * resolved (`resolved_review_threads`). Requests are written in the transaction that
 * queued (or added to) the revision; the transition that ends the revision closes them
 * (task-changes.ts, the `close_revision` effect).
 */

export type RevisionSource = "command" | "review_comment" | "review";

export interface RevisionRequest {
  id: number;
  source: RevisionSource;
  author: string;
  body: string;
  githubId: number;
  createdAt: Date;
}

/** Records a request for the task's open revision; a redelivered comment or review adds nothing. */
export async function addRevisionRequest(
  db: Queryable,
  request: {
    taskId: number;
    source: RevisionSource;
    author: string;
    body: string;
    githubId: number;
  },
): Promise<void> {
  await db.query(
    `INSERT INTO revision_requests (task_id, source, author, body, github_id)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT ON CONSTRAINT revision_requests_once DO NOTHING`,
    [request.taskId, request.source, request.author, request.body, request.githubId],
  );
}

/** The requests of the revision now queued or running, oldest first. */
export async function openRevisionRequests(
  db: Queryable,
  taskId: number,
): Promise<RevisionRequest[]> {
  const result = await db.query<RevisionRequest>(
    `SELECT id, source, author, body, github_id AS "githubId", created_at AS "createdAt"
       FROM revision_requests WHERE task_id = $1 AND closed_at IS NULL ORDER BY id`,
    [taskId],
  );
  return result.rows;
}

/**
 * When the run before this one started: a revision's prompt carries the PR conversation
 * since then (what the previous run could not have read). Null for a task's first run.
 */
export async function previousRunStartedAt(
  db: Queryable,
  taskId: number,
  runId: number,
): Promise<Date | null> {
  const result = await db.query<{ at: Date }>(
    `SELECT started_at AS at FROM runs WHERE task_id = $1 AND id < $2 ORDER BY id DESC LIMIT 1`,
    [taskId, runId],
  );
  return result.rows[0]?.at ?? null;
}

/** A pull_request_review_thread.resolved delivery: the thread's comments leave revision prompts. */
export async function recordThreadResolved(
  db: Queryable,
  thread: {
    repoId: number;
    prNumber: number;
    threadId: string;
    commentIds: number[];
    resolvedBy: string;
  },
): Promise<void> {
  await db.query(
    `INSERT INTO resolved_review_threads (repo_id, pr_number, thread_id, comment_ids, resolved_by)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (repo_id, thread_id) DO UPDATE SET
       comment_ids = EXCLUDED.comment_ids, resolved_by = EXCLUDED.resolved_by,
       resolved_at = now()`,
    [thread.repoId, thread.prNumber, thread.threadId, thread.commentIds, thread.resolvedBy],
  );
}

/** pull_request_review_thread.unresolved: the thread counts again. */
export async function recordThreadUnresolved(
  db: Queryable,
  thread: { repoId: number; threadId: string },
): Promise<void> {
  await db.query("DELETE FROM resolved_review_threads WHERE repo_id = $1 AND thread_id = $2", [
    thread.repoId,
    thread.threadId,
  ]);
}

/** Ids of review comments in threads resolved on the PR. */
export async function resolvedReviewCommentIds(
  db: Queryable,
  pr: { repoId: number; prNumber: number },
): Promise<Set<number>> {
  const result = await db.query<{ id: string }>(
    `SELECT DISTINCT unnest(comment_ids)::text AS id FROM resolved_review_threads
      WHERE repo_id = $1 AND pr_number = $2`,
    [pr.repoId, pr.prNumber],
  );
  return new Set(result.rows.map((row) => Number(row.id)));
}
