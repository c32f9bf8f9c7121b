import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync } from "node:fs";
import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  utimes,
  writeFile,
} from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { branchName } from "../../src/domain/branch.js";
import { withFileLock } from "../../src/workspace/file-lock.js";
import {
  commitAll,
  commitsAheadOfBase,
  ensureMirror,
  ensureWorktree,
  GitCommandError,
  hasUncommittedChanges,
  LockTimeoutError,
  pushBranch,
  RemoteBranchMovedError,
  remoteBranchSha,
  removeWorktree,
  WorkspaceBusyError,
  WorkspaceError,
  type WorkspaceOptions,
  type WorkspaceTask,
} from "../../src/workspace/index.js";
import { type GitServer, startGitServer } from "../support/git-http.js";

const REPO_ROOT = path.resolve(import.meta.dirname, "../..");
const IDENTITY = {
  GIT_AUTHOR_NAME: "Fixture",
  GIT_AUTHOR_EMAIL: "fixture@example.com",
  GIT_COMMITTER_NAME: "Fixture",
  GIT_COMMITTER_EMAIL: "fixture@example.com",
};
const AUTHOR = { name: "Overseer Bot", email: "bot@overseer.test" };

function git(cwd: string, args: string[]): string {
  return execFileSync("git", args, {
    cwd,
    env: { ...process.env, ...IDENTITY },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  }).trim();
}

/** Runs a git command that must fail, and returns what it said. */
function gitFails(cwd: string, args: string[]): string {
  const result = spawnSync("git", args, { cwd, env: { ...process.env, ...IDENTITY } });
  expect(result.status, `expected git ${args.join(" ")} to fail`).not.toBe(0);
  return result.stderr.toString();
}

async function writeFiles(dir: string, files: Record<string, string>) {
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), content);
  }
}

const TOKEN = "ghs_workspacetesttoken";
const REFSPEC = "+refs/heads/*:refs/remotes/origin/*";
const roots: string[] = [];
const servers: GitServer[] = [];
const children: ChildProcess[] = [];

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  await Promise.all(servers.map((server) => server.stop()));
  await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
});

interface LogLine {
  level: string;
  obj: object;
  msg?: string;
}

/**
 * A GitHub stand-in serving `origin` over smart HTTP (origin is its bare repository on
 * disk, for the test's own git), a clone to push from, and an empty OVERSEER_HOME.
 */
async function fixture(files: Record<string, string> = {}) {
  const root = await mkdtemp(path.join(os.tmpdir(), "overseer-ws-"));
  roots.push(root);
  const server = await startGitServer({ tokens: [TOKEN] });
  servers.push(server);
  const seed = path.join(root, "seed");
  const origin = path.join(server.root, "acme", "widgets.git");
  const home = path.join(root, "home");
  git(root, ["init", "--quiet", "-b", "main", seed]);
  await writeFiles(seed, { "README.md": "# widgets\n", "src/app.txt": "v1\n", ...files });
  git(seed, ["add", "--all"]);
  git(seed, ["commit", "--quiet", "-m", "initial"]);
  git(root, ["clone", "--quiet", "--bare", seed, origin]);
  // http-backend refuses pushes unless receive-pack is enabled for the repository.
  git(origin, ["config", "http.receivepack", "true"]);
  git(seed, ["remote", "add", "origin", origin]);
  git(seed, ["fetch", "--quiet", "origin"]);
  const logs: LogLine[] = [];
  const log = {
    info: (obj: object, msg?: string) => logs.push({ level: "info", obj, msg }),
    warn: (obj: object, msg?: string) => logs.push({ level: "warn", obj, msg }),
  };
  const mirror = path.join(home, "mirrors", "acme", "widgets.git");
  return {
    root,
    seed,
    origin,
    cloneUrl: `${server.url}/acme/widgets.git`,
    server,
    home,
    mirror,
    logs,
    opts: <T extends object = object>(extra?: T) =>
      ({ home, log, token: TOKEN, ...extra }) as WorkspaceOptions & T,
    task: (issueNumber: number, extra: Partial<WorkspaceTask> = {}): WorkspaceTask => ({
      repoFullName: "acme/widgets",
      cloneUrl: `${server.url}/acme/widgets.git`,
      issueNumber,
      title: `Task number ${issueNumber}`,
      base: "main",
      ...extra,
    }),
    worktreePath: (issue: number) => path.join(home, "worktrees", "acme", "widgets", String(issue)),
    /** Commits `files` on `branch` (created from `from` if new) and pushes it to origin. */
    async push(branch: string, changes: Record<string, string>, from = "main"): Promise<string> {
      git(seed, ["fetch", "--quiet", "origin"]);
      const exists = git(seed, ["ls-remote", "origin", `refs/heads/${branch}`]) !== "";
      git(seed, ["checkout", "--quiet", "-B", branch, `origin/${exists ? branch : from}`]);
      await writeFiles(seed, changes);
      git(seed, ["add", "--all"]);
      git(seed, ["commit", "--quiet", "-m", `change on ${branch}`]);
      git(seed, ["push", "--quiet", "origin", `HEAD:refs/heads/${branch}`]);
      return git(seed, ["rev-parse", "HEAD"]);
    },
  };
}

const head = (dir: string) => git(dir, ["rev-parse", "HEAD"]);
const currentBranch = (dir: string) => git(dir, ["symbolic-ref", "--short", "HEAD"]);
const registered = (mirror: string) =>
  git(mirror, ["worktree", "list", "--porcelain"])
    .split("\n")
    .filter((line) => line.startsWith("worktree "))
    .map((line) => line.slice("worktree ".length));

/** A pid that certainly belonged to a process and certainly no longer does. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await once(child, "exit");
  return child.pid as number;
}

function sleeper(cwd: string): ChildProcess {
  const child = spawn("sleep", ["60"], { cwd, stdio: "ignore" });
  children.push(child);
  return child;
}

async function kill(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await exited;
}

describe("ensureWorktree", () => {
  it("creates a worktree, and reuses it where a second `git worktree add` fails", async () => {
    const fx = await fixture();
    const first = await ensureWorktree(fx.task(1), fx.opts());
    const mainSha = git(fx.origin, ["rev-parse", "main"]);
    expect(first).toEqual({
      path: fx.worktreePath(1),
      gitDir: path.join(fx.mirror, "worktrees", "1"),
      commonDir: fx.mirror,
      branch: "overseer/1-task-number-1",
      base: "main",
      baseSha: mainSha,
      created: true,
      startedFrom: "base",
    });
    expect(await readFile(path.join(first.path, "src/app.txt"), "utf8")).toBe("v1\n");
    expect(currentBranch(first.path)).toBe("overseer/1-task-number-1");
    expect(head(first.path)).toBe(mainSha);

    expect(
      gitFails(fx.mirror, ["worktree", "add", "-b", "again", first.path, "origin/main"]),
    ).toMatch(/already exists/);
    const second = await ensureWorktree(fx.task(1), fx.opts());
    expect(second).toEqual({ ...first, created: false, startedFrom: "existing-worktree" });

    expect(git(fx.mirror, ["rev-parse", "--is-bare-repository"])).toBe("true");
    expect(git(fx.mirror, ["config", "--get", "remote.origin.fetch"])).toBe(
      "+refs/heads/*:refs/remotes/origin/*",
    );
  });

  it("prunes and recreates a registered worktree whose directory was deleted", async () => {
    const fx = await fixture();
    const first = await ensureWorktree(fx.task(2), fx.opts());
    await writeFile(path.join(first.path, "work.txt"), "committed before the crash\n");
    const committed = await commitAll(first, "work", AUTHOR);
    await rm(first.path, { recursive: true, force: true });

    expect(gitFails(fx.mirror, ["worktree", "add", first.path, first.branch])).toMatch(
      /registered worktree|already checked out/,
    );
    const again = await ensureWorktree(fx.task(2), fx.opts());
    expect(again).toMatchObject({ created: true, startedFrom: "local-branch" });
    expect(head(again.path)).toBe(committed);
    expect(await readFile(path.join(again.path, "work.txt"), "utf8")).toContain("committed");
    expect(registered(fx.mirror)).toEqual([fx.mirror, again.path]);
  });

  it("moves unknown files at the worktree path to quarantine, then recreates", async () => {
    const fx = await fixture();
    const target = fx.worktreePath(3);
    await writeFiles(target, { "notes.txt": "precious\n", "deep/er.txt": "also precious\n" });
    await ensureMirror(fx.task(3), fx.opts());
    expect(gitFails(fx.mirror, ["worktree", "add", "-b", "naive", target, "origin/main"])).toMatch(
      /already exists/,
    );

    const result = await ensureWorktree(fx.task(3), fx.opts());
    expect(result.created).toBe(true);
    expect(result.quarantined).toBeDefined();
    const moved = result.quarantined as string;
    expect(moved.startsWith(path.join(fx.home, "quarantine"))).toBe(true);
    expect(await readFile(path.join(moved, "notes.txt"), "utf8")).toBe("precious\n");
    expect(await readFile(path.join(moved, "deep/er.txt"), "utf8")).toBe("also precious\n");
    expect(existsSync(path.join(target, "notes.txt"))).toBe(false);
    expect(existsSync(path.join(target, "README.md"))).toBe(true);
  });

  it("removes an empty directory in the way instead of quarantining it", async () => {
    const fx = await fixture();
    await mkdir(fx.worktreePath(4), { recursive: true });
    const result = await ensureWorktree(fx.task(4), fx.opts());
    expect(result.created).toBe(true);
    expect(result.quarantined).toBeUndefined();
  });

  it("quarantines a different repository sitting at the worktree path", async () => {
    const fx = await fixture();
    const target = fx.worktreePath(5);
    await mkdir(path.dirname(target), { recursive: true });
    git(fx.root, ["clone", "--quiet", fx.origin, target]);
    const result = await ensureWorktree(fx.task(5), fx.opts());
    expect(result.quarantined).toBeDefined();
    expect((await stat(path.join(result.quarantined as string, ".git"))).isDirectory()).toBe(true);
    expect((await stat(path.join(target, ".git"))).isFile()).toBe(true);
  });

  it("moves aside a worktree the agent switched to another branch, keeping its commits", async () => {
    const fx = await fixture();
    const first = await ensureWorktree(fx.task(6), fx.opts());
    git(first.path, ["checkout", "--quiet", "-b", "agent-experiment"]);
    await writeFile(path.join(first.path, "experiment.txt"), "x\n");
    const experiment = await commitAll(first, "experiment", AUTHOR);

    const again = await ensureWorktree(fx.task(6), fx.opts());
    expect(again.created).toBe(true);
    expect(currentBranch(again.path)).toBe(first.branch);
    const moved = again.quarantined as string;
    expect(currentBranch(moved)).toBe("agent-experiment");
    expect(head(moved)).toBe(experiment);
  });

  it("keeps a recorded branch even when the title has since changed", async () => {
    const fx = await fixture();
    const first = await ensureWorktree(fx.task(7, { title: "Old title" }), fx.opts());
    expect(first.branch).toBe("overseer/7-old-title");
    const again = await ensureWorktree(
      fx.task(7, { title: "A new title", branch: first.branch }),
      fx.opts(),
    );
    expect(again).toMatchObject({ branch: "overseer/7-old-title", created: false });
  });

  it("refuses hostile names before touching the disk", async () => {
    const fx = await fixture();
    const bad: Array<Partial<WorkspaceTask>> = [
      { repoFullName: "../../etc" },
      { repoFullName: "acme/.." },
      { cloneUrl: "ext::sh -c touch% /tmp/pwned" },
      { cloneUrl: "--upload-pack=touch /tmp/pwned" },
      { cloneUrl: "https://user:secret@example.com/acme/widgets.git" },
      // A repository on this host, or any transport but http(s), is not GitHub.
      { cloneUrl: pathToFileURL(fx.origin).href },
      { cloneUrl: fx.origin },
      { cloneUrl: "ssh://git@example.com/acme/widgets.git" },
      { cloneUrl: "git@example.com:acme/widgets.git" },
      { branch: "overseer/1-a..b" },
      { base: "-main" },
    ];
    for (const extra of bad) {
      await expect(ensureWorktree(fx.task(8, extra), fx.opts())).rejects.toThrow(WorkspaceError);
    }
    expect(existsSync(fx.home)).toBe(false);
  });
});

describe("where a task branch starts", () => {
  it("starts from a branch already pushed to origin (where a naive add would drop it)", async () => {
    const fx = await fixture();
    const branch = branchName(10, "Task number 10");
    const pushed = await fx.push(branch, { "feature.txt": "pushed work\n" });

    const naiveHome = path.join(fx.root, "naive");
    const naiveMirror = await ensureMirror(fx.task(10), { home: naiveHome, token: TOKEN });
    const naive = path.join(naiveHome, "naive-worktree");
    git(naiveMirror, ["worktree", "add", "--quiet", "-b", branch, naive, "origin/main"]);
    expect(existsSync(path.join(naive, "feature.txt"))).toBe(false);

    const result = await ensureWorktree(fx.task(10), fx.opts());
    expect(result).toMatchObject({ created: true, startedFrom: "remote-branch" });
    expect(head(result.path)).toBe(pushed);
    expect(await readFile(path.join(result.path, "feature.txt"), "utf8")).toBe("pushed work\n");
  });

  it("starts from a local branch holding commits that were never pushed", async () => {
    const fx = await fixture();
    const first = await ensureWorktree(fx.task(11), fx.opts());
    await writeFile(path.join(first.path, "a.txt"), "a\n");
    await commitAll(first, "pushed", AUTHOR);
    await pushBranch(first, fx.task(11), fx.opts());
    await writeFile(path.join(first.path, "b.txt"), "b\n");
    const unpushed = await commitAll(first, "not pushed", AUTHOR);
    await removeWorktree(fx.task(11), fx.opts({ deleteBranch: false }));

    const again = await ensureWorktree(fx.task(11), fx.opts());
    expect(again).toMatchObject({ created: true, startedFrom: "local-branch" });
    expect(head(again.path)).toBe(unpushed);
  });

  it("fast-forwards a local branch that is behind the remote one", async () => {
    const fx = await fixture();
    const first = await ensureWorktree(fx.task(12), fx.opts());
    await writeFile(path.join(first.path, "a.txt"), "a\n");
    await commitAll(first, "ours", AUTHOR);
    await pushBranch(first, fx.task(12), fx.opts());
    await removeWorktree(fx.task(12), fx.opts({ deleteBranch: false }));
    const theirs = await fx.push(first.branch, { "review-fix.txt": "from a reviewer\n" });

    const again = await ensureWorktree(fx.task(12), fx.opts());
    expect(again).toMatchObject({ created: true, startedFrom: "remote-branch" });
    expect(head(again.path)).toBe(theirs);
  });

  it("starts from the remote when local and remote diverged, keeping the local tip", async () => {
    const fx = await fixture();
    const first = await ensureWorktree(fx.task(13), fx.opts());
    await writeFile(path.join(first.path, "a.txt"), "a\n");
    await commitAll(first, "shared", AUTHOR);
    await pushBranch(first, fx.task(13), fx.opts());
    await writeFile(path.join(first.path, "local.txt"), "local only\n");
    const localTip = await commitAll(first, "local only", AUTHOR);
    await removeWorktree(fx.task(13), fx.opts({ deleteBranch: false }));
    const remoteTip = await fx.push(first.branch, { "remote.txt": "remote only\n" });

    const again = await ensureWorktree(fx.task(13), fx.opts());
    expect(again).toMatchObject({ created: true, startedFrom: "remote-branch" });
    expect(head(again.path)).toBe(remoteTip);
    expect(again.localBackup).toMatch(/^refs\/overseer\/backup\/overseer\/13-task-number-13\//);
    expect(git(fx.mirror, ["rev-parse", again.localBackup as string])).toBe(localTip);
  });

  it("starts a branch without commits of its own from the fresh base", async () => {
    const fx = await fixture();
    const branch = branchName(14, "Task number 14");
    git(fx.seed, ["push", "--quiet", "origin", `origin/main:refs/heads/${branch}`]);
    const newMain = await fx.push("main", { "later.txt": "later\n" });

    const result = await ensureWorktree(fx.task(14), fx.opts());
    expect(result).toMatchObject({ startedFrom: "base", baseSha: newMain });
    expect(head(result.path)).toBe(newMain);
  });

  it("after the base moved, starts new worktrees from it and leaves existing ones alone", async () => {
    const fx = await fixture();
    const older = await ensureWorktree(fx.task(15), fx.opts());
    const newMain = await fx.push("main", { "later.txt": "later\n" });
    expect(git(fx.mirror, ["rev-parse", "refs/remotes/origin/main"])).toBe(older.baseSha);

    const newer = await ensureWorktree(fx.task(16), fx.opts());
    expect(newer.baseSha).toBe(newMain);
    expect(head(newer.path)).toBe(newMain);

    const olderAgain = await ensureWorktree(fx.task(15), fx.opts());
    expect(olderAgain.created).toBe(false);
    expect(head(olderAgain.path)).toBe(older.baseSha);
    expect(existsSync(path.join(olderAgain.path, "later.txt"))).toBe(false);
  });
});

describe("locks left by crashes", () => {
  it("recovers from `git worktree add` killed in the middle of its checkout", async () => {
    const files: Record<string, string> = { ".gitattributes": "*.txt filter=slow\n" };
    for (let i = 0; i < 20; i++) files[`f${i}.txt`] = `${i}\n`;
    const fx = await fixture(files);
    const task = fx.task(20);
    const branch = branchName(20, task.title);
    await ensureMirror(task, fx.opts());
    const target = fx.worktreePath(20);
    await mkdir(path.dirname(target), { recursive: true });
    const marker = path.join(fx.root, "checkout-started");
    // A smudge filter that blocks lets the kill land mid-checkout, every time.
    const crashing = spawn(
      "git",
      [
        "-c",
        `filter.slow.smudge=touch '${marker}'; sleep 60; cat`,
        "worktree",
        "add",
        "-b",
        branch,
        target,
        "origin/main",
      ],
      { cwd: fx.mirror, detached: true, stdio: "ignore" },
    );
    children.push(crashing);
    for (let i = 0; i < 200 && !existsSync(marker); i++) await sleep(25);
    expect(existsSync(marker)).toBe(true);
    const exited = once(crashing, "exit");
    process.kill(-(crashing.pid as number), "SIGKILL");
    await exited;

    const adminDir = path.join(fx.mirror, "worktrees", "20");
    expect((await readFile(path.join(adminDir, "locked"), "utf8")).trim()).toBe("initializing");
    expect(gitFails(fx.mirror, ["worktree", "add", target, branch])).toMatch(
      /already exists|locked|checked out/,
    );

    const result = await ensureWorktree(task, fx.opts());
    expect(result.created).toBe(true);
    for (let i = 0; i < 20; i++) {
      expect(await readFile(path.join(target, `f${i}.txt`), "utf8")).toBe(`${i}\n`);
    }
    expect(git(target, ["status", "--porcelain"])).toBe("");
    expect(git(fx.mirror, ["worktree", "list", "--porcelain"])).not.toMatch(/locked/);
  });

  it("clears an index.lock left by a process that died", async () => {
    const fx = await fixture();
    const first = await ensureWorktree(fx.task(21), fx.opts());
    const indexLock = path.join(fx.mirror, "worktrees", "21", "index.lock");
    const worker = sleeper(first.path);
    await writeFile(indexLock, "");
    await kill(worker);
    await writeFile(path.join(first.path, "new.txt"), "new\n");
    expect(gitFails(first.path, ["add", "--all"])).toMatch(/index\.lock': File exists/);

    const again = await ensureWorktree(fx.task(21), fx.opts());
    expect(again).toMatchObject({ created: false, startedFrom: "existing-worktree" });
    expect(existsSync(indexLock)).toBe(false);
    expect(await commitAll(again, "works again", AUTHOR)).toMatch(/^[0-9a-f]{40}$/);
  });

  it("leaves an index.lock alone while a live process works in the worktree", async () => {
    const fx = await fixture();
    const first = await ensureWorktree(fx.task(22), fx.opts());
    const indexLock = path.join(fx.mirror, "worktrees", "22", "index.lock");
    const worker = sleeper(first.path);
    await writeFile(indexLock, "");

    const busy = ensureWorktree(fx.task(22), fx.opts());
    await expect(busy).rejects.toThrow(WorkspaceBusyError);
    await busy.catch((error: WorkspaceBusyError) => expect(error.pids).toContain(worker.pid));
    expect(existsSync(indexLock)).toBe(true);

    await kill(worker);
    await expect(ensureWorktree(fx.task(22), fx.opts())).resolves.toMatchObject({
      created: false,
    });
    expect(existsSync(indexLock)).toBe(false);
  });

  it("takes over an Overseer task lock whose process is gone", async () => {
    const fx = await fixture();
    const lock = path.join(fx.home, "locks", "acme", "widgets", "task-23.lock");
    await mkdir(path.dirname(lock), { recursive: true });
    const bootId = await readFile("/proc/sys/kernel/random/boot_id", "utf8").catch(() => null);
    await writeFile(
      lock,
      JSON.stringify({
        pid: await deadPid(),
        host: os.hostname(),
        bootId: bootId?.trim() ?? null,
        startTime: null,
        nonce: "crashed-runner",
        acquiredAt: new Date().toISOString(),
      }),
    );
    const result = await ensureWorktree(fx.task(23), fx.opts({ lockTimeoutMs: 5_000 }));
    expect(result.created).toBe(true);
    expect(existsSync(lock)).toBe(false);
    expect(fx.logs.some((line) => line.msg === "taking over a stale lock")).toBe(true);
  });

  it("waits for a live holder on another host, and takes over once it stops heartbeating", async () => {
    const fx = await fixture();
    const lock = path.join(fx.home, "locks", "acme", "widgets", "task-24.lock");
    await mkdir(path.dirname(lock), { recursive: true });
    const holder = { pid: 1, host: "another-runner", bootId: null, startTime: null, nonce: "n" };
    await writeFile(lock, JSON.stringify(holder));

    await expect(ensureWorktree(fx.task(24), fx.opts({ lockTimeoutMs: 300 }))).rejects.toThrow(
      LockTimeoutError,
    );
    const silentSince = new Date(Date.now() - 5 * 60_000);
    await utimes(lock, silentSince, silentSince);
    await expect(ensureWorktree(fx.task(24), fx.opts())).resolves.toMatchObject({ created: true });
  });

  it("clears a stale ref lock that makes every fetch fail", async () => {
    const fx = await fixture();
    await ensureWorktree(fx.task(25), fx.opts());
    const newMain = await fx.push("main", { "later.txt": "later\n" });
    const refLock = path.join(fx.mirror, "refs", "remotes", "origin", "main.lock");
    await writeFile(refLock, "");
    // From origin on disk: a synchronous git must not wait on this process's own server.
    expect(gitFails(fx.mirror, ["fetch", fx.origin, REFSPEC])).toMatch(/main\.lock/);

    const result = await ensureWorktree(fx.task(26), fx.opts());
    expect(result.baseSha).toBe(newMain);
    expect(existsSync(refLock)).toBe(false);
  });
});

describe("concurrency", () => {
  it("two concurrent calls for one task make one worktree and both return it", async () => {
    const fx = await fixture();
    const [a, b] = await Promise.all([
      ensureWorktree(fx.task(30), fx.opts()),
      ensureWorktree(fx.task(30), fx.opts()),
    ]);
    expect(a.path).toBe(b.path);
    expect(a.branch).toBe(b.branch);
    expect([a.created, b.created].sort()).toEqual([false, true]);
    expect(registered(fx.mirror)).toEqual([fx.mirror, a.path]);
  });

  it("two processes racing for one task make one worktree", async () => {
    const fx = await fixture();
    const script = path.join(fx.root, "ensure.mjs");
    const entry = pathToFileURL(path.join(REPO_ROOT, "src/workspace/index.ts")).href;
    await writeFile(
      script,
      `const { ensureWorktree } = await import(${JSON.stringify(entry)});
const result = await ensureWorktree(JSON.parse(process.argv[2]), { home: process.argv[3], token: process.argv[4] });
process.stdout.write(JSON.stringify(result));
`,
    );
    const runOne = async () => {
      const child = spawn(
        process.execPath,
        ["--import", "tsx", script, JSON.stringify(fx.task(31)), fx.home, TOKEN],
        { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] },
      );
      children.push(child);
      let out = "";
      let err = "";
      child.stdout.on("data", (chunk) => {
        out += chunk;
      });
      child.stderr.on("data", (chunk) => {
        err += chunk;
      });
      const [code] = await once(child, "exit");
      expect(code, err).toBe(0);
      return JSON.parse(out) as { path: string; created: boolean };
    };
    const [a, b] = await Promise.all([runOne(), runOne()]);
    expect(a.path).toBe(b.path);
    expect([a.created, b.created].sort()).toEqual([false, true]);
    expect(registered(fx.mirror)).toEqual([fx.mirror, a.path]);
  });

  it("a fetch waits for a worktree being added instead of failing on its parked null HEAD", async () => {
    const fx = await fixture();
    await ensureWorktree(fx.task(61), fx.opts());
    // `git worktree add` writes a null HEAD into its admin dir until checkout finishes.
    const pending = path.join(fx.mirror, "worktrees", "pending");
    await mkdir(pending, { recursive: true });
    await writeFile(path.join(pending, "HEAD"), `${"0".repeat(40)}\n`);
    await writeFile(path.join(pending, "commondir"), "../..\n");
    await writeFile(path.join(pending, "gitdir"), `${path.join(fx.root, "pending", ".git")}\n`);
    const moved = await fx.push("main", { "src/app.txt": "v2\n" });
    // Reproduced: a plain fetch now fails.
    expect(gitFails(fx.mirror, ["fetch", "--quiet", fx.origin, REFSPEC])).toContain(
      "bad object worktrees/pending/HEAD",
    );

    const registryLock = path.join(fx.home, "locks", "acme", "widgets", "worktrees.lock");
    let fetched = false;
    let fetching: Promise<void> | undefined;
    await withFileLock(registryLock, async () => {
      fetching = ensureMirror(fx.task(62), fx.opts()).then(() => {
        fetched = true;
      });
      await sleep(300);
      expect(fetched).toBe(false);
      // The "worktree add" completes: HEAD names a real commit, the admin dir is whole.
      await writeFile(path.join(pending, "HEAD"), `${head(fx.seed)}\n`);
    });
    await fetching;
    expect(fetched).toBe(true);
    expect(git(fx.mirror, ["rev-parse", "refs/remotes/origin/main"])).toBe(moved);
  });

  it("many tasks of one repository at once share one mirror", async () => {
    const fx = await fixture();
    const issues = Array.from({ length: 12 }, (_, i) => 32 + i);
    // allSettled: on failure, no call may still be writing into the fixture during cleanup.
    const settled = await Promise.allSettled(
      issues.map((issue) => ensureWorktree(fx.task(issue), fx.opts())),
    );
    const failures = settled.filter((result) => result.status === "rejected");
    expect(failures.map((failure) => String(failure.reason))).toEqual([]);
    expect(registered(fx.mirror)).toHaveLength(issues.length + 1);
    expect(await readdir(path.dirname(fx.mirror))).toEqual(["widgets.git"]);
  });
});

describe("removeWorktree", () => {
  it("removes a clean worktree and keeps its branch", async () => {
    const fx = await fixture();
    const made = await ensureWorktree(fx.task(40), fx.opts());
    await writeFile(path.join(made.path, "a.txt"), "a\n");
    const sha = await commitAll(made, "work", AUTHOR);
    await removeWorktree(fx.task(40), fx.opts({ deleteBranch: false }));
    expect(existsSync(made.path)).toBe(false);
    expect(registered(fx.mirror)).toEqual([fx.mirror]);
    expect(git(fx.mirror, ["rev-parse", `refs/heads/${made.branch}`])).toBe(sha);
  });

  it("deletes the branch when its PR was merged", async () => {
    const fx = await fixture();
    const made = await ensureWorktree(fx.task(41), fx.opts());
    await removeWorktree(fx.task(41), fx.opts({ deleteBranch: true }));
    expect(existsSync(made.path)).toBe(false);
    expect(git(fx.mirror, ["for-each-ref", `refs/heads/${made.branch}`])).toBe("");
  });

  it("moves uncommitted work to quarantine instead of deleting it", async () => {
    const fx = await fixture();
    const made = await ensureWorktree(fx.task(42), fx.opts());
    await writeFile(path.join(made.path, "wip.txt"), "half done\n");
    await writeFile(path.join(made.path, "README.md"), "edited\n");
    await removeWorktree(fx.task(42), fx.opts({ deleteBranch: false }));
    expect(existsSync(made.path)).toBe(false);
    expect(registered(fx.mirror)).toEqual([fx.mirror]);
    const [kept] = await readdir(path.join(fx.home, "quarantine", "acme", "widgets"));
    const keptDir = path.join(fx.home, "quarantine", "acme", "widgets", kept as string);
    expect(await readFile(path.join(keptDir, "wip.txt"), "utf8")).toBe("half done\n");
    expect(await readFile(path.join(keptDir, "README.md"), "utf8")).toBe("edited\n");
  });

  it("keeps commits made on a detached HEAD by moving the worktree aside", async () => {
    const fx = await fixture();
    const made = await ensureWorktree(fx.task(45), fx.opts());
    git(made.path, ["checkout", "--quiet", "--detach"]);
    await writeFile(path.join(made.path, "detached.txt"), "only reachable from HEAD\n");
    const detached = await commitAll(made, "detached work", AUTHOR);
    await removeWorktree(fx.task(45), fx.opts({ deleteBranch: true }));
    expect(existsSync(made.path)).toBe(false);
    const [kept] = registered(fx.mirror).slice(1);
    expect(kept?.startsWith(path.join(fx.home, "quarantine"))).toBe(true);
    expect(head(kept as string)).toBe(detached);
  });

  it("prunes a worktree whose directory is already gone, and tolerates nothing at all", async () => {
    const fx = await fixture();
    const made = await ensureWorktree(fx.task(43), fx.opts());
    await rm(made.path, { recursive: true });
    await removeWorktree(fx.task(43), fx.opts({ deleteBranch: false }));
    expect(registered(fx.mirror)).toEqual([fx.mirror]);
    await expect(
      removeWorktree(fx.task(44), fx.opts({ deleteBranch: true })),
    ).resolves.toBeUndefined();
  });
});

describe("runner helpers", () => {
  it("counts commits, sees changes, and commits them as the given author", async () => {
    const fx = await fixture();
    const made = await ensureWorktree(fx.task(50), fx.opts());
    expect(await commitsAheadOfBase(made, "main")).toBe(0);
    expect(await hasUncommittedChanges(made)).toBe(false);
    expect(await commitAll(made, "nothing", AUTHOR)).toBeNull();

    await writeFile(path.join(made.path, "untracked.txt"), "u\n");
    expect(await hasUncommittedChanges(made)).toBe(true);
    const sha = await commitAll(made, "-starts with a dash\n\nand has a body", AUTHOR);
    expect(sha).toBe(head(made.path));
    expect(git(made.path, ["log", "-1", "--format=%an <%ae>|%cn <%ce>|%s"])).toBe(
      "Overseer Bot <bot@overseer.test>|Overseer Bot <bot@overseer.test>|-starts with a dash",
    );
    expect(await hasUncommittedChanges(made)).toBe(false);
    expect(await commitsAheadOfBase(made, "main")).toBe(1);
  });

  it("commits even when the agent installed a failing pre-commit hook", async () => {
    const fx = await fixture();
    const made = await ensureWorktree(fx.task(51), fx.opts());
    await writeFiles(made.path, { ".husky/pre-commit": "#!/bin/sh\nexit 1\n" });
    await chmod(path.join(made.path, ".husky/pre-commit"), 0o755);
    git(made.path, ["config", "core.hooksPath", ".husky"]);
    gitFails(made.path, ["commit", "--allow-empty", "-m", "blocked by the hook"]);
    expect(await commitAll(made, "not blocked", AUTHOR)).toMatch(/^[0-9a-f]{40}$/);
  });

  it("pushes, refuses to rewrite without a lease, and honours the lease", async () => {
    const fx = await fixture();
    const task = fx.task(52);
    const made = await ensureWorktree(task, fx.opts());
    expect(await remoteBranchSha(task, made.branch, fx.opts())).toBeNull();

    await writeFile(path.join(made.path, "a.txt"), "a\n");
    await commitAll(made, "first", AUTHOR);
    const pushed = await pushBranch(made, task, fx.opts());
    expect(pushed.sha).toBe(head(made.path));
    expect(await remoteBranchSha(task, made.branch, fx.opts())).toBe(pushed.sha);

    git(made.path, ["commit", "--quiet", "--amend", "-m", "rewritten"]);
    await expect(pushBranch(made, task, fx.opts())).rejects.toThrow(RemoteBranchMovedError);
    const rewritten = await pushBranch(made, task, fx.opts({ forceWithLease: true }));
    expect(await remoteBranchSha(task, made.branch, fx.opts())).toBe(rewritten.sha);

    const theirs = await fx.push(made.branch, { "theirs.txt": "someone else's\n" });
    git(made.path, ["commit", "--quiet", "--amend", "-m", "rewritten again"]);
    await expect(pushBranch(made, task, fx.opts({ forceWithLease: true }))).rejects.toThrow(
      /stale info|rejected/,
    );
    expect(await remoteBranchSha(task, made.branch, fx.opts())).toBe(theirs);

    // A fetch for another task refreshes the mirror's view of the branch; that must not
    // license overwriting a commit this worktree never had.
    await ensureWorktree(fx.task(53), fx.opts());
    expect(git(fx.mirror, ["rev-parse", `refs/remotes/origin/${made.branch}`])).toBe(theirs);
    await expect(pushBranch(made, task, fx.opts({ forceWithLease: true }))).rejects.toThrow(
      /rejected/,
    );
    expect(await remoteBranchSha(task, made.branch, fx.opts())).toBe(theirs);
  });
});

describe("the installation token", () => {
  const token = `ghs_${randomBytes(18).toString("hex")}`;
  const basic = Buffer.from(`x-access-token:${token}`).toString("base64");

  async function filesUnder(dir: string): Promise<string[]> {
    const entries = await readdir(dir, { withFileTypes: true, recursive: true });
    return entries
      .filter((entry) => entry.isFile())
      .map((entry) => path.join(entry.parentPath, entry.name));
  }

  function expectClean(text: string) {
    expect(text).not.toContain(token);
    expect(text).not.toContain(basic);
  }

  it("appears in no file under the home, the worktree or origin, nor in logs", async () => {
    const fx = await fixture();
    fx.server.tokens.add(token);
    const task = fx.task(60);
    const opts = fx.opts({ token });
    const made = await ensureWorktree(task, opts);
    await writeFile(path.join(made.path, "a.txt"), "a\n");
    await commitAll(made, "work", AUTHOR);
    await pushBranch(made, task, opts);
    await pushBranch(made, task, { ...opts, forceWithLease: true });
    await remoteBranchSha(task, made.branch, opts);
    await ensureWorktree(fx.task(61), opts);
    await removeWorktree(fx.task(61), { ...opts, deleteBranch: true });

    const files = [...(await filesUnder(fx.home)), ...(await filesUnder(fx.origin))];
    expect(files.length).toBeGreaterThan(20);
    for (const file of files) {
      const content = await readFile(file);
      expect(content.includes(token), file).toBe(false);
      expect(content.includes(basic), file).toBe(false);
    }
    expectClean(JSON.stringify(fx.logs));
  });

  it("is kept out of errors when the remote is unreachable", async () => {
    const fx = await fixture();
    const task = fx.task(62, { cloneUrl: "http://127.0.0.1:1/acme/widgets.git" });
    const error = await ensureWorktree(task, fx.opts({ token })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitCommandError);
    const e = error as GitCommandError;
    expect(e.message).toMatch(/127\.0\.0\.1/);
    expectClean(`${e.message}\n${e.stack}\n${JSON.stringify(e)}\n${String(e)}`);
    expect(await readdir(path.join(fx.home, "mirrors", "acme"))).toEqual([]);
  });

  it("is sent as an Authorization header, and scrubbed even when the server echoes it", async () => {
    const fx = await fixture();
    const seen: Array<string | undefined> = [];
    const pkt = (line: string) => (line.length + 4).toString(16).padStart(4, "0") + line;
    const server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200, { "content-type": "application/x-git-upload-pack-advertisement" });
      res.end(
        `${pkt("# service=git-upload-pack\n")}0000${pkt(`ERR echoing ${req.headers.authorization}\n`)}`,
      );
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    try {
      const { port } = server.address() as AddressInfo;
      const task = fx.task(63, { cloneUrl: `http://127.0.0.1:${port}/acme/widgets.git` });
      const error = (await ensureMirror(task, fx.opts({ token })).catch((e) => e)) as Error;
      expect(seen[0]).toBe(`Basic ${basic}`);
      expect(error).toBeInstanceOf(GitCommandError);
      expect(error.message).toContain("[REDACTED]");
      expectClean(`${error.message}\n${error.stack}\n${JSON.stringify(error)}`);
      const remoteError = await remoteBranchSha(task, "main", fx.opts({ token })).catch((e) => e);
      expectClean(`${(remoteError as Error).message}\n${(remoteError as Error).stack}`);
    } finally {
      server.close();
    }
  });
});
