import { lstat, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { type GitRunOptions, git } from "./git.js";

/** What git has registered as worktrees of a mirror, and whether a directory really is one. */

export interface WorktreeEntry {
  path: string;
  head: string | null;
  /** Full ref, e.g. refs/heads/overseer/12-fix; null when detached. */
  branch: string | null;
  bare: boolean;
  /** Lock reason ("" when locked without one); null when not locked. */
  locked: string | null;
  prunable: string | null;
}

/** Parses `git worktree list --porcelain -z`. */
export function parseWorktreeList(out: string): WorktreeEntry[] {
  const entries: WorktreeEntry[] = [];
  let current: WorktreeEntry | null = null;
  for (const field of out.split("\0")) {
    if (field === "") {
      current = null;
      continue;
    }
    const space = field.indexOf(" ");
    const key = space === -1 ? field : field.slice(0, space);
    const value = space === -1 ? "" : field.slice(space + 1);
    if (key === "worktree") {
      current = {
        path: value,
        head: null,
        branch: null,
        bare: false,
        locked: null,
        prunable: null,
      };
      entries.push(current);
    } else if (current) {
      if (key === "HEAD") current.head = value;
      else if (key === "branch") current.branch = value;
      else if (key === "bare") current.bare = true;
      else if (key === "locked") current.locked = value;
      else if (key === "prunable") current.prunable = value;
    }
  }
  return entries;
}

export async function listWorktrees(mirror: string, opts: GitRunOptions) {
  return parseWorktreeList(await git(mirror, ["worktree", "list", "--porcelain", "-z"], opts));
}

/**
 * True when no worktree of `mirror` is registered at `worktree` and none has `branch`
 * checked out, read from the admin dirs (<mirror>/worktrees/<name>/gitdir and HEAD, the
 * files `git worktree list` reads) without spawning git. False whenever anything there is
 * not plainly so (a relative or missing gitdir, an unreadable HEAD): then ask git.
 */
export async function nothingRegisteredFor(
  mirror: string,
  worktree: string,
  branch: string,
): Promise<boolean> {
  const adminRoot = path.join(mirror, "worktrees");
  let names: string[];
  try {
    names = await readdir(adminRoot);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return true;
    return false;
  }
  const dotGit = path.join(worktree, ".git");
  const checks = await Promise.all(
    names.map(async (name) => {
      const adminDir = path.join(adminRoot, name);
      const [gitdir, head] = await Promise.all([
        readText(path.join(adminDir, "gitdir")),
        readText(path.join(adminDir, "HEAD")),
      ]);
      const target = gitdir?.trim();
      if (!target || !path.isAbsolute(target) || head === null) return false;
      return target !== dotGit && head.trim() !== `ref: refs/heads/${branch}`;
    }),
  );
  return checks.every(Boolean);
}

export type PathKind = "missing" | "directory" | "other";

export async function pathKind(target: string): Promise<PathKind> {
  try {
    return (await lstat(target)).isDirectory() ? "directory" : "other";
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "missing";
    throw error;
  }
}

async function readText(file: string): Promise<string | null> {
  try {
    return await readFile(file, "utf8");
  } catch {
    return null;
  }
}

/**
 * The admin dir (`<mirror>/worktrees/<name>`) when `worktree` is a linked worktree of
 * `mirror` whose link is intact both ways; null for anything else (a plain clone, a
 * directory whose .git was deleted, a worktree of another repository).
 */
export async function linkedAdminDir(worktree: string, mirror: string): Promise<string | null> {
  const dotGit = path.join(worktree, ".git");
  const pointer = /^gitdir: (.+)\n?$/.exec((await readText(dotGit)) ?? "");
  if (!pointer?.[1]) return null;
  const adminDir = path.resolve(worktree, pointer[1]);
  if (path.dirname(adminDir) !== path.join(mirror, "worktrees")) return null;
  const back = (await readText(path.join(adminDir, "gitdir")))?.trim();
  return back === dotGit ? adminDir : null;
}

/** The branch an admin dir has checked out, read from its HEAD without spawning git. */
export async function checkedOutBranch(adminDir: string): Promise<string | null> {
  const head = await readText(path.join(adminDir, "HEAD"));
  const match = /^ref: refs\/heads\/(.+)\n?$/.exec(head ?? "");
  return match?.[1] ?? null;
}
