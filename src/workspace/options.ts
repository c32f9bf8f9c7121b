import type { FileLockOptions } from "./file-lock.js";
import type { GitRunOptions } from "./git.js";
import type { GitLockScope } from "./git-locks.js";
import { assertCloneUrl, type TaskPaths } from "./paths.js";
import type { WorkspaceOptions } from "./types.js";

/** Translations of the public options into what each internal module takes. */

/** For the commands that talk to `url`: its transport only, and the token as a header. */
export function authed(opts: WorkspaceOptions, url: string): GitRunOptions {
  return { token: opts.token, timeoutMs: opts.gitTimeoutMs, remoteProtocol: assertCloneUrl(url) };
}

/** For commands that never talk to the remote: the token has no business there. */
export function local(opts: WorkspaceOptions): GitRunOptions {
  return { timeoutMs: opts.gitTimeoutMs };
}

export function lockOptions(opts: WorkspaceOptions): FileLockOptions {
  return { timeoutMs: opts.lockTimeoutMs, log: opts.log };
}

/** A lock in the worktree or its admin dir can only be owned by someone working in the worktree. */
export function taskLockScope(p: TaskPaths, opts: WorkspaceOptions): GitLockScope {
  return { dirs: [p.worktree], staleAfterMs: opts.staleGitLockMs, log: opts.log };
}

/** A lock in the shared mirror may belong to a process in any worktree of the repository. */
export function mirrorLockScope(p: TaskPaths, opts: WorkspaceOptions): GitLockScope {
  return { dirs: [p.mirror, p.repoWorktrees], staleAfterMs: opts.staleGitLockMs, log: opts.log };
}
