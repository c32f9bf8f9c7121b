import path from "node:path";
import { GitError, type SimpleGitOptions, simpleGit } from "simple-git";
import { GitCommandError } from "./errors.js";
import { authorizationHeader, scrub } from "./secrets.js";

export interface GitRunOptions {
  /** Installation token, sent as an HTTP header for this one command only. */
  token?: string;
  /** Per-command config, passed like the token: never written to any config file. */
  config?: Record<string, string>;
  /** Extra environment (author identity, …) on top of the sanitised inherited one. */
  env?: Record<string, string>;
  /** Kill git after this long without output. */
  timeoutMs?: number;
}

export const DEFAULT_GIT_TIMEOUT_MS = 10 * 60_000;

/**
 * Inherited variables that would make our commands act on another repository, prompt a
 * human, or open an editor/pager. Overseer never wants any of that.
 */
const STRIPPED_ENV = [
  "GIT_DIR",
  "GIT_WORK_TREE",
  "GIT_INDEX_FILE",
  "GIT_COMMON_DIR",
  "GIT_OBJECT_DIRECTORY",
  "GIT_ALTERNATE_OBJECT_DIRECTORIES",
  "GIT_NAMESPACE",
  "GIT_PREFIX",
  "GIT_ASKPASS",
  "SSH_ASKPASS",
  "EDITOR",
  "VISUAL",
  "GIT_EDITOR",
  "GIT_SEQUENCE_EDITOR",
  "PAGER",
  "GIT_PAGER",
  "GIT_EXTERNAL_DIFF",
];

/**
 * simple-git refuses some variables unless told they are intended. Ours are, and so is
 * whatever the operator put in the process environment: the guard exists for untrusted
 * input, and none reaches the environment.
 */
const INHERITED_TRUST: Record<string, keyof NonNullable<SimpleGitOptions["unsafe"]>> = {
  GIT_CONFIG_GLOBAL: "allowUnsafeConfigPaths",
  GIT_CONFIG_SYSTEM: "allowUnsafeConfigPaths",
  GIT_CONFIG: "allowUnsafeConfigPaths",
  GIT_EXEC_PATH: "allowUnsafeConfigPaths",
  PREFIX: "allowUnsafeConfigPaths",
  GIT_SSH: "allowUnsafeSshCommand",
  GIT_SSH_COMMAND: "allowUnsafeSshCommand",
  GIT_PROXY_COMMAND: "allowUnsafeGitProxy",
  GIT_TEMPLATE_DIR: "allowUnsafeTemplateDir",
};

interface Spawn {
  env: Record<string, string>;
  unsafe: NonNullable<SimpleGitOptions["unsafe"]>;
}

function spawnEnvironment(cwd: string, opts: GitRunOptions): Spawn {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !STRIPPED_ENV.includes(key)) env[key] = value;
  }
  const unsafe: Spawn["unsafe"] = {};
  for (const [key, flag] of Object.entries(INHERITED_TRUST)) if (key in env) unsafe[flag] = true;

  // GIT_CONFIG_* rather than `-c`: argv is readable by every user on the host (ps), the
  // environment only by the same user. (simple-git's own DEBUG=simple-git* tracing prints
  // spawn options, environment included: keep it off wherever a token is in use.)
  const config: Record<string, string> = { ...opts.config };
  if (opts.token) config["http.extraHeader"] = authorizationHeader(opts.token);
  let index = Number.parseInt(env.GIT_CONFIG_COUNT ?? "0", 10) || 0;
  for (const [key, value] of Object.entries(config)) {
    env[`GIT_CONFIG_KEY_${index}`] = key;
    env[`GIT_CONFIG_VALUE_${index}`] = value;
    index += 1;
    if (key.toLowerCase() === "core.hookspath") unsafe.allowUnsafeHooksPath = true;
  }
  if (index > 0) {
    env.GIT_CONFIG_COUNT = String(index);
    unsafe.allowUnsafeConfigEnvCount = true;
  }

  Object.assign(env, {
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
  return { env, unsafe };
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
  const { env, unsafe } = spawnEnvironment(cwd, opts);
  const client = simpleGit({
    baseDir: cwd,
    maxConcurrentProcesses: 1,
    trimmed: false,
    unsafe,
    errors: exitCodeErrors,
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
