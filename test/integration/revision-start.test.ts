import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import {
  commitAll,
  commitsSince,
  ensureWorktree,
  hasUncommittedChanges,
  pushBranch,
  startRevision,
  WorkspaceError,
  type WorkspaceOptions,
  type WorkspaceTask,
} from "../../src/workspace/index.js";
import { type GitServer, git, startGitServer } from "../support/git-http.js";

const TOKEN = "ghs_testinstallationtoken";

/**
 * Where a revision starts: exactly the PR branch's commit on origin, whatever the worktree
 * held; what the PR does not show is kept under a backup ref, never lost.
 */

const AUTHOR = { name: "Overseer", email: "overseer@example.com" };
const cleanups: (() => Promise<void>)[] = [];

afterAll(async () => {
  for (const cleanup of cleanups) await cleanup();
});

let server: GitServer;
let home: string;
let task: WorkspaceTask;
let options: WorkspaceOptions;
let issue = 0;

beforeEach(async () => {
  server = await startGitServer({ tokens: [TOKEN] });
  const { cloneUrl } = await server.createRepo("acme", "widgets");
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-revision-start-"));
  cleanups.push(server.stop, () => rm(home, { recursive: true, force: true }));
  issue += 1;
  task = {
    repoFullName: "acme/widgets",
    cloneUrl,
    issueNumber: issue,
    title: "Widget",
    base: "main",
  };
  options = { home, token: TOKEN };
});

/** The first run: a commit on the task branch, pushed. Returns the worktree and the pushed commit. */
async function firstRun() {
  const worktree = await ensureWorktree(task, options);
  await writeFile(path.join(worktree.path, "widget.txt"), "v1\n");
  await commitAll(worktree, "first run", AUTHOR);
  const { sha } = await pushBranch(worktree, task, options);
  return { worktree, sha };
}

/** Someone else's commit pushed to the PR branch, from a clone of their own. */
async function pushFromElsewhere(branch: string, file: string): Promise<string> {
  const clone = await mkdtemp(path.join(os.tmpdir(), "overseer-reviewer-"));
  cleanups.push(() => rm(clone, { recursive: true, force: true }));
  git(clone, "clone", "-q", "--branch", branch, path.join(server.root, "acme", "widgets.git"), ".");
  await writeFile(path.join(clone, file), "theirs\n");
  git(clone, "add", "-A");
  git(clone, "commit", "-qm", "a reviewer's fix");
  git(clone, "push", "-q", "origin", branch);
  return git(clone, "rev-parse", "HEAD");
}

function backups(branch: string): string[] {
  const mirror = path.join(home, "mirrors", "acme", "widgets.git");
  const out = git(
    mirror,
    "for-each-ref",
    "--format=%(refname) %(objectname)",
    `refs/overseer/backup/${branch}`,
  );
  return out === "" ? [] : out.split("\n");
}

describe("startRevision", () => {
  it("starts at the pushed commit when the worktree is as the PR shows it", async () => {
    const { worktree, sha } = await firstRun();
    expect(await startRevision(task, worktree, { ...options, author: AUTHOR })).toEqual({ sha });
    expect(git(worktree.path, "rev-parse", "HEAD")).toBe(sha);
    expect(await commitsSince(worktree, sha)).toBe(0);
  });

  it("moves up to commits someone else pushed to the PR branch", async () => {
    const { worktree } = await firstRun();
    const theirs = await pushFromElsewhere(worktree.branch, "fix.txt");
    const start = await startRevision(task, worktree, { ...options, author: AUTHOR });
    expect(start).toEqual({ sha: theirs });
    expect(git(worktree.path, "rev-parse", "HEAD")).toBe(theirs);
    expect(await readFile(path.join(worktree.path, "fix.txt"), "utf8")).toBe("theirs\n");
    expect(backups(worktree.branch)).toEqual([]);
  });

  it("sets a failed run's leftovers aside (edits and new files) under a backup ref, and starts clean", async () => {
    const { worktree, sha } = await firstRun();
    await writeFile(path.join(worktree.path, "widget.txt"), "half-done edit\n");
    await writeFile(path.join(worktree.path, "scratch.md"), "notes\n");
    const start = await startRevision(task, worktree, { ...options, author: AUTHOR });
    expect(start.sha).toBe(sha);
    expect(start.backup).toMatch(new RegExp(`^refs/overseer/backup/${worktree.branch}/\\d+$`));
    expect(await hasUncommittedChanges(worktree)).toBe(false);
    expect(git(worktree.path, "rev-parse", "HEAD")).toBe(sha);
    const mirror = path.join(home, "mirrors", "acme", "widgets.git");
    expect(git(mirror, "show", `${start.backup}:widget.txt`)).toBe("half-done edit");
    expect(git(mirror, "show", `${start.backup}:scratch.md`)).toBe("notes");
  });

  it("sets aside commits the PR never got, and starts from what it has", async () => {
    const { worktree, sha } = await firstRun();
    await writeFile(path.join(worktree.path, "unpushed.txt"), "local\n");
    const local = await commitAll(worktree, "never pushed", AUTHOR);
    const start = await startRevision(task, worktree, { ...options, author: AUTHOR });
    expect(start.sha).toBe(sha);
    expect(backups(worktree.branch)).toEqual([`${start.backup} ${local}`]);
    expect(git(worktree.path, "rev-parse", "HEAD")).toBe(sha);
  });

  it("refuses when the PR's branch is gone from origin", async () => {
    const { worktree } = await firstRun();
    server.git("acme", "widgets", "branch", "-D", worktree.branch);
    await expect(startRevision(task, worktree, { ...options, author: AUTHOR })).rejects.toThrow(
      WorkspaceError,
    );
  });
});

describe("commitsSince", () => {
  it("counts what a revision added, and says null when it rewrote the branch instead", async () => {
    const { worktree, sha } = await firstRun();
    await writeFile(path.join(worktree.path, "more.txt"), "more\n");
    await commitAll(worktree, "revision", AUTHOR);
    expect(await commitsSince(worktree, sha)).toBe(1);
    git(worktree.path, "reset", "-q", "--hard", "HEAD~2");
    await writeFile(path.join(worktree.path, "other.txt"), "rewritten\n");
    await commitAll(worktree, "rewritten history", AUTHOR);
    expect(await commitsSince(worktree, sha)).toBeNull();
    await expect(commitsSince(worktree, "HEAD; rm -rf /")).rejects.toThrow(WorkspaceError);
  });
});
