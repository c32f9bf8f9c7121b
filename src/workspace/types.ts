/** The contract the runner calls; everything else in this folder is free to change. */

export interface WorkspaceLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface WorkspaceTask {
  /** `owner/name` as in the payload. */
  repoFullName: string;
  /**
   * `<protocol>://<configured host>/<owner>/<name>.git` (remote-url.ts builds it); anything
   * but an http(s) URL is refused.
   */
  cloneUrl: string;
  issueNumber: number;
  title: string;
  /** Base branch name, e.g. `main`. */
  base: string;
  /** The branch recorded for the task; wins over one recomputed from a since-edited title. */
  branch?: string;
}

export interface WorkspaceOptions {
  /** OVERSEER_HOME. */
  home: string;
  /** Installation token, sent per command as an HTTP header and never stored. */
  token?: string;
  log?: WorkspaceLog;
  /** How long to wait for another process working on the same task or mirror. */
  lockTimeoutMs?: number;
  /** Kill a git command after this long without output. */
  gitTimeoutMs?: number;
  /** A git lock file older than this is stale even if a process still sits in the directory. */
  staleGitLockMs?: number;
}

export type StartedFrom = "existing-worktree" | "remote-branch" | "local-branch" | "base";

/**
 * A worktree as Overseer knows it, independent of what its `.git` file says now: the
 * worker may rewrite that file, and Overseer's git always names gitDir and commonDir.
 */
export interface WorktreeHandle {
  path: string;
  /** Its admin dir in the mirror (`<mirror>/worktrees/<name>`), recorded when it was made. */
  gitDir: string;
  /** The mirror. */
  commonDir: string;
}

export interface EnsuredWorktree extends WorktreeHandle {
  branch: string;
  base: string;
  /** The base's commit as last fetched into the mirror. */
  baseSha: string;
  created: boolean;
  startedFrom: StartedFrom;
  /** Where unknown files found at the worktree path were moved. */
  quarantined?: string;
  /** Ref keeping a local branch tip that had diverged from the remote branch we started from. */
  localBackup?: string;
}
