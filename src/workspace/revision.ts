import { hasUncommittedChanges, worktreeRepo } from "./changes.js";
import { WorkspaceError } from "./errors.js";
import { withFileLock } from "./file-lock.js";
import { git, gitSucceeds } from "./git.js";
import { syncMirror } from "./mirror.js";
import { local, lockOptions } from "./options.js";
import { resolveTaskPaths, taskBranch } from "./paths.js";
import { readRefs } from "./refs.js";
import type { EnsuredWorktree, WorkspaceOptions, WorkspaceTask, WorktreeHandle } from "./types.js";

/**
 * A revision starts from exactly what the pull request shows: the branch's commit on
 * origin, just fetched (someone may have pushed to the PR since the last run). Whatever the
 * worktree holds that the PR does not (commits an earlier run made but never pushed, a
 * failed revision's edits) is kept under refs/overseer/backup/<branch>/<time> in the
 * mirror, never deleted, and the worktree is set to the PR's commit. Its new commits are
 * then exactly those after the returned sha.
 */
export async function startRevision(
  task: WorkspaceTask,
  worktree: EnsuredWorktree,
  opts: WorkspaceOptions & { author: { name: string; email: string } },
): Promise<{ sha: string; backup?: string }> {
  const branch = taskBranch(task);
  const p = await resolveTaskPaths(opts.home, task);
  return withFileLock(
    p.taskLock,
    async () => {
      await syncMirror(p, task.cloneUrl, opts);
      const remoteRef = `refs/remotes/origin/${branch}`;
      const remote = (await readRefs(p.mirror, [remoteRef], local(opts))).get(remoteRef);
      if (!remote) {
        throw new WorkspaceError(
          `branch ${branch} is not on origin: the pull request has no branch to revise`,
        );
      }
      const inWorktree = { ...local(opts), ...worktreeRepo(worktree) };
      const head = (
        await git(worktree.path, ["rev-parse", "--verify", "HEAD^{commit}"], inWorktree)
      ).trim();
      const dirty = await hasUncommittedChanges(worktree);
      if (head === remote && !dirty) return { sha: remote };
      const keep = dirty ? await snapshot(worktree, opts) : head;
      let backup: string | undefined;
      const known =
        keep === remote ||
        (await gitSucceeds(p.mirror, ["merge-base", "--is-ancestor", keep, remote], local(opts)));
      if (!known) {
        backup = `refs/overseer/backup/${branch}/${Date.now()}`;
        await git(p.mirror, ["update-ref", backup, keep, ""], local(opts));
        opts.log?.warn(
          { branch, kept: keep, at: backup },
          "work the PR does not show was set aside",
        );
      }
      // Untracked files were added to the index by the snapshot, so this removes them too.
      await git(worktree.path, ["reset", "--hard", "--quiet", remote], inWorktree);
      return backup ? { sha: remote, backup } : { sha: remote };
    },
    lockOptions(opts),
  );
}

/** A commit holding the worktree's uncommitted changes, untracked files included. */
async function snapshot(
  worktree: WorktreeHandle,
  opts: WorkspaceOptions & { author: { name: string; email: string } },
): Promise<string> {
  const inWorktree = { ...local(opts), ...worktreeRepo(worktree) };
  const identity = {
    GIT_AUTHOR_NAME: opts.author.name,
    GIT_AUTHOR_EMAIL: opts.author.email,
    GIT_COMMITTER_NAME: opts.author.name,
    GIT_COMMITTER_EMAIL: opts.author.email,
  };
  await git(worktree.path, ["add", "--all"], inWorktree);
  const sha = (
    await git(
      worktree.path,
      ["stash", "create", "Overseer: left in the worktree before a revision"],
      {
        ...inWorktree,
        env: identity,
      },
    )
  ).trim();
  if (!sha) throw new WorkspaceError(`could not record the changes left in ${worktree.path}`);
  return sha;
}
