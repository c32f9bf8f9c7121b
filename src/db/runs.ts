import type { Queryable } from "./pool.js";

/** Marks the task's active run as asked to stop; returns the run ids to notify. */
export async function requestStopForTask(
  db: Queryable,
  taskId: number,
  actor: string,
): Promise<number[]> {
  const result = await db.query<{ id: number }>(
    `UPDATE runs SET stop_requested_at = COALESCE(stop_requested_at, now()),
                     stop_requested_by = COALESCE(stop_requested_by, $2)
      WHERE task_id = $1 AND state = 'running'
      RETURNING id`,
    [taskId, actor],
  );
  return result.rows.map((row) => row.id);
}

/** A final task whose worktree is still on `host`: everything removeWorktree needs. */
export interface LeftoverWorktree {
  taskId: number;
  /** Done: the PR was merged, so the branch may go too. */
  merged: boolean;
  repoFullName: string;
  cloneUrl: string;
  issueNumber: number;
  title: string;
  base: string;
  branch: string | null;
}

/** Worktrees on this host whose task is done or cancelled and no run of it is active. */
export async function findLeftoverWorktrees(
  db: Queryable,
  host: string,
  limit = 20,
): Promise<LeftoverWorktree[]> {
  const result = await db.query<LeftoverWorktree>(
    `SELECT DISTINCT ON (t.id) t.id AS "taskId", t.state = 'done' AS merged,
            r.full_name AS "repoFullName", r.clone_url AS "cloneUrl",
            t.issue_number AS "issueNumber", t.title,
            COALESCE(t.base_branch, r.default_branch) AS base, t.branch
       FROM runs
       JOIN tasks t ON t.id = runs.task_id
       JOIN repos r ON r.id = t.repo_id
      WHERE runs.host = $1 AND runs.worktree IS NOT NULL AND runs.worktree_removed_at IS NULL
        AND t.state IN ('done', 'cancelled')
        AND NOT EXISTS (SELECT 1 FROM runs active
                         WHERE active.task_id = t.id AND active.state = 'running')
      ORDER BY t.id
      LIMIT $2`,
    [host, limit],
  );
  return result.rows;
}

export async function markWorktreesRemoved(
  db: Queryable,
  taskId: number,
  host: string,
): Promise<void> {
  await db.query(
    `UPDATE runs SET worktree_removed_at = now()
      WHERE task_id = $1 AND host = $2 AND worktree IS NOT NULL AND worktree_removed_at IS NULL`,
    [taskId, host],
  );
}
