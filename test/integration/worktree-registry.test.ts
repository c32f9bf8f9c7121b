import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listWorktrees, nothingRegisteredFor } from "../../src/workspace/registry.js";

/**
 * nothingRegisteredFor lets a new task's worktree skip `git worktree list`; it must say
 * "nothing" only when git's own list would show nothing at the path and the branch free.
 */

let root: string;
let mirror: string;
const git = (cwd: string, ...args: string[]) =>
  execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null" },
  });

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "overseer-registry-"));
  mirror = path.join(root, "mirror.git");
  const seed = path.join(root, "seed");
  git(root, "init", "-q", "-b", "main", seed);
  await writeFile(path.join(seed, "a.txt"), "a\n");
  git(seed, "add", "a.txt");
  git(seed, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "a");
  git(root, "clone", "-q", "--bare", seed, mirror);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("nothingRegisteredFor", () => {
  it("says nothing is registered for a mirror without linked worktrees", async () => {
    expect(await nothingRegisteredFor(mirror, path.join(root, "wt", "1"), "overseer/1-a")).toBe(
      true,
    );
  });

  it("agrees with git's list: a registered path or a checked-out branch is something", async () => {
    const taken = path.join(root, "wt", "2");
    git(mirror, "worktree", "add", "-q", "-b", "overseer/2-b", taken, "main");
    const listed = await listWorktrees(mirror, {});
    expect(listed.some((entry) => entry.path === taken)).toBe(true);

    expect(await nothingRegisteredFor(mirror, taken, "overseer/9-other")).toBe(false);
    expect(await nothingRegisteredFor(mirror, path.join(root, "wt", "3"), "overseer/2-b")).toBe(
      false,
    );
    expect(await nothingRegisteredFor(mirror, path.join(root, "wt", "3"), "overseer/3-c")).toBe(
      true,
    );
  });

  it("asks git when an admin dir is not plain (a relative gitdir)", async () => {
    const odd = path.join(root, "wt", "4");
    git(mirror, "worktree", "add", "-q", "-b", "overseer/4-d", odd, "main");
    const admin = path.join(mirror, "worktrees", "4");
    await writeFile(path.join(admin, "gitdir"), "../../wt/4/.git\n");
    expect(await nothingRegisteredFor(mirror, path.join(root, "wt", "5"), "overseer/5-e")).toBe(
      false,
    );
  });
});
