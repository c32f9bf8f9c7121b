import { describe, expect, it } from "vitest";
import { parseWorkerProfiles, type SandboxPolicy } from "../../src/config/workers.js";
import {
  assertSandboxWorks,
  expandHome,
  type HostFacts,
  type HostKind,
  policyPaths,
  type SandboxLayout,
  sandboxArgs,
  sandboxHome,
} from "../../src/runner/sandbox.js";

const HOME = "/home/runner";
const OVERSEER_HOME = "/srv/overseer";
const MIRROR = `${OVERSEER_HOME}/mirrors/acme/web.git`;
const WORKTREE = `${OVERSEER_HOME}/worktrees/acme/web/12`;
const KEY = "/etc/overseer/app.pem";
const DOTENV = "/opt/overseer/.env";

/** A host with merged /usr (/bin → usr/bin) and whatever files a test names. */
function host(extra: Record<string, HostKind> = {}, real: Record<string, string> = {}): HostFacts {
  const kinds: Record<string, HostKind> = {
    "/usr": "directory",
    "/etc": "directory",
    "/bin": "symlink",
    "/sbin": "symlink",
    "/lib": "symlink",
    "/lib64": "symlink",
    "/etc/resolv.conf": "file",
    "/etc/shadow": "file",
    "/etc/ssh": "directory",
    [KEY]: "file",
    [DOTENV]: "file",
    [OVERSEER_HOME]: "directory",
    ...extra,
  };
  return {
    kind: (file) => kinds[file] ?? "missing",
    readlink: (file) => `usr${file}`,
    realpath: (file) => real[file] ?? file,
    root: true,
  };
}

function layout(policy: Partial<SandboxPolicy> = {}, argv: string[] = ["agent"]): SandboxLayout {
  return {
    policy: { writable: [], readable: [], network: true, ...policy },
    home: HOME,
    worktree: WORKTREE,
    git: {
      mirror: MIRROR,
      adminDir: `${MIRROR}/worktrees/12`,
      objects: `${MIRROR}/objects`,
      refs: {
        source: `${OVERSEER_HOME}/runs/7/sandbox/refs`,
        target: `${MIRROR}/refs/heads/overseer`,
      },
      logs: {
        source: `${OVERSEER_HOME}/runs/7/sandbox/logs`,
        target: `${MIRROR}/logs/refs/heads/overseer`,
      },
      branch: "overseer/12-fix",
      startSha: "a".repeat(40),
    },
    runFiles: `${OVERSEER_HOME}/runs/7/worker`,
    overseerHome: OVERSEER_HOME,
    secretFiles: [KEY, DOTENV],
    argv,
  };
}

/** The bwrap operations as [flag, ...operands], for looking up order and presence. */
function operations(args: string[]): string[][] {
  const arity: Record<string, number> = {
    "--ro-bind": 2,
    "--ro-bind-try": 2,
    "--bind": 2,
    "--bind-try": 2,
    "--symlink": 2,
    "--tmpfs": 1,
    "--proc": 1,
    "--dev": 1,
    "--dir": 1,
    "--chdir": 1,
    "--cap-drop": 1,
  };
  const ops: string[][] = [];
  for (let i = 0; i < args.length; ) {
    const flag = args[i] as string;
    const n = arity[flag] ?? 0;
    ops.push(args.slice(i, i + 1 + n));
    i += 1 + n;
  }
  return ops;
}

function indexOf(ops: string[][], ...op: string[]): number {
  return ops.findIndex((candidate) => candidate.join("\0") === op.join("\0"));
}

describe("the sandbox's bubblewrap arguments", () => {
  it("new PID and IPC namespaces, no capabilities, its own /proc, dies with the runner", () => {
    const args = sandboxArgs(layout(), host());
    const ops = operations(args);
    for (const flag of ["--die-with-parent", "--unshare-pid", "--unshare-ipc"]) {
      expect(args).toContain(flag);
    }
    expect(indexOf(ops, "--cap-drop", "ALL")).toBeGreaterThanOrEqual(0);
    expect(indexOf(ops, "--proc", "/proc")).toBeGreaterThanOrEqual(0);
    expect(indexOf(ops, "--dev", "/dev")).toBeGreaterThanOrEqual(0);
    expect(args).not.toContain("--unshare-net");
    expect(args.slice(-3)).toEqual(["--chdir", WORKTREE, "--"]);
    // Never the host's root, never anything writable but what is listed below.
    expect(indexOf(ops, "--bind", "/", "/")).toBe(-1);
    expect(indexOf(ops, "--ro-bind", "/", "/")).toBe(-1);
    const writable = ops.filter((op) => op[0] === "--bind" || op[0] === "--bind-try");
    expect(writable.map((op) => op[2])).toEqual([
      `${OVERSEER_HOME}/runs/7/worker`,
      `${MIRROR}/worktrees/12`,
      `${MIRROR}/objects`,
      `${MIRROR}/refs/heads/overseer`,
      `${MIRROR}/logs/refs/heads/overseer`,
      WORKTREE,
    ]);
  });

  it("network: false unshares the network", () => {
    expect(sandboxArgs(layout({ network: false }), host())).toContain("--unshare-net");
  });

  it("binds the system read-only and recreates merged-/usr symlinks", () => {
    const ops = operations(sandboxArgs(layout(), host()));
    expect(indexOf(ops, "--ro-bind", "/usr", "/usr")).toBeGreaterThanOrEqual(0);
    expect(indexOf(ops, "--ro-bind", "/etc", "/etc")).toBeGreaterThanOrEqual(0);
    expect(indexOf(ops, "--symlink", "usr/bin", "/bin")).toBeGreaterThanOrEqual(0);
    // Absent on this host: not mentioned at all.
    expect(ops.some((op) => op.includes("/lib32"))).toBe(false);
  });

  it("gives a private /tmp and HOME, and `~/…` writable paths on top of the private HOME", () => {
    const ops = operations(
      sandboxArgs(layout({ writable: ["~/.claude"], readable: ["/home"] }), host()),
    );
    const tmp = indexOf(ops, "--tmpfs", "/tmp");
    const home = indexOf(ops, "--tmpfs", HOME);
    const claude = indexOf(ops, "--bind-try", `${HOME}/.claude`, `${HOME}/.claude`);
    const broad = indexOf(ops, "--ro-bind-try", "/home", "/home");
    expect(tmp).toBeGreaterThanOrEqual(0);
    expect(claude).toBeGreaterThan(home);
    // A broad readable path goes first, so the private HOME covers the real one inside it.
    expect(broad).toBeGreaterThanOrEqual(0);
    expect(broad).toBeLessThan(home);
  });

  it("a readable path under /tmp that holds the runner's home still leaves the private HOME on top", () => {
    const home = "/tmp/base/runner-home";
    const ops = operations(sandboxArgs({ ...layout({ readable: ["/tmp/base"] }), home }, host()));
    const tmp = indexOf(ops, "--tmpfs", "/tmp");
    const broad = indexOf(ops, "--ro-bind-try", "/tmp/base", "/tmp/base");
    const privateHome = indexOf(ops, "--tmpfs", home);
    expect(tmp).toBeLessThan(broad);
    expect(broad).toBeLessThan(privateHome);
  });

  it("masks OVERSEER_HOME, the App's key, .env and the host's secrets inside what it binds", () => {
    const ops = operations(
      sandboxArgs(layout({ readable: ["/srv", "/opt/overseer", "/etc/overseer"] }), host()),
    );
    const readable = indexOf(ops, "--ro-bind-try", "/srv", "/srv");
    const homeMask = indexOf(ops, "--tmpfs", OVERSEER_HOME);
    expect(homeMask).toBeGreaterThan(readable);
    expect(indexOf(ops, "--ro-bind", "/dev/null", KEY)).toBeGreaterThan(readable);
    expect(indexOf(ops, "--ro-bind", "/dev/null", DOTENV)).toBeGreaterThan(readable);
    expect(indexOf(ops, "--ro-bind", "/dev/null", "/etc/shadow")).toBeGreaterThan(readable);
    expect(indexOf(ops, "--tmpfs", "/etc/ssh")).toBeGreaterThan(readable);
    // What the worker needs of OVERSEER_HOME comes back on top of the mask.
    expect(indexOf(ops, "--bind", WORKTREE, WORKTREE)).toBeGreaterThan(homeMask);
    expect(indexOf(ops, "--ro-bind", MIRROR, MIRROR)).toBeGreaterThan(homeMask);
  });

  it("masks a secret reached through a symlink under its real path too", () => {
    const ops = operations(
      sandboxArgs(
        layout({ readable: ["/data"] }),
        host(
          { "/data": "directory", "/data/keys/app.pem": "file" },
          { [KEY]: "/data/keys/app.pem" },
        ),
      ),
    );
    expect(indexOf(ops, "--ro-bind", "/dev/null", "/data/keys/app.pem")).toBeGreaterThan(0);
  });

  it("shows of the mirror only what a commit needs, and hides other worktrees' admin dirs", () => {
    const ops = operations(sandboxArgs(layout(), host()));
    const mirror = indexOf(ops, "--ro-bind", MIRROR, MIRROR);
    const others = indexOf(ops, "--tmpfs", `${MIRROR}/worktrees`);
    const admin = indexOf(ops, "--bind", `${MIRROR}/worktrees/12`, `${MIRROR}/worktrees/12`);
    const commondir = `${MIRROR}/worktrees/12/commondir`;
    const gitdir = `${MIRROR}/worktrees/12/gitdir`;
    expect(mirror).toBeLessThan(others);
    expect(others).toBeLessThan(admin);
    expect(indexOf(ops, "--ro-bind", commondir, commondir)).toBeGreaterThan(admin);
    expect(indexOf(ops, "--ro-bind", gitdir, gitdir)).toBeGreaterThan(admin);
    expect(
      indexOf(
        ops,
        "--bind",
        `${OVERSEER_HOME}/runs/7/sandbox/refs`,
        `${MIRROR}/refs/heads/overseer`,
      ),
    ).toBeGreaterThan(mirror);
  });

  it("makes the files the command names readable, not directories, never a secret", () => {
    const facts = host({ "/opt/tools/agent.sh": "file", "/opt/tools": "directory" });
    const ops = operations(
      sandboxArgs(layout({}, ["/opt/tools/agent.sh", "/opt/tools", `${WORKTREE}/x`]), facts),
    );
    expect(indexOf(ops, "--ro-bind", "/opt/tools/agent.sh", "/opt/tools/agent.sh")).toBeGreaterThan(
      0,
    );
    expect(ops.some((op) => op[0] === "--ro-bind" && op[1] === "/opt/tools")).toBe(false);
    expect(() => sandboxArgs(layout({}, ["cat", KEY]), host())).toThrow(/holds Overseer's secrets/);
  });

  it("refuses policy paths that would undo the layout", () => {
    const where = { home: HOME, overseerHome: OVERSEER_HOME, secretFiles: [KEY] };
    expect(() => policyPaths({ writable: ["/"], readable: [], network: true }, where)).toThrow(
      /whole file system/,
    );
    expect(() =>
      policyPaths({ writable: [], readable: [`${OVERSEER_HOME}/mirrors`], network: true }, where),
    ).toThrow(/inside OVERSEER_HOME/);
    expect(() => policyPaths({ writable: [KEY], readable: [], network: true }, where)).toThrow(
      /secrets/,
    );
    expect(
      policyPaths({ writable: ["~/.claude"], readable: ["/srv"], network: true }, where),
    ).toEqual({ readable: ["/srv"], writable: [`${HOME}/.claude`] });
  });

  it("puts the private HOME at the runner's own path, or at a fallback when that is unusable", () => {
    expect(sandboxHome("/home/runner/")).toBe("/home/runner");
    expect(sandboxHome("/")).toBe("/tmp/home");
    expect(sandboxHome(undefined)).toBe("/tmp/home");
    expect(expandHome("~", HOME)).toBe(HOME);
    expect(expandHome("~/.codex", HOME)).toBe(`${HOME}/.codex`);
    expect(expandHome("/opt/x/", HOME)).toBe("/opt/x");
    expect(() => expandHome("~/.claude", undefined)).toThrow(/needs HOME/);
  });
});

describe("checking sandboxed profiles at start-up", () => {
  it("refuses a command that names one of Overseer's secret files, before trying bubblewrap", async () => {
    // A real file, so that the check sees it as the command's file.
    const named = parseWorkerProfiles(
      "profiles:\n  a:\n    command: [cat, /etc/hostname]\n",
      "test",
    );
    await expect(
      assertSandboxWorks(named, {
        home: HOME,
        overseerHome: OVERSEER_HOME,
        secretFiles: ["/etc/hostname"],
      }),
    ).rejects.toThrow(
      /worker profile a: the worker's command names \/etc\/hostname, which holds Overseer's secrets/,
    );
  });

  it("refuses a writable path inside OVERSEER_HOME", async () => {
    const workers = parseWorkerProfiles(
      `profiles:\n  a:\n    command: [agent]\n    sandbox:\n      writable: [${OVERSEER_HOME}/cache]\n`,
      "test",
    );
    await expect(
      assertSandboxWorks(workers, { home: HOME, overseerHome: OVERSEER_HOME, secretFiles: [] }),
    ).rejects.toThrow(/worker profile a: sandbox\.writable: .*inside OVERSEER_HOME/);
  });
});

describe("the sandbox key of a worker profile", () => {
  const parse = (sandbox: string) =>
    parseWorkerProfiles(`profiles:\n  a:\n    command: [agent]\n${sandbox}`, "test").profiles.get(
      "a",
    )?.sandbox;

  it("is on by default, off only when the operator says false, or a map", () => {
    expect(parse("")).toEqual({ writable: [], readable: [], network: true });
    expect(parse("    sandbox: true\n")).toEqual({ writable: [], readable: [], network: true });
    expect(parse("    sandbox: false\n")).toBeNull();
    expect(
      parse("    sandbox:\n      writable: [~/.claude, ~/.claude]\n      network: false\n"),
    ).toEqual({ writable: ["~/.claude"], readable: [], network: false });
  });

  it.each([
    ["    sandbox: yes\n", /profiles\.a\.sandbox: expected true, false or a mapping/],
    [
      "    sandbox: {writeable: [/x]}\n",
      /sandbox\.writeable: unknown key \(expected one of: writable, readable, network\)/,
    ],
    [
      "    sandbox: {writable: [relative/x]}\n",
      /sandbox\.writable\[0\]: expected an absolute path/,
    ],
    ["    sandbox: {readable: /x}\n", /sandbox\.readable: expected a list of paths/],
    ["    sandbox: {readable: [/a/../b]}\n", /"\.\." is not allowed/],
    ["    sandbox: {network: 1}\n", /sandbox\.network: expected true or false, got 1/],
  ])("refuses %j with one line naming the key", (sandbox, message) => {
    expect(() => parse(sandbox)).toThrow(message);
  });
});
