import type { Queryable } from "./pool.js";

export interface RepoRow {
  id: number;
  githubId: number;
  fullName: string;
  installationId: number | null;
  cloneUrl: string;
  defaultBranch: string;
}

/** The `repos` row of a joined query as one JSON column shaped like RepoRow. */
export const REPO_JSON = `json_build_object('id', repos.id, 'githubId', repos.github_id,
  'fullName', repos.full_name, 'installationId', repos.installation_id,
  'cloneUrl', repos.clone_url, 'defaultBranch', repos.default_branch)`;

const COLUMNS = `id, github_id AS "githubId", full_name AS "fullName",
  installation_id AS "installationId", clone_url AS "cloneUrl", default_branch AS "defaultBranch"`;

/** Records the repository as the latest payload describes it (renames, transfers, new installs). */
export async function upsertRepo(db: Queryable, repo: Omit<RepoRow, "id">): Promise<RepoRow> {
  const result = await db.query<RepoRow>(
    `INSERT INTO repos (github_id, full_name, installation_id, clone_url, default_branch)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (github_id) DO UPDATE SET
       full_name = EXCLUDED.full_name,
       installation_id = COALESCE(EXCLUDED.installation_id, repos.installation_id),
       clone_url = EXCLUDED.clone_url,
       default_branch = EXCLUDED.default_branch,
       updated_at = now()
     WHERE (repos.full_name, repos.installation_id, repos.clone_url, repos.default_branch)
       IS DISTINCT FROM (EXCLUDED.full_name, COALESCE(EXCLUDED.installation_id, repos.installation_id),
                         EXCLUDED.clone_url, EXCLUDED.default_branch)
     RETURNING ${COLUMNS}`,
    [repo.githubId, repo.fullName, repo.installationId, repo.cloneUrl, repo.defaultBranch],
  );
  // Nothing changed: the conditional update returned no row, so read the current one.
  const row = result.rows[0] ?? (await findRepoByGithubId(db, repo.githubId));
  if (!row)
    throw new Error(`repository with GitHub id ${repo.githubId} vanished during its upsert`);
  return row;
}

/**
 * The repository by GitHub's id; null only when Overseer has never heard of it. A database
 * failure is thrown, never mistaken for "unknown repository".
 */
export async function findRepoByGithubId(db: Queryable, githubId: number): Promise<RepoRow | null> {
  const result = await db.query<RepoRow>(`SELECT ${COLUMNS} FROM repos WHERE github_id = $1`, [
    githubId,
  ]);
  return result.rows[0] ?? null;
}

export async function getRepo(db: Queryable, id: number): Promise<RepoRow> {
  const result = await db.query<RepoRow>(`SELECT ${COLUMNS} FROM repos WHERE id = $1`, [id]);
  const row = result.rows[0];
  if (!row) throw new Error(`no repository with id ${id}`);
  return row;
}
