import { OverseerError } from "../errors.js";
import { worktreeRepo } from "./changes.js";
import { GitCommandError, WorkspaceError } from "./errors.js";
import { withFileLock } from "./file-lock.js";
import { git, gitSucceeds } from "./git.js";
import { retryAfterStaleLocks } from "./git-locks.js";
import { remoteBranchSha } from "./mirror.js";
import { authed, local, lockOptions, mirrorLockScope } from "./options.js";
import { resolveTaskPaths, type TaskPaths, taskBranch } from "./paths.js";
import { readRefs } from "./refs.js";
import type { WorkspaceOptions, WorkspaceTask, WorktreeHandle } from "./types.js";

/**
 * The remote branch is somewhere Overseer's commit does not build on: someone pushed to it,
 * or its history was rewritten. Overseer never force-pushes over that; it says so.
 */
export class RemoteBranchMovedError extends OverseerError {
  override name = "RemoteBranchMovedError";
  constructor(
    readonly branch: string,
    readonly remoteSha: string,
    readonly localSha: string,
    /** Whether origin's tip was once on the local branch (then the local history was rewritten). */
    pushedByUs: boolean,
  ) {
    const why = pushedByUs
      ? "the local branch was rewritten since Overseer pushed it"
      : "someone else pushed to it";
    super(
      "github",
      `branch ${branch} is at ${remoteSha} on origin, which ${localSha} does not build on (${why}); not force-pushed`,
      { retryable: false },
    );
  }
}

/**
 * Pushes the worktree's HEAD, as Overseer's own git resolves it, to the task branch at the
 * explicit URL of the task (never a remote named in config), from the mirror. Without
 * `forceWithLease` the push only fast-forwards. With it, a rewrite is allowed only if the
 * remote branch is still where the mirror last saw it and that tip was once part of our
 * branch: a fetch for another task may refresh the mirror's view of the remote, and must
 * not turn someone else's push into something we may overwrite.
 */
export async function pushBranch(
  worktree: WorktreeHandle,
  task: WorkspaceTask,
  opts: WorkspaceOptions & { forceWithLease?: boolean },
): Promise<{ sha: string }> {
  const branch = taskBranch(task);
  const p = await resolveTaskPaths(opts.home, task);
  const target = `refs/heads/${branch}`;
  if (opts.forceWithLease) await assertOnBranch(worktree, target, opts);
  // Pinned before pushing: the worker may still be committing, and we report what we pushed.
  const pinned = (
    await git(worktree.path, ["rev-parse", "--verify", "HEAD^{commit}"], {
      ...local(opts),
      ...worktreeRepo(worktree),
    })
  ).trim();
  // Under the mirror lock: the push updates refs/remotes/origin/<branch>, which a
  // concurrent fetch also writes.
  await withFileLock(
    p.mirrorLock,
    () =>
      opts.forceWithLease
        ? forcePush(p, task, branch, pinned, opts)
        : fastForwardPush(p, task, branch, pinned, opts),
    lockOptions(opts),
  );
  opts.log?.info({ branch, sha: pinned, forceWithLease: Boolean(opts.forceWithLease) }, "pushed");
  return { sha: pinned };
}

async function fastForwardPush(
  p: TaskPaths,
  task: WorkspaceTask,
  branch: string,
  sha: string,
  opts: WorkspaceOptions,
): Promise<void> {
  try {
    await push(
      p,
      task,
      ["push", "--quiet", "--no-verify", task.cloneUrl, `${sha}:refs/heads/${branch}`],
      opts,
    );
  } catch (error) {
    if (
      !(error instanceof GitCommandError) ||
      !/\[rejected\]|non-fast-forward|fetch first/.test(error.stderr)
    ) {
      throw error;
    }
    const remote = await remoteBranchSha(task, branch, opts);
    if (remote === null || remote === sha) throw error;
    const ours = await reflogIncludes(p.mirror, `refs/heads/${branch}`, remote, opts);
    throw new RemoteBranchMovedError(branch, remote, sha, ours);
  }
  await recordTracking(p, branch, sha, opts);
}

async function forcePush(
  p: TaskPaths,
  task: WorkspaceTask,
  branch: string,
  sha: string,
  opts: WorkspaceOptions,
): Promise<void> {
  const target = `refs/heads/${branch}`;
  const tracking = `refs/remotes/origin/${branch}`;
  const expected = (await readRefs(p.mirror, [tracking], local(opts))).get(tracking) ?? "";
  // What --force-if-includes checks for a named remote: the tip we may overwrite must have
  // been on our branch at some point (its reflog), not just fetched for another task.
  if (expected !== "" && !(await reflogIncludes(p.mirror, target, expected, opts))) {
    throw new WorkspaceError(
      `refusing to force-push ${target}: rejected, origin's ${expected} was never part of the local branch (stale info)`,
    );
  }
  await push(
    p,
    task,
    [
      "push",
      "--quiet",
      "--no-verify",
      `--force-with-lease=${target}:${expected}`,
      task.cloneUrl,
      `${sha}:${target}`,
    ],
    opts,
  );
  await recordTracking(p, branch, sha, opts);
}

function push(p: TaskPaths, task: WorkspaceTask, args: string[], opts: WorkspaceOptions) {
  return retryAfterStaleLocks(p.mirror, mirrorLockScope(p, opts), () =>
    git(p.mirror, args, { ...authed(opts, task.cloneUrl), repo: { gitDir: p.mirror } }),
  );
}

/** A push to a URL updates no remote-tracking ref; the mirror's view must follow it. */
async function recordTracking(p: TaskPaths, branch: string, sha: string, opts: WorkspaceOptions) {
  await git(p.mirror, ["update-ref", `refs/remotes/origin/${branch}`, sha], local(opts));
}

async function reflogIncludes(
  mirror: string,
  ref: string,
  sha: string,
  opts: WorkspaceOptions,
): Promise<boolean> {
  // A tip pushed by someone else is usually not even in the mirror.
  if (!(await gitSucceeds(mirror, ["cat-file", "-e", sha], local(opts)))) return false;
  const out = await git(mirror, ["reflog", "show", "--format=%H", ref, "--"], local(opts)).catch(
    (error: unknown) => {
      if (error instanceof GitCommandError) return "";
      throw error;
    },
  );
  for (const entry of new Set(out.split("\n").filter((line) => line !== ""))) {
    if (entry === sha) return true;
    if (await gitSucceeds(mirror, ["merge-base", "--is-ancestor", sha, entry], local(opts))) {
      return true;
    }
  }
  return false;
}

async function assertOnBranch(worktree: WorktreeHandle, ref: string, opts: WorkspaceOptions) {
  const head = await git(worktree.path, ["symbolic-ref", "--quiet", "HEAD"], {
    ...local(opts),
    ...worktreeRepo(worktree),
  }).then(
    (out) => out.trim(),
    () => "a detached commit",
  );
  if (head !== ref) {
    throw new WorkspaceError(`refusing to force-push ${ref}: the worktree's HEAD is on ${head}`);
  }
}
