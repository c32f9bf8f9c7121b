/** Every failure this module raises on purpose, so callers can tell ours from a bug. */
export class WorkspaceError extends Error {
  override name = "WorkspaceError";
}

/** A git command exited non-zero; message and command are already scrubbed of secrets. */
export class GitCommandError extends WorkspaceError {
  override name = "GitCommandError";
  constructor(
    message: string,
    readonly command: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** A git lock file exists and a live process may own it: not ours to break. */
export class WorkspaceBusyError extends WorkspaceError {
  override name = "WorkspaceBusyError";
  constructor(
    readonly lockFile: string,
    readonly pids: readonly number[],
  ) {
    const who = pids.length > 0 ? `process ${pids.join(", ")} works there` : "its owner is unknown";
    super(`${lockFile} is held and ${who}; try again once it is gone`);
  }
}

/** Another live process held an Overseer lock for longer than we were willing to wait. */
export class LockTimeoutError extends WorkspaceError {
  override name = "LockTimeoutError";
  constructor(
    readonly lockFile: string,
    readonly holder: unknown,
  ) {
    super(`timed out waiting for ${lockFile} (held by ${JSON.stringify(holder)})`);
  }
}
