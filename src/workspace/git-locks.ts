import { lstat, unlink } from "node:fs/promises";
import path from "node:path";
import { GitCommandError, WorkspaceBusyError } from "./errors.js";
import { processesWorkingIn } from "./process.js";
import type { WorkspaceLog } from "./types.js";

/**
 * Git's own lock files (index.lock, HEAD.lock, refs/…/x.lock) record no owner. They are
 * only ever inspected while we hold the Overseer lock for the task or mirror, so no
 * Overseer process can be the owner; what remains is a worker (or a human) working in the
 * directory. No live process there, or a lock older than any git operation takes, means
 * the owner crashed.
 */

export const DEFAULT_STALE_GIT_LOCK_MS = 10 * 60_000;

export interface GitLockScope {
  /** Directories a live owner would be working in. */
  dirs: readonly string[];
  staleAfterMs?: number;
  log?: WorkspaceLog;
}

async function ageMs(file: string): Promise<number | null> {
  try {
    return Date.now() - (await lstat(file)).mtimeMs;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/** Removes the stale ones among `lockFiles`; throws if one may still be in use. */
export async function clearStaleGitLocks(
  lockFiles: readonly string[],
  scope: GitLockScope,
): Promise<string[]> {
  const present: Array<{ file: string; age: number }> = [];
  for (const file of lockFiles) {
    const age = await ageMs(file);
    if (age !== null) present.push({ file, age });
  }
  if (present.length === 0) return [];
  const workers = await processesWorkingIn(scope.dirs);
  const staleAfterMs = scope.staleAfterMs ?? DEFAULT_STALE_GIT_LOCK_MS;
  const cleared: string[] = [];
  for (const { file, age } of present) {
    const ownerGone = workers !== null && workers.length === 0;
    if (!ownerGone && age <= staleAfterMs) throw new WorkspaceBusyError(file, workers ?? []);
    await unlink(file).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "ENOENT") throw error;
    });
    scope.log?.warn({ lock: file, ageMs: Math.round(age) }, "removed a stale git lock");
    cleared.push(file);
  }
  return cleared;
}

/** Lock files git complained about ("Unable to create '<path>.lock': File exists"). */
export function lockFilesIn(error: GitCommandError, within: string): string[] {
  const files = new Set<string>();
  for (const match of error.stderr.matchAll(/'([^'\n]+\.lock)'/g)) {
    const file = path.resolve(match[1] ?? "");
    const relative = path.relative(within, file);
    if (!relative.startsWith("..") && !path.isAbsolute(relative)) files.add(file);
  }
  return [...files];
}

/**
 * Runs `operation`; if git failed on a lock file under `within` whose owner is gone,
 * removes it and runs the operation once more.
 */
export async function retryAfterStaleLocks<T>(
  within: string,
  scope: GitLockScope,
  operation: () => Promise<T>,
): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (!(error instanceof GitCommandError)) throw error;
    const files = lockFilesIn(error, within);
    if (files.length === 0) throw error;
    const cleared = await clearStaleGitLocks(files, scope);
    if (cleared.length === 0) throw error;
    return operation();
  }
}
