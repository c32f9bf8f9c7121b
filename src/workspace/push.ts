import { WorkspaceError } from "./errors.js";
import { withFileLock } from "./file-lock.js";
import { git } from "./git.js";
import { retryAfterStaleLocks } from "./git-locks.js";
import { authed, local, lockOptions, mirrorLockScope } from "./options.js";
import { resolveTaskPaths, taskBranch } from "./paths.js";
import { readRefs } from "./refs.js";
import type { WorkspaceOptions, WorkspaceTask } from "./types.js";

/**
 * Pushes the worktree's HEAD to the task branch on origin. With `forceWithLease`, a rewrite
 * is allowed only if the remote branch is still where the mirror last saw it and that tip
 * was once part of our branch: a fetch for another task may refresh the mirror's view of
 * the remote, and must not turn someone else's push into something we may overwrite.
 */
export async function pushBranch(
  worktreePath: string,
  task: WorkspaceTask,
  opts: WorkspaceOptions & { forceWithLease?: boolean },
): Promise<{ sha: string }> {
  const branch = taskBranch(task);
  const p = await resolveTaskPaths(opts.home, task);
  const target = `refs/heads/${branch}`;
  const tracking = `refs/remotes/origin/${branch}`;
  if (opts.forceWithLease) await assertOnBranch(worktreePath, target, opts);
  // Pinned before pushing: the worker may still be committing, and we report what we pushed.
  const pinned = (
    await git(worktreePath, ["rev-parse", "--verify", "HEAD^{commit}"], local(opts))
  ).trim();
  // --force-if-includes reads the reflog of the local ref named as the source, so a forced
  // push names the branch rather than the pinned commit.
  const args = opts.forceWithLease
    ? ["push", "--quiet", "--no-verify", `--force-with-lease=${target}`, "--force-if-includes"]
    : ["push", "--quiet", "--no-verify"];
  args.push("origin", opts.forceWithLease ? `${target}:${target}` : `${pinned}:${target}`);
  // Under the mirror lock: the push updates refs/remotes/origin/<branch>, which a
  // concurrent fetch also writes.
  const sha = await withFileLock(
    p.mirrorLock,
    async () => {
      await retryAfterStaleLocks(p.mirror, mirrorLockScope(p, opts), () =>
        git(worktreePath, args, authed(opts)),
      );
      if (!opts.forceWithLease) return pinned;
      return (await readRefs(p.mirror, [tracking], local(opts))).get(tracking) ?? pinned;
    },
    lockOptions(opts),
  );
  opts.log?.info({ branch, sha, forceWithLease: Boolean(opts.forceWithLease) }, "pushed");
  return { sha };
}

async function assertOnBranch(worktreePath: string, ref: string, opts: WorkspaceOptions) {
  const head = await git(worktreePath, ["symbolic-ref", "--quiet", "HEAD"], local(opts)).then(
    (out) => out.trim(),
    () => "a detached commit",
  );
  if (head !== ref) {
    throw new WorkspaceError(`refusing to force-push ${ref}: the worktree's HEAD is on ${head}`);
  }
}
