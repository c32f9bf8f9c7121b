import { hasUncommittedChanges } from "./changes.js";
import { withFileLock } from "./file-lock.js";
import { git } from "./git.js";
import { clearStaleGitLocks } from "./git-locks.js";
import { local, lockOptions, taskLockScope } from "./options.js";
import { resolveTaskPaths, type TaskPaths, taskBranch } from "./paths.js";
import { moveToQuarantine } from "./quarantine.js";
import { readRefs } from "./refs.js";
import { linkedAdminDir, listWorktrees, pathKind, type WorktreeEntry } from "./registry.js";
import {
  ADD_IN_PROGRESS,
  basename,
  clearUnregistered,
  moveOffBranchAside,
  taskLockFiles,
} from "./repair.js";
import type { WorkspaceOptions, WorkspaceTask } from "./types.js";

/**
 * For final tasks. Uncommitted work is moved to quarantine rather than deleted; the branch
 * stays unless the caller says its PR was merged.
 */
export async function removeWorktree(
  task: WorkspaceTask,
  opts: WorkspaceOptions & { deleteBranch: boolean },
): Promise<void> {
  const branch = taskBranch(task);
  const p = await resolveTaskPaths(opts.home, task);
  await withFileLock(
    p.taskLock,
    async () => {
      if ((await pathKind(p.mirror)) !== "directory") {
        await clearUnregistered(p, opts);
        return;
      }
      await withFileLock(p.registryLock, () => remove(p, branch, opts), lockOptions(opts));
    },
    lockOptions(opts),
  );
}

async function remove(
  p: TaskPaths,
  branch: string,
  opts: WorkspaceOptions & { deleteBranch: boolean },
) {
  const entries = await listWorktrees(p.mirror, local(opts));
  const entry = entries.find((candidate) => candidate.path === p.worktree);
  if (entry && entry.locked !== null && entry.locked !== ADD_IN_PROGRESS) {
    opts.log?.warn({ worktree: p.worktree, reason: entry.locked }, "kept: worktree is locked");
    return;
  }
  if (entry) await detach(entry, p, branch, opts);
  else await clearUnregistered(p, opts);
  if (opts.deleteBranch) await deleteBranch(entries, p, branch, opts);
}

async function detach(entry: WorktreeEntry, p: TaskPaths, branch: string, opts: WorkspaceOptions) {
  const g = local(opts);
  if (entry.locked === ADD_IN_PROGRESS) {
    await git(p.mirror, ["worktree", "unlock", p.worktree], g);
  }
  const adminDir =
    (await pathKind(p.worktree)) === "missing" ? null : await linkedAdminDir(p.worktree, p.mirror);
  if (adminDir) {
    await clearStaleGitLocks(taskLockFiles(p, adminDir, branch), taskLockScope(p, opts));
    if (entry.branch !== `refs/heads/${branch}`) {
      await moveOffBranchAside(entry, p, opts);
      return;
    }
    if (!(await hasUncommittedChanges(p.worktree))) {
      try {
        // No --force: if work appeared since the check, git refuses and we quarantine below.
        await git(p.mirror, ["worktree", "remove", p.worktree], g);
        opts.log?.info({ worktree: p.worktree }, "removed worktree");
        return;
      } catch (error) {
        opts.log?.warn({ worktree: p.worktree, err: error }, "worktree not removable");
      }
    }
  }
  if ((await pathKind(p.worktree)) !== "missing") {
    const movedTo = await moveToQuarantine(p.worktree, p.quarantine, `${basename(p)}-final`);
    opts.log?.warn({ worktree: p.worktree, movedTo }, "kept uncommitted or unknown files aside");
  }
  await git(p.mirror, ["worktree", "prune"], g);
}

async function deleteBranch(
  entries: WorktreeEntry[],
  p: TaskPaths,
  branch: string,
  opts: WorkspaceOptions,
) {
  const ref = `refs/heads/${branch}`;
  const elsewhere = entries.find((e) => e.branch === ref && e.path !== p.worktree);
  if (elsewhere) {
    opts.log?.warn({ branch, worktree: elsewhere.path }, "kept branch: checked out elsewhere");
    return;
  }
  const sha = (await readRefs(p.mirror, [ref], local(opts))).get(ref);
  if (!sha) return;
  await git(p.mirror, ["update-ref", "-d", ref, sha], local(opts));
  // The tip stays in the object store until gc; the log line is how to get it back.
  opts.log?.info({ branch, sha }, "deleted merged task branch");
}
