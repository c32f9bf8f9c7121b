import { PR_CLOSED_UNMERGED_ERROR } from "../domain/transitions.js";
import type { Queryable } from "./pool.js";
import { REPO_JSON, type RepoRow } from "./repos.js";
import { TASK_COLUMNS, type TaskRow } from "./tasks.js";

/**
 * The tasks (and repositories) whose GitHub side the watchdog polls for missed webhooks.
 * Only repositories with an installation can be asked.
 */

export interface PolledTask {
  task: TaskRow;
  repo: RepoRow;
}

async function polled(db: Queryable, where: string, values: unknown[]): Promise<PolledTask[]> {
  const result = await db.query<TaskRow & { repo: RepoRow }>(
    `SELECT ${TASK_COLUMNS}, ${REPO_JSON} AS repo
       FROM tasks JOIN repos ON repos.id = tasks.repo_id
      WHERE repos.installation_id IS NOT NULL AND ${where}
      ORDER BY tasks.id`,
    values,
  );
  return result.rows.map(({ repo, ...task }) => ({ task, repo }));
}

/** Tasks whose PR may merge or close: awaiting merge, or queued or running a revision of it. */
export function tasksWithOpenPulls(db: Queryable): Promise<PolledTask[]> {
  return polled(
    db,
    `tasks.pr_number IS NOT NULL
       AND (tasks.state = 'awaiting_merge'
            OR (tasks.revision_pending AND tasks.state IN ('queued', 'awaiting_approval', 'running')))`,
    [],
  );
}

/** Tasks failed because their PR closed unmerged: reopening the PR resumes them. */
export function tasksWithClosedPulls(db: Queryable): Promise<PolledTask[]> {
  return polled(
    db,
    "tasks.pr_number IS NOT NULL AND tasks.state = 'failed' AND tasks.last_error = $1",
    [PR_CLOSED_UNMERGED_ERROR],
  );
}

/** Tasks a removed trigger label or a closed issue would cancel, by repository. */
export function cancellableTasks(db: Queryable): Promise<PolledTask[]> {
  return polled(db, "tasks.state NOT IN ('done', 'cancelled')", []);
}

/** Repositories Overseer knows and can ask GitHub about. */
export async function installedRepos(db: Queryable): Promise<RepoRow[]> {
  const result = await db.query<RepoRow>(
    `SELECT ${REPO_JSON} AS repo FROM repos WHERE installation_id IS NOT NULL ORDER BY id`,
  );
  return result.rows.map((row) => (row as unknown as { repo: RepoRow }).repo);
}

/** Which of these issues of the repository have a task (in any state). */
export async function issuesWithTasks(
  db: Queryable,
  repoId: number,
  issueNumbers: number[],
): Promise<Set<number>> {
  const result = await db.query<{ issueNumber: number }>(
    `SELECT issue_number AS "issueNumber" FROM tasks
      WHERE repo_id = $1 AND issue_number = ANY($2::int[])`,
    [repoId, issueNumbers],
  );
  return new Set(result.rows.map((row) => row.issueNumber));
}
