import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { withFileLock } from "./file-lock.js";
import { git } from "./git.js";
import { local, lockOptions } from "./options.js";
import { resolveHome, resolveTaskPaths } from "./paths.js";
import { moveToQuarantine } from "./quarantine.js";
import { pathKind } from "./registry.js";
import type { WorkspaceOptions } from "./types.js";

/** A task directory found under <home>/worktrees, whatever the database says of it. */
export interface WorktreeDir {
  /** `owner/repo` as on disk (lower case). */
  repoFullName: string;
  issueNumber: number;
  path: string;
  /** Last change to the directory itself (an entry added or removed). */
  modifiedAt: Date;
}

/** Every <home>/worktrees/<owner>/<repo>/<issue> directory on this host. */
export async function listWorktreeDirs(home: string): Promise<WorktreeDir[]> {
  const root = path.join(await resolveHome(home), "worktrees");
  const found: WorktreeDir[] = [];
  for (const owner of await subdirectories(root)) {
    for (const repo of await subdirectories(path.join(root, owner))) {
      for (const issue of await subdirectories(path.join(root, owner, repo))) {
        if (!/^[1-9]\d{0,9}$/.test(issue)) continue;
        const dir = path.join(root, owner, repo, issue);
        const info = await stat(dir).catch(() => null);
        if (!info) continue;
        found.push({
          repoFullName: `${owner}/${repo}`,
          issueNumber: Number(issue),
          path: dir,
          modifiedAt: info.mtime,
        });
      }
    }
  }
  return found;
}

async function subdirectories(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name);
}

/**
 * A task directory no task owns: moved whole to the repository's quarantine folder (never
 * deleted), and the mirror forgets it as a worktree. Under the task's lock, so a runner
 * creating the worktree at this moment is waited for. Returns where it went (null: gone).
 */
export async function quarantineOrphanWorktree(
  dir: Pick<WorktreeDir, "repoFullName" | "issueNumber">,
  opts: WorkspaceOptions,
): Promise<string | null> {
  const p = await resolveTaskPaths(opts.home, dir);
  return withFileLock(
    p.taskLock,
    async () => {
      if ((await pathKind(p.worktree)) === "missing") return null;
      const movedTo = await moveToQuarantine(p.worktree, p.quarantine, `${dir.issueNumber}-orphan`);
      if ((await pathKind(p.mirror)) === "directory") {
        await git(p.mirror, ["worktree", "prune"], local(opts));
      }
      opts.log?.warn({ worktree: p.worktree, movedTo }, "moved an orphan worktree aside");
      return movedTo;
    },
    lockOptions(opts),
  );
}
