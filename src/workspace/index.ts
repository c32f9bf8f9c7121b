export {
  type CommitAuthor,
  commitAll,
  commitsAheadOfBase,
  commitsSince,
  hasUncommittedChanges,
} from "./changes.js";
export { GitCommandError, LockTimeoutError, WorkspaceBusyError, WorkspaceError } from "./errors.js";
export { ensureMirror, remoteBranchSha } from "./mirror.js";
export { pushBranch } from "./push.js";
export { removeWorktree } from "./remove.js";
export { startRevision } from "./revision.js";
export type {
  EnsuredWorktree,
  StartedFrom,
  WorkspaceLog,
  WorkspaceOptions,
  WorkspaceTask,
} from "./types.js";
export { ensureWorktree } from "./worktree.js";
