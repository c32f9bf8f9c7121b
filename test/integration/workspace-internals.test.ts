import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { GitCommandError } from "../../src/workspace/errors.js";
import { withFileLock } from "../../src/workspace/file-lock.js";
import { git } from "../../src/workspace/git.js";
import { lockFilesIn } from "../../src/workspace/git-locks.js";
import { parseWorktreeList } from "../../src/workspace/registry.js";
import { authorizationHeader, basicCredential, scrub } from "../../src/workspace/secrets.js";
import { decideStart, type StartCandidates } from "../../src/workspace/start-point.js";

const REPO_ROOT = path.resolve(import.meta.dirname, "../..");
const roots: string[] = [];
afterAll(() => Promise.all(roots.map((root) => rm(root, { recursive: true, force: true }))));

async function tempDir() {
  const root = await mkdtemp(path.join(os.tmpdir(), "overseer-ws-internals-"));
  roots.push(root);
  return root;
}

/** Records the intervals during which each holder was inside the lock. */
function overlaps(log: string): number {
  let inside = 0;
  let worst = 0;
  for (const line of log.trim().split("\n")) {
    inside += line.startsWith("enter") ? 1 : -1;
    worst = Math.max(worst, inside);
  }
  return worst;
}

describe("withFileLock", () => {
  it("admits one holder at a time within a process", async () => {
    const dir = await tempDir();
    const lock = path.join(dir, "a.lock");
    let inside = 0;
    let worst = 0;
    await Promise.all(
      Array.from({ length: 20 }, () =>
        withFileLock(lock, async () => {
          inside += 1;
          worst = Math.max(worst, inside);
          await sleep(2);
          inside -= 1;
        }),
      ),
    );
    expect(worst).toBe(1);
  });

  it("lets exactly one of several processes take over a lock whose holder died", async () => {
    const dir = await tempDir();
    const lock = path.join(dir, "task.lock");
    const journal = path.join(dir, "journal");
    await writeFile(journal, "");
    const dead = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
    await once(dead, "exit");
    const bootId = await readFile("/proc/sys/kernel/random/boot_id", "utf8").catch(() => null);
    await writeFile(
      lock,
      JSON.stringify({
        pid: dead.pid,
        host: os.hostname(),
        bootId: bootId?.trim() ?? null,
        startTime: null,
        nonce: "dead",
        acquiredAt: "",
      }),
    );
    const script = path.join(dir, "hold.mjs");
    const entry = pathToFileURL(path.join(REPO_ROOT, "src/workspace/file-lock.ts")).href;
    await writeFile(
      script,
      `import { appendFileSync } from "node:fs";
const { withFileLock } = await import(${JSON.stringify(entry)});
const [lock, journal] = process.argv.slice(2);
for (let i = 0; i < 3; i++) {
  await withFileLock(lock, async () => {
    appendFileSync(journal, "enter " + process.pid + "\\n");
    await new Promise((resolve) => setTimeout(resolve, 20));
    appendFileSync(journal, "exit " + process.pid + "\\n");
  });
}
`,
    );
    const holders = Array.from({ length: 4 }, () =>
      spawn(process.execPath, ["--import", "tsx", script, lock, journal], {
        cwd: REPO_ROOT,
        stdio: ["ignore", "ignore", "inherit"],
      }),
    );
    const codes = await Promise.all(holders.map(async (child) => (await once(child, "exit"))[0]));
    expect(codes).toEqual([0, 0, 0, 0]);
    const log = await readFile(journal, "utf8");
    expect(log.trim().split("\n")).toHaveLength(4 * 3 * 2);
    expect(overlaps(log)).toBe(1);
  });
});

describe("scrub", () => {
  const token = "ghs_0123456789abcdefghijABCDEFGHIJ012345";

  it("removes the token in every spelling we use", () => {
    const text = [
      `token ${token}`,
      `basic ${basicCredential(token)}`,
      `header ${authorizationHeader(token)}`,
    ].join("\n");
    const out = scrub(text, token);
    expect(out).not.toContain(token);
    expect(out).not.toContain(basicCredential(token));
    expect(out.match(/\[REDACTED\]/g)).toHaveLength(3);
  });

  it("removes credentials it was not told about", () => {
    const out = scrub(
      [
        "fatal: unable to access 'https://user:hunter2@example.com/x.git/'",
        "Authorization: Bearer abc.def.ghi",
        `a stray ${token.replace("ghs_", "ghp_")} token`,
      ].join("\n"),
    );
    expect(out).toContain("https://user:[REDACTED]@example.com/x.git/");
    expect(out).not.toMatch(/hunter2|abc\.def\.ghi|ghp_/);
  });
});

describe("parseWorktreeList", () => {
  it("reads paths, branches, locks and prunable markers", () => {
    const out = [
      "worktree /m.git",
      "bare",
      "",
      "worktree /w/1",
      "HEAD abc",
      "branch refs/heads/overseer/1-x",
      "locked initializing",
      "",
      "worktree /w/2",
      "HEAD def",
      "detached",
      "locked",
      "prunable gitdir file points to non-existent location",
      "",
    ].join("\0");
    expect(parseWorktreeList(out)).toEqual([
      { path: "/m.git", head: null, branch: null, bare: true, locked: null, prunable: null },
      {
        path: "/w/1",
        head: "abc",
        branch: "refs/heads/overseer/1-x",
        bare: false,
        locked: "initializing",
        prunable: null,
      },
      {
        path: "/w/2",
        head: "def",
        branch: null,
        bare: false,
        locked: "",
        prunable: "gitdir file points to non-existent location",
      },
    ]);
  });
});

describe("lockFilesIn", () => {
  it("finds the lock files git complained about, inside the given directory only", () => {
    const error = new GitCommandError(
      "x",
      ["fetch"],
      1,
      [
        "error: cannot lock ref 'refs/remotes/origin/main': Unable to create '/m.git/refs/remotes/origin/main.lock': File exists.",
        "fatal: Unable to create '/elsewhere/index.lock': File exists.",
      ].join("\n"),
    );
    expect(lockFilesIn(error, "/m.git")).toEqual(["/m.git/refs/remotes/origin/main.lock"]);
  });
});

describe("decideStart", () => {
  // History: B (base) ← L (local) ; B ← R (remote) ; L ← R2 (remote after local).
  const ancestry = new Set(["B>L", "B>R", "B>R2", "L>R2", "B>B", "L>L", "R>R", "R2>R2"]);
  const isAncestor = async (a: string, b: string) => ancestry.has(`${a}>${b}`);
  const cases: Array<[string, Omit<StartCandidates, "base">, string, string, boolean]> = [
    ["nothing yet", { local: null, remote: null }, "base", "B", false],
    ["pushed work", { local: null, remote: "R" }, "remote-branch", "R", false],
    ["unpushed work", { local: "L", remote: null }, "local-branch", "L", false],
    ["local behind remote", { local: "L", remote: "R2" }, "remote-branch", "R2", false],
    ["remote behind local", { local: "R2", remote: "L" }, "local-branch", "R2", false],
    ["diverged", { local: "L", remote: "R" }, "remote-branch", "R", true],
    ["branch without own commits", { local: null, remote: "B" }, "base", "B", false],
  ];
  it.each(cases)("%s", async (_name, candidates, from, sha, keepLocal) => {
    expect(await decideStart({ ...candidates, base: "B" }, isAncestor)).toEqual({
      from,
      sha,
      keepLocal,
    });
  });
});

describe("git", () => {
  // Under load a process's stdout can close well after it exits (here: a child of git's
  // still holds the pipe). Its output is only complete at `close`; reading it at `exit`
  // gave a worker's commit the type "" and failed a finished run as "not a commit".
  it("returns everything a command printed, even when its output ends after it exits", async () => {
    const dir = await tempDir();
    const fake = path.join(dir, "git");
    await writeFile(fake, "#!/bin/sh\n( sleep 0.3; echo commit ) &\nexit 0\n", { mode: 0o755 });
    const pathBefore = process.env.PATH;
    process.env.PATH = `${dir}:${pathBefore}`;
    try {
      expect(await git(dir, ["cat-file", "-t", "0".repeat(40)])).toBe("commit\n");
    } finally {
      process.env.PATH = pathBefore;
    }
  });
});
