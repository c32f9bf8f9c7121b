import { access, mkdir } from "node:fs/promises";
import path from "node:path";
import { WorkspaceError } from "./errors.js";
import { withFileLock } from "./file-lock.js";
import { git } from "./git.js";
import { clearStaleGitLocks } from "./git-locks.js";
import { syncMirror } from "./mirror.js";
import { local, lockOptions, taskLockScope } from "./options.js";
import {
  assertBranch,
  assertCloneUrl,
  resolveTaskPaths,
  type TaskPaths,
  taskBranch,
} from "./paths.js";
import { moveToQuarantine } from "./quarantine.js";
import { readRefs } from "./refs.js";
import {
  checkedOutBranch,
  linkedAdminDir,
  listWorktrees,
  nothingRegisteredFor,
  pathKind,
  type WorktreeEntry,
} from "./registry.js";
import {
  ADD_IN_PROGRESS,
  abandonUnfinishedAdd,
  basename,
  clearUnregistered,
  moveOffBranchAside,
  type Settled,
  taskLockFiles,
} from "./repair.js";
import { ancestryIn, decideStart } from "./start-point.js";
import type { EnsuredWorktree, WorkspaceOptions, WorkspaceTask } from "./types.js";

/**
 * One worktree per task at <home>/worktrees/<owner>/<repo>/<issue>. Everything happens under
 * the task's lock, so concurrent callers (threads of one runner, or several runners) see one
 * winner and the others reuse its result.
 */

export async function ensureWorktree(
  task: WorkspaceTask,
  opts: WorkspaceOptions,
): Promise<EnsuredWorktree> {
  assertCloneUrl(task.cloneUrl);
  assertBranch(task.base, "base");
  const branch = taskBranch(task);
  const p = await resolveTaskPaths(opts.home, task);
  return withFileLock(
    p.taskLock,
    async () => {
      const healthy = await reuseIfHealthy(p, branch, task.base, opts);
      if (healthy) return healthy;
      await syncMirror(p, task.cloneUrl, opts);
      return withFileLock(
        p.registryLock,
        () => repairAndCreate(p, task, branch, opts),
        lockOptions(opts),
      );
    },
    lockOptions(opts),
  );
}

const exists = (file: string) =>
  access(file).then(
    () => true,
    () => false,
  );

/**
 * The common case, kept cheap (file reads and one git process, no fetch): an intact
 * worktree on the task branch with no locks in the way is returned as it is.
 */
async function reuseIfHealthy(
  p: TaskPaths,
  branch: string,
  base: string,
  opts: WorkspaceOptions,
): Promise<EnsuredWorktree | null> {
  const adminDir = await linkedAdminDir(p.worktree, p.mirror);
  if (!adminDir || (await checkedOutBranch(adminDir)) !== branch) return null;
  const suspects = [...taskLockFiles(p, adminDir, branch), path.join(adminDir, "locked")];
  if ((await Promise.all(suspects.map(exists))).some(Boolean)) return null;
  let out: string;
  try {
    out = await git(
      p.worktree,
      ["rev-parse", "HEAD", `refs/remotes/origin/${base}`, "--"],
      local(opts),
    );
  } catch {
    return null;
  }
  const baseSha = out.split("\n")[1];
  if (!baseSha) return null;
  return reused(p, adminDir, branch, base, baseSha);
}

function reused(
  p: TaskPaths,
  gitDir: string,
  branch: string,
  base: string,
  baseSha: string,
): EnsuredWorktree {
  return {
    path: p.worktree,
    gitDir,
    commonDir: p.mirror,
    branch,
    base,
    baseSha,
    created: false,
    startedFrom: "existing-worktree",
  };
}

async function repairAndCreate(
  p: TaskPaths,
  task: WorkspaceTask,
  branch: string,
  opts: WorkspaceOptions,
): Promise<EnsuredWorktree> {
  // The common case (a new task: nothing at its path, its branch nowhere) needs no git.
  const entries = (await nothingRegisteredFor(p.mirror, p.worktree, branch))
    ? []
    : await listWorktrees(p.mirror, local(opts));
  const entry = entries.find((candidate) => candidate.path === p.worktree);
  const settled = entry
    ? await settleRegistered(entry, p, branch, opts)
    : { reuse: false, quarantined: await clearUnregistered(p, opts) };
  if (settled.reuse) {
    const baseSha = await baseCommit(p, task.base, opts);
    return reused(p, await adminDirOf(p), branch, task.base, baseSha);
  }
  await ensureBranchFree(entries, p, branch, opts);
  return create(p, task, branch, settled.quarantined, opts);
}

/** A worktree git knows about at our path: reuse it, or get it out of the way without loss. */
async function settleRegistered(
  entry: WorktreeEntry,
  p: TaskPaths,
  branch: string,
  opts: WorkspaceOptions,
): Promise<Settled> {
  const kind = await pathKind(p.worktree);
  const g = local(opts);
  if (entry.locked === ADD_IN_PROGRESS) return abandonUnfinishedAdd(p, kind, opts);
  if (entry.locked !== null && kind === "missing") {
    // Someone locked it on purpose (removable disk, investigation); not ours to override.
    throw new WorkspaceError(
      `worktree ${p.worktree} is missing but locked (${entry.locked || "no reason given"}); ` +
        `run "git -C ${p.mirror} worktree unlock ${p.worktree}" if it can go`,
    );
  }
  if (kind === "missing") {
    await git(p.mirror, ["worktree", "prune"], g);
    opts.log?.warn({ worktree: p.worktree }, "worktree directory was gone; pruned");
    return { reuse: false };
  }
  const adminDir = await linkedAdminDir(p.worktree, p.mirror);
  if (!adminDir) {
    const quarantined = await moveToQuarantine(p.worktree, p.quarantine, `${basename(p)}-unlinked`);
    await git(p.mirror, ["worktree", "prune"], g);
    opts.log?.warn({ worktree: p.worktree, movedTo: quarantined }, "not a worktree of the mirror");
    return { reuse: false, quarantined };
  }
  await clearStaleGitLocks(taskLockFiles(p, adminDir, branch), taskLockScope(p, opts));
  if (entry.branch === `refs/heads/${branch}`) return { reuse: true };
  return { reuse: false, quarantined: await moveOffBranchAside(entry, p, opts) };
}

/** Git refuses to check a branch out twice; say where, rather than fail inside `worktree add`. */
async function ensureBranchFree(
  entries: WorktreeEntry[],
  p: TaskPaths,
  branch: string,
  opts: WorkspaceOptions,
) {
  const elsewhere = entries.find(
    (e) => e.branch === `refs/heads/${branch}` && e.path !== p.worktree,
  );
  if (!elsewhere) return;
  if (elsewhere.locked === null && (await pathKind(elsewhere.path)) === "missing") {
    await git(p.mirror, ["worktree", "prune"], local(opts));
    return;
  }
  throw new WorkspaceError(`branch ${branch} is already checked out at ${elsewhere.path}`);
}

/** Read while no worker has run in the worktree yet (creation, or a repair that checked it). */
async function adminDirOf(p: TaskPaths): Promise<string> {
  const adminDir = await linkedAdminDir(p.worktree, p.mirror);
  if (!adminDir) throw new WorkspaceError(`${p.worktree} is not a worktree of ${p.mirror}`);
  return adminDir;
}

async function baseCommit(p: TaskPaths, base: string, opts: WorkspaceOptions) {
  const ref = `refs/remotes/origin/${base}`;
  const sha = (await readRefs(p.mirror, [ref], local(opts))).get(ref);
  if (!sha) throw new WorkspaceError(`base branch "${base}" does not exist on origin`);
  return sha;
}

async function create(
  p: TaskPaths,
  task: WorkspaceTask,
  branch: string,
  quarantined: string | undefined,
  opts: WorkspaceOptions,
): Promise<EnsuredWorktree> {
  const g = local(opts);
  const localRef = `refs/heads/${branch}`;
  const remoteRef = `refs/remotes/origin/${branch}`;
  const baseRef = `refs/remotes/origin/${task.base}`;
  const refs = await readRefs(p.mirror, [localRef, remoteRef, baseRef], g);
  const baseSha = refs.get(baseRef);
  if (!baseSha) throw new WorkspaceError(`base branch "${task.base}" does not exist on origin`);
  const localSha = refs.get(localRef) ?? null;
  await clearStaleGitLocks(
    [path.join(p.mirror, "refs", "heads", `${branch}.lock`)],
    taskLockScope(p, opts),
  );
  const start = await decideStart(
    { local: localSha, remote: refs.get(remoteRef) ?? null, base: baseSha },
    ancestryIn(p.mirror, g),
  );

  let localBackup: string | undefined;
  if (start.keepLocal && localSha) {
    localBackup = `refs/overseer/backup/${branch}/${Date.now()}`;
    await git(p.mirror, ["update-ref", localBackup, localSha, ""], g);
    opts.log?.warn(
      { branch, local: localSha, remote: start.sha, keptAt: localBackup },
      "local branch diverged from the remote; starting from the remote",
    );
  }
  await mkdir(path.dirname(p.worktree), { recursive: true });
  if (localSha === null) {
    await git(p.mirror, ["worktree", "add", "--quiet", "-b", branch, p.worktree, start.sha], g);
  } else {
    if (localSha !== start.sha) {
      // Compare-and-swap: fails rather than clobber a branch that moved under us.
      await git(p.mirror, ["update-ref", localRef, start.sha, localSha], g);
    }
    await git(p.mirror, ["worktree", "add", "--quiet", p.worktree, branch], g);
  }
  opts.log?.info(
    { worktree: p.worktree, branch, startedFrom: start.from, sha: start.sha },
    "created worktree",
  );
  return {
    path: p.worktree,
    gitDir: await adminDirOf(p),
    commonDir: p.mirror,
    branch,
    base: task.base,
    baseSha,
    created: true,
    startedFrom: start.from,
    ...(quarantined ? { quarantined } : {}),
    ...(localBackup ? { localBackup } : {}),
  };
}
