import { OverseerError } from "../errors.js";

/**
 * Every failure this module raises on purpose, so callers can tell ours from a bug. By
 * default not worth retrying (a name that is not valid, a base branch that does not exist,
 * a worktree someone locked); the subclasses below say when it is.
 */
export class WorkspaceError extends OverseerError {
  override name = "WorkspaceError";
  constructor(message: string, retryable = false) {
    super("infrastructure", message, { retryable });
  }
}

/** What git prints when the network or the server, not the request, failed. */
const TRANSIENT_GIT_FAILURE =
  /Could not resolve host|Connection (?:refused|reset|timed out)|Operation timed out|Failed to connect|unable to access|The requested URL returned error: (?:5\d\d|429)|RPC failed|early EOF|the remote end hung up unexpectedly|gnutls_handshake|SSL_ERROR/i;

/** A git command exited non-zero; message and command are already scrubbed of secrets. */
export class GitCommandError extends WorkspaceError {
  override name = "GitCommandError";
  constructor(
    message: string,
    readonly command: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message, TRANSIENT_GIT_FAILURE.test(stderr));
  }
}

/** A git lock file exists and a live process may own it: not ours to break, yet. */
export class WorkspaceBusyError extends WorkspaceError {
  override name = "WorkspaceBusyError";
  constructor(
    readonly lockFile: string,
    readonly pids: readonly number[],
  ) {
    const who = pids.length > 0 ? `process ${pids.join(", ")} works there` : "its owner is unknown";
    super(`${lockFile} is held and ${who}; try again once it is gone`, true);
  }
}

/** Another live process held an Overseer lock for longer than we were willing to wait. */
export class LockTimeoutError extends WorkspaceError {
  override name = "LockTimeoutError";
  constructor(
    readonly lockFile: string,
    readonly holder: unknown,
  ) {
    super(`timed out waiting for ${lockFile} (held by ${JSON.stringify(holder)})`, true);
  }
}
