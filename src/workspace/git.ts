import path from "node:path";
import { GitError, type SimpleGitOptions, simpleGit } from "simple-git";
import { GitCommandError } from "./errors.js";
import { authorizationHeader, scrub } from "./secrets.js";

export interface GitRunOptions {
  /** Installation token, sent as an HTTP header for this one command only. */
  token?: string;
  /** Per-command config, passed like the token: never written to any config file. */
  config?: Record<string, string>;
  /** Extra environment (author identity, …) on top of the minimal one. */
  env?: Record<string, string>;
  /** Kill git after this long without output. */
  timeoutMs?: number;
  /**
   * The one transport this command may use (the configured GitHub's). Without it no
   * transport is allowed at all: local commands have no business on the network.
   */
  remoteProtocol?: RemoteProtocol;
  /**
   * The repository named outright rather than found from cwd. A worktree's `.git` file
   * and its admin dir's `commondir` are the worker's to rewrite; git honours neither when
   * GIT_DIR and GIT_COMMON_DIR are set.
   */
  repo?: GitRepo;
}

export type RemoteProtocol = "http" | "https";

export interface GitRepo {
  gitDir: string;
  /** The mirror, for a worktree's admin dir. */
  commonDir?: string;
  workTree?: string;
}

export const DEFAULT_GIT_TIMEOUT_MS = 10 * 60_000;

/**
 * Operator settings Overseer's git still needs from its own environment: where programs
 * are, temporary files, proxies and certificate authorities for a GitHub Enterprise
 * host. Nothing else of the process environment reaches git (no HOME, so no ~/.netrc, no
 * XDG config, no credential store).
 */
const PASSED_THROUGH = [
  "PATH",
  "TMPDIR",
  "http_proxy",
  "https_proxy",
  "no_proxy",
  "all_proxy",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "ALL_PROXY",
  "GIT_SSL_CAINFO",
  "GIT_SSL_CAPATH",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
];

/**
 * Set on every command, above any repository config (command-line scope wins): whatever a
 * worker wrote into a config file, no program of its choosing runs in Overseer's git,
 * nothing prompts, nothing runs in the background afterwards, and submodules (a nested
 * repository's own config) are never entered.
 */
const FORCED_CONFIG: Record<string, string> = {
  "core.hooksPath": "/dev/null",
  "core.fsmonitor": "false",
  "core.askPass": "",
  "credential.helper": "",
  "protocol.allow": "never",
  "submodule.recurse": "false",
  "fetch.recurseSubmodules": "false",
  "push.recurseSubmodules": "no",
  "diff.ignoreSubmodules": "all",
  "status.submoduleSummary": "false",
  "gc.auto": "0",
  "maintenance.auto": "false",
  "commit.gpgSign": "false",
  "tag.gpgSign": "false",
};

/** simple-git guards against these keys and variables; ours only ever turn things off. */
const OUR_OWN: NonNullable<SimpleGitOptions["unsafe"]> = {
  allowUnsafeConfigEnvCount: true,
  allowUnsafeConfigPaths: true,
  allowUnsafeHooksPath: true,
  allowUnsafeFsMonitor: true,
  allowUnsafeAskPass: true,
  allowUnsafeCredentialHelper: true,
  allowUnsafeProtocolOverride: true,
};

function spawnEnvironment(cwd: string, opts: GitRunOptions): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of PASSED_THROUGH) {
    const value = process.env[key];
    if (value !== undefined && value !== "") env[key] = value;
  }
  if (!env.PATH) env.PATH = "/usr/local/bin:/usr/bin:/bin";

  // GIT_CONFIG_* rather than `-c`: argv is readable by every user on the host (ps), the
  // environment only by the same user. (simple-git's own DEBUG=simple-git* tracing prints
  // spawn options, environment included: keep it off wherever a token is in use.)
  const config: Record<string, string> = { ...FORCED_CONFIG, ...opts.config };
  if (opts.remoteProtocol) config[`protocol.${opts.remoteProtocol}.allow`] = "always";
  if (opts.token) config["http.extraHeader"] = authorizationHeader(opts.token);
  let index = 0;
  for (const [key, value] of Object.entries(config)) {
    env[`GIT_CONFIG_KEY_${index}`] = key;
    env[`GIT_CONFIG_VALUE_${index}`] = value;
    index += 1;
  }
  env.GIT_CONFIG_COUNT = String(index);

  if (opts.repo) {
    env.GIT_DIR = opts.repo.gitDir;
    if (opts.repo.commonDir) env.GIT_COMMON_DIR = opts.repo.commonDir;
    if (opts.repo.workTree) env.GIT_WORK_TREE = opts.repo.workTree;
  }

  Object.assign(env, {
    // No system or global config, no system attributes: only the repository's own config,
    // which Overseer wrote and checks after every run.
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_ATTR_NOSYSTEM: "1",
    // refs/replace could make Overseer see other objects than the ones it pushes.
    GIT_NO_REPLACE_OBJECTS: "1",
    HOME: "/nonexistent",
    LC_ALL: "C",
    LANGUAGE: "C",
    GIT_TERMINAL_PROMPT: "0",
    GCM_INTERACTIVE: "never",
    // Our own reads (status) must never contend with a worker's git for index.lock.
    GIT_OPTIONAL_LOCKS: "0",
    // Only `cwd` itself may be the repository: a broken worktree must fail, not resolve to
    // whatever repository happens to enclose OVERSEER_HOME.
    GIT_CEILING_DIRECTORIES: path.dirname(cwd),
    ...opts.env,
  });
  return env;
}

/** simple-git treats "non-zero exit with empty stderr" as success; we never do. */
function exitCodeErrors(
  error: Buffer | Error | undefined,
  result: { exitCode: number; stdOut: Buffer[]; stdErr: Buffer[] },
): Buffer | Error | undefined {
  if (error) return error;
  if (result.exitCode === 0) return undefined;
  const text =
    Buffer.concat(result.stdErr).toString("utf8") || Buffer.concat(result.stdOut).toString("utf8");
  return Object.assign(new GitError(undefined, text), { exitCode: result.exitCode });
}

/** Runs `git <args>` in `cwd` and returns stdout. Failures come back scrubbed of the token. */
export async function git(cwd: string, args: string[], opts: GitRunOptions = {}): Promise<string> {
  const env = spawnEnvironment(cwd, opts);
  const client = simpleGit({
    baseDir: cwd,
    maxConcurrentProcesses: 1,
    trimmed: false,
    unsafe: OUR_OWN,
    errors: exitCodeErrors,
    // Done at `close`, when stdout has ended. simple-git's default also finishes 50 ms after
    // `exit`, which on a loaded host can be before the output arrived: a commit's type read
    // back as "". The timeout still ends a process whose output never closes.
    completion: { onClose: true, onExit: false },
    timeout: { block: opts.timeoutMs ?? DEFAULT_GIT_TIMEOUT_MS },
  })
    .env(env)
    .outputHandler((_command, stdout) => {
      // simple-git adds a fixed 50 ms to every process that printed nothing (its completion
      // detection waits for late output). Most of ours are silent by design (fetch -q,
      // update-ref, worktree add -q), so announce an empty chunk once its listeners exist.
      setImmediate(() => stdout.emit("data", Buffer.alloc(0)));
    });
  try {
    return await client.raw(args);
  } catch (error) {
    throw toCommandError(error, args, opts.token);
  }
}

function toCommandError(error: unknown, args: string[], token?: string): GitCommandError {
  const exitCode =
    typeof (error as { exitCode?: unknown })?.exitCode === "number"
      ? (error as { exitCode: number }).exitCode
      : null;
  const raw = error instanceof Error ? error.message : String(error);
  const stderr = scrub(raw.trim(), token);
  const command = args.map((arg) => scrub(arg, token));
  const summary = stderr.split("\n").slice(0, 6).join("\n");
  const code = exitCode === null ? "" : ` (exit ${exitCode})`;
  // No `cause`: loggers serialise it, and it holds the unscrubbed original.
  return new GitCommandError(
    `git ${command.join(" ")} failed${code}: ${summary}`,
    command,
    exitCode,
    stderr,
  );
}

/** Exit status 1 is how several plumbing commands say "no" (is-ancestor, diff --quiet). */
export async function gitSucceeds(cwd: string, args: string[], opts?: GitRunOptions) {
  try {
    await git(cwd, args, opts);
    return true;
  } catch (error) {
    if (error instanceof GitCommandError && error.exitCode === 1) return false;
    throw error;
  }
}
