import path from "node:path";
import { git } from "./git.js";
import { local } from "./options.js";
import type { TaskPaths } from "./paths.js";
import { moveToQuarantine, quarantineSlot, removeIfEmpty } from "./quarantine.js";
import { linkedAdminDir, type PathKind, pathKind, type WorktreeEntry } from "./registry.js";
import type { WorkspaceOptions } from "./types.js";

/**
 * Getting whatever occupies a task's worktree path out of the way without losing anything:
 * shared by ensureWorktree (before recreating) and removeWorktree (when the task is final).
 */

/** The reason `git worktree add` writes while checking out; left behind only by a crash. */
export const ADD_IN_PROGRESS = "initializing";

/** Lock files whose presence sends us down the careful path. */
export function taskLockFiles(p: TaskPaths, adminDir: string, branch: string): string[] {
  return [
    path.join(adminDir, "index.lock"),
    path.join(adminDir, "HEAD.lock"),
    path.join(p.mirror, "refs", "heads", `${branch}.lock`),
  ];
}

export interface Settled {
  reuse: boolean;
  quarantined?: string;
}

/**
 * Someone (often the agent) switched branches or detached HEAD here. `worktree move` keeps
 * the files, the HEAD and the registration, so commits reachable only from this HEAD stay
 * reachable.
 */
export async function moveOffBranchAside(
  entry: WorktreeEntry,
  p: TaskPaths,
  opts: WorkspaceOptions,
) {
  const quarantined = await quarantineSlot(p.quarantine, `${basename(p)}-other-branch`);
  await git(p.mirror, ["worktree", "move", p.worktree, quarantined], local(opts));
  opts.log?.warn(
    { worktree: p.worktree, found: entry.branch ?? "detached HEAD", movedTo: quarantined },
    "worktree was not on its task branch; moved it aside",
  );
  return quarantined;
}

/**
 * `git worktree add` was killed mid-checkout. It never returned, so no worker ever ran in
 * the directory: the contents are git's partial checkout and nothing else.
 */
export async function abandonUnfinishedAdd(
  p: TaskPaths,
  kind: PathKind,
  opts: WorkspaceOptions,
): Promise<Settled> {
  const g = local(opts);
  await git(p.mirror, ["worktree", "unlock", p.worktree], g);
  let quarantined: string | undefined;
  if (kind !== "missing") {
    if (await linkedAdminDir(p.worktree, p.mirror)) {
      await git(p.mirror, ["worktree", "remove", "--force", p.worktree], g);
    } else {
      quarantined = await moveToQuarantine(p.worktree, p.quarantine, `${basename(p)}-unfinished`);
    }
  }
  await git(p.mirror, ["worktree", "prune"], g);
  opts.log?.warn({ worktree: p.worktree }, "cleared a worktree whose creation had crashed");
  return { reuse: false, quarantined };
}

/** Something at our path that git does not know: moved aside, unless it is an empty directory. */
export async function clearUnregistered(p: TaskPaths, opts: WorkspaceOptions) {
  const kind = await pathKind(p.worktree);
  if (kind === "missing") return undefined;
  if (kind === "directory" && (await removeIfEmpty(p.worktree))) return undefined;
  const quarantined = await moveToQuarantine(p.worktree, p.quarantine, `${basename(p)}-unknown`);
  opts.log?.warn({ worktree: p.worktree, movedTo: quarantined }, "moved unknown files aside");
  return quarantined;
}

export function basename(p: TaskPaths): string {
  return path.basename(p.worktree);
}
