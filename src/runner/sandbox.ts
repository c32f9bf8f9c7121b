import { spawn } from "node:child_process";
import { lstatSync, readlinkSync, realpathSync } from "node:fs";
import path from "node:path";
import type { SandboxPolicy, WorkerProfile, WorkerProfiles } from "../config/workers.js";
import { ConfigError } from "../errors.js";
import type { WorkerGitView } from "../workspace/index.js";

/**
 * The bubblewrap sandbox every worker runs in unless its profile says `sandbox: false`.
 *
 * Inside: its own PID, IPC and mount namespaces and /proc (the runner's environment in
 * /proc/<pid>/environ does not exist there), no capabilities, the system read-only, a
 * private /tmp and HOME, the worktree writable and of the mirror only what a commit needs
 * (see workspace/worker-view.ts). OVERSEER_HOME beyond that, the App's key, the app
 * folder's `.env` and the runner user's home are not there at all. bwrap's own init is
 * PID 1 and ends when the worker does, which ends the namespace: a process that called
 * setsid() dies with it. --die-with-parent takes the sandbox down with the runner.
 */

export const BWRAP = "bwrap";

/** What the system is: read-only, and where programs and their libraries live. */
const SYSTEM_PATHS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"];

/** Secrets of the host itself that /etc would otherwise show a root runner's worker. */
const HOST_SECRETS = [
  "/etc/shadow",
  "/etc/shadow-",
  "/etc/gshadow",
  "/etc/gshadow-",
  "/etc/sudoers",
  "/etc/sudoers.d",
  "/etc/ssh",
];

/** Where the worker's private HOME goes when the runner's own is unusable for it. */
const FALLBACK_HOME = "/tmp/home";

export interface SandboxLayout {
  policy: SandboxPolicy;
  /** The runner user's HOME: what `~` means in the policy, and where the private HOME is mounted. */
  home: string | undefined;
  worktree: string;
  git: WorkerGitView;
  /** The run's prompt and summary files, writable. */
  runFiles: string;
  /** OVERSEER_HOME: nothing of it is visible except what the layout binds. */
  overseerHome: string;
  /** Files that must stay invisible wherever a bound directory holds them (the key, `.env`). */
  secretFiles: readonly string[];
  /** The expanded argv: absolute paths in it are made readable. */
  argv: readonly string[];
}

export type HostKind = "directory" | "file" | "symlink" | "missing";

/** The few facts about the host the arguments depend on; real ones from `hostFacts()`. */
export interface HostFacts {
  kind(file: string): HostKind;
  /** The symlink's target as written. */
  readlink(file: string): string;
  realpath(file: string): string;
  /** Whether this process runs as root (bwrap then keeps capabilities unless dropped). */
  root: boolean;
}

export function hostFacts(): HostFacts {
  return {
    kind(file) {
      try {
        const info = lstatSync(file);
        if (info.isSymbolicLink()) return "symlink";
        return info.isDirectory() ? "directory" : "file";
      } catch {
        return "missing";
      }
    },
    readlink(file) {
      return readlinkSync(file);
    },
    realpath(file) {
      try {
        return realpathSync.native(file);
      } catch {
        return file;
      }
    },
    root: process.getuid?.() === 0,
  };
}

/** The worker's HOME inside the sandbox: the runner's path (so `~/x` binds line up), fresh. */
export function sandboxHome(home: string | undefined): string {
  return home && path.isAbsolute(home) && path.resolve(home) !== "/"
    ? path.resolve(home)
    : FALLBACK_HOME;
}

/** `~` and `~/x` against the runner's home; absolute paths as they are. */
export function expandHome(entry: string, home: string | undefined): string {
  if (entry !== "~" && !entry.startsWith("~/")) return path.resolve(entry);
  if (!home || !path.isAbsolute(home)) {
    throw new ConfigError(`sandbox path ${entry} needs HOME, which is not set for the runner`);
  }
  return path.resolve(home, `.${entry.slice(1)}`);
}

function isWithin(child: string, parent: string): boolean {
  const relative = path.relative(parent, child);
  return relative === "" || (!relative.startsWith("..") && !path.isAbsolute(relative));
}

/**
 * Policy paths, expanded, after refusing the ones that would undo the layout: `/` (it would
 * replace the whole view), and paths inside OVERSEER_HOME or a secret file (they would be
 * masked away, or expose what must stay hidden).
 */
export function policyPaths(
  policy: SandboxPolicy,
  where: Pick<SandboxLayout, "home" | "overseerHome" | "secretFiles">,
): { readable: string[]; writable: string[] } {
  const expand = (entries: readonly string[], key: string) =>
    entries.map((entry) => {
      const file = expandHome(entry, where.home);
      const refuse = (why: string) => {
        throw new ConfigError(`sandbox.${key}: ${entry}: ${why}`);
      };
      if (file === "/") refuse("the whole file system cannot be bound; name the directories");
      if (isWithin(file, where.overseerHome)) {
        refuse(`inside OVERSEER_HOME (${where.overseerHome}), which workers never see`);
      }
      if (where.secretFiles.some((secret) => isWithin(file, secret))) {
        refuse("holds Overseer's secrets");
      }
      return file;
    });
  return {
    readable: expand(policy.readable, "readable"),
    writable: expand(policy.writable, "writable"),
  };
}

/** bwrap's arguments, up to and including `--`; the worker's argv follows them. */
export function sandboxArgs(layout: SandboxLayout, facts: HostFacts): string[] {
  const home = sandboxHome(layout.home);
  const { readable, writable } = policyPaths(layout.policy, layout);
  // Mount order decides what covers what: a policy path inside /tmp goes on top of the
  // private /tmp, one inside the private HOME on top of that, and any other one first, so
  // that a broad one (/home, or /tmp/x holding the runner's home) never covers the private
  // HOME with the runner's real one.
  const layer = (file: string) => (isWithin(file, home) ? 2 : isWithin(file, "/tmp") ? 1 : 0);
  const policyBinds = (wanted: number) => [
    ...readable.filter((file) => layer(file) === wanted).flatMap((f) => ["--ro-bind-try", f, f]),
    ...writable.filter((file) => layer(file) === wanted).flatMap((f) => ["--bind-try", f, f]),
  ];
  const args = [
    "--die-with-parent",
    "--unshare-pid",
    "--unshare-ipc",
    ...(layout.policy.network ? [] : ["--unshare-net"]),
    // As root, bwrap keeps every capability unless told otherwise.
    "--cap-drop",
    "ALL",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    ...systemBinds(facts),
    ...policyBinds(0),
    "--tmpfs",
    "/tmp",
    ...policyBinds(1),
    "--tmpfs",
    home,
    ...policyBinds(2),
    ...masks(layout, [...SYSTEM_PATHS, ...readable, ...writable], facts),
    ...commandPaths(layout, facts).flatMap((file) => ["--ro-bind", file, file]),
    "--bind",
    layout.runFiles,
    layout.runFiles,
    ...gitBinds(layout.git),
    "--bind",
    layout.worktree,
    layout.worktree,
    "--chdir",
    layout.worktree,
    "--",
  ];
  return args;
}

function systemBinds(facts: HostFacts): string[] {
  const args: string[] = [];
  for (const dir of SYSTEM_PATHS) {
    const kind = facts.kind(dir);
    if (kind === "symlink") args.push("--symlink", facts.readlink(dir), dir);
    else if (kind === "directory") args.push("--ro-bind", dir, dir);
  }
  // A resolv.conf managed elsewhere (systemd-resolved's /run/…) must come along for DNS.
  const resolver = facts.realpath("/etc/resolv.conf");
  if (!isWithin(resolver, "/etc") && facts.kind(resolver) === "file") {
    args.push("--ro-bind", resolver, resolver);
  }
  return args;
}

/**
 * Hidden paths that a bound directory would otherwise show: OVERSEER_HOME (the database
 * password, other worktrees, run logs), the App's key and `.env`, the host's own secrets.
 * A directory becomes an empty tmpfs, a file /dev/null.
 */
function masks(layout: SandboxLayout, bound: readonly string[], facts: HostFacts): string[] {
  const hidden = new Set<string>();
  for (const file of [layout.overseerHome, ...layout.secretFiles, ...HOST_SECRETS]) {
    hidden.add(path.resolve(file));
    hidden.add(facts.realpath(file));
  }
  const args: string[] = [];
  for (const file of hidden) {
    if (!bound.some((dir) => isWithin(file, dir) || isWithin(facts.realpath(file), dir))) continue;
    const kind = facts.kind(file);
    if (kind === "directory") args.push("--tmpfs", file);
    else if (kind === "file") args.push("--ro-bind", "/dev/null", file);
  }
  return args;
}

/**
 * Files the command names by absolute path (a script, a config file), readable. Only
 * files: a directory named in argv (`{worktree}`, say) shows nothing more. Anything under
 * OVERSEER_HOME is left to the layout's own binds; a secret file is refused outright.
 */
function commandPaths(
  layout: Pick<SandboxLayout, "argv" | "overseerHome" | "secretFiles">,
  facts: HostFacts,
): string[] {
  const files = new Set<string>();
  for (const arg of layout.argv) {
    if (!path.isAbsolute(arg) || arg.includes("\n")) continue;
    const file = path.resolve(arg);
    if (isWithin(file, layout.overseerHome)) continue;
    const real = facts.realpath(file);
    if (facts.kind(real) !== "file") continue;
    const secret = layout.secretFiles.some(
      (hidden) => file === path.resolve(hidden) || real === facts.realpath(hidden),
    );
    if (secret) {
      throw new ConfigError(`the worker's command names ${file}, which holds Overseer's secrets`);
    }
    files.add(file);
  }
  return [...files];
}

function gitBinds(view: WorkerGitView): string[] {
  return [
    "--ro-bind",
    view.mirror,
    view.mirror,
    // Other tasks' admin dirs (their HEAD, their index) are not this worker's business.
    "--tmpfs",
    path.join(view.mirror, "worktrees"),
    "--bind",
    view.adminDir,
    view.adminDir,
    "--ro-bind",
    path.join(view.adminDir, "commondir"),
    path.join(view.adminDir, "commondir"),
    "--ro-bind",
    path.join(view.adminDir, "gitdir"),
    path.join(view.adminDir, "gitdir"),
    "--bind",
    view.objects,
    view.objects,
    "--bind",
    view.refs.source,
    view.refs.target,
    "--bind",
    view.logs.source,
    view.logs.target,
  ];
}

/** Profiles whose workers run sandboxed (the operator's file; the built-in one is not an agent). */
export function sandboxedProfiles(workers: WorkerProfiles): WorkerProfile[] {
  return [...workers.profiles.values()].filter((profile) => profile.sandbox !== null);
}

/** Profiles the operator explicitly let run unconfined. */
export function unsandboxedProfiles(workers: WorkerProfiles): WorkerProfile[] {
  if (workers.source === "built-in") return [];
  return [...workers.profiles.values()].filter((profile) => profile.sandbox === null);
}

/**
 * At start-up: are the profiles' sandbox paths usable, and can bubblewrap make the
 * namespaces they need, here? A sandbox that cannot start is a configuration error, never
 * a silent downgrade to none.
 */
export async function assertSandboxWorks(
  workers: WorkerProfiles,
  where: Pick<SandboxLayout, "home" | "overseerHome" | "secretFiles">,
): Promise<void> {
  const profiles = sandboxedProfiles(workers);
  if (profiles.length === 0) return;
  for (const profile of profiles) {
    try {
      if (profile.sandbox) policyPaths(profile.sandbox, where);
      // The command's fixed paths; placeholders only ever expand to Overseer's own files.
      const fixed = profile.command.filter((arg) => !arg.includes("{"));
      commandPaths({ ...where, argv: fixed }, hostFacts());
    } catch (error) {
      throw new ConfigError(`worker profile ${profile.name}: ${(error as Error).message}`);
    }
  }
  const offline = profiles.some((profile) => profile.sandbox?.network === false);
  const cause = await probe(offline);
  if (cause === null) return;
  const names = profiles.map((profile) => profile.name).join(", ");
  throw new ConfigError(
    `worker profile${profiles.length > 1 ? "s" : ""} ${names} run${profiles.length > 1 ? "" : "s"} in a sandbox, but bubblewrap cannot start one: ${cause}. Fix: install bubblewrap (apt-get install bubblewrap) and let it create namespaces (unprivileged user namespaces, or CAP_SYS_ADMIN and an unshare-permitting seccomp profile in a container), or set "sandbox: false" on the profile to run it unconfined`,
  );
}

/** Null when a sandbox like a worker's starts and exits 0; otherwise why not, in one line. */
function probe(offline: boolean): Promise<string | null> {
  const args = [
    "--die-with-parent",
    "--unshare-pid",
    "--unshare-ipc",
    ...(offline ? ["--unshare-net"] : []),
    "--cap-drop",
    "ALL",
    "--ro-bind",
    "/",
    "/",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp",
    "--",
    "true",
  ];
  return new Promise((resolve) => {
    const child = spawn(BWRAP, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8");
    });
    child.once("error", (error: NodeJS.ErrnoException) =>
      resolve(
        error.code === "ENOENT"
          ? `${BWRAP} is not installed (not found on PATH)`
          : `${BWRAP} could not be run: ${error.message}`,
      ),
    );
    child.once("close", (code, signal) => {
      if (code === 0) return resolve(null);
      const line = stderr.trim().split("\n")[0]?.trim();
      resolve(line || `${BWRAP} exited with ${code ?? signal}`);
    });
  });
}
