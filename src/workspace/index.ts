export {
  type CommitAuthor,
  commitAll,
  commitsAheadOfBase,
  commitsSince,
  hasUncommittedChanges,
} from "./changes.js";
export { GitCommandError, LockTimeoutError, WorkspaceBusyError, WorkspaceError } from "./errors.js";
export { checkMirror, ensureMirror, type MirrorFindings, remoteBranchSha } from "./mirror.js";
export { listWorktreeDirs, quarantineOrphanWorktree, type WorktreeDir } from "./orphans.js";
export { pushBranch, RemoteBranchMovedError } from "./push.js";
export { assertOnConfiguredHost, repositoryUrl } from "./remote-url.js";
export { removeWorktree } from "./remove.js";
export { startRevision } from "./revision.js";
export { scrub as scrubSecrets } from "./secrets.js";
export type {
  EnsuredWorktree,
  StartedFrom,
  WorkspaceLog,
  WorkspaceOptions,
  WorkspaceTask,
  WorktreeHandle,
} from "./types.js";
export { adoptWorkerBranch, prepareWorkerView, type WorkerGitView } from "./worker-view.js";
export { ensureWorktree } from "./worktree.js";
