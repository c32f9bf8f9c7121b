import { lstat, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { WorkspaceError } from "./errors.js";
import { git } from "./git.js";
import { local } from "./options.js";
import { assertBranch } from "./paths.js";
import type { WorkspaceOptions, WorktreeHandle } from "./types.js";

/**
 * What a sandboxed worker sees of the shared mirror: enough to commit on its own branch,
 * nothing that changes another task or Overseer's own git.
 *
 * A commit needs the object store, the worktree's admin dir (HEAD, index, logs) and a
 * writable directory around its branch's ref (git writes `<ref>.lock` next to the ref and
 * renames it). That directory, `refs/heads/overseer/`, holds every task's branch, so the
 * worker gets a private one in its place, seeded with its own branch only; after the run
 * Overseer adopts the branch's new tip into the mirror (compare-and-swap) and drops the
 * rest. Other tasks' loose refs are absent; config, hooks, packed refs and every other ref
 * are read-only; other worktrees' admin dirs are absent.
 */

export interface Bind {
  source: string;
  target: string;
}

export interface WorkerGitView {
  mirror: string;
  /** The worktree's admin dir, writable, with its `commondir` and `gitdir` read-only. */
  adminDir: string;
  objects: string;
  /** Private directory → the mirror's directory around the branch's ref. */
  refs: Bind;
  /** Likewise for the branch's reflog. */
  logs: Bind;
  branch: string;
  /** The branch's tip when the worker started (null when it had none). */
  startSha: string | null;
}

const OBJECT_ID = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

/** Prepares the private ref directories under `scratch` (a run's own directory). */
export async function prepareWorkerView(
  worktree: WorktreeHandle & { branch: string },
  scratch: string,
  opts: WorkspaceOptions,
): Promise<WorkerGitView> {
  assertBranch(worktree.branch, "branch");
  const mirror = worktree.commonDir;
  const refDir = path.posix.dirname(`refs/heads/${worktree.branch}`);
  const refs = { source: path.join(scratch, "refs"), target: path.join(mirror, refDir) };
  const logs = { source: path.join(scratch, "logs"), target: path.join(mirror, "logs", refDir) };
  // Mount points must exist in the mirror: a ref packed away takes its directory with it.
  for (const dir of [refs.source, refs.target, logs.source, logs.target]) {
    await mkdir(dir, { recursive: true });
  }
  const startSha = await branchTip(mirror, worktree.branch, opts);
  if (startSha) await writeFile(path.join(refs.source, refName(worktree.branch)), `${startSha}\n`);
  return {
    mirror,
    adminDir: worktree.gitDir,
    objects: path.join(mirror, "objects"),
    refs,
    logs,
    branch: worktree.branch,
    startSha,
  };
}

/**
 * Moves the mirror's branch to where the worker left it in its private ref directory, if
 * that is a commit. Returns the branch's tip afterwards. Nothing else the worker wrote
 * there (other branches, other tasks' names) reaches the mirror.
 */
export async function adoptWorkerBranch(
  view: WorkerGitView,
  opts: WorkspaceOptions,
): Promise<string | null> {
  const file = path.join(view.refs.source, refName(view.branch));
  const info = await lstat(file).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return null;
    throw error;
  });
  if (info === null) return view.startSha;
  if (!info.isFile() || info.size > 200) {
    throw new WorkspaceError(`the worker left something other than a ref at ${file}`);
  }
  const sha = (await readFile(file, "utf8")).trim();
  if (sha === view.startSha) return sha;
  if (!OBJECT_ID.test(sha)) {
    throw new WorkspaceError(
      `the worker left ${view.branch} at ${JSON.stringify(sha.slice(0, 80))}, not a commit id`,
    );
  }
  const type = (await git(view.mirror, ["cat-file", "-t", sha], local(opts))).trim();
  if (type !== "commit") {
    throw new WorkspaceError(`the worker left ${view.branch} at ${sha}, a ${type}, not a commit`);
  }
  // Compare-and-swap: the mirror's branch must still be where the worker started from.
  await git(
    view.mirror,
    [
      "update-ref",
      "-m",
      "overseer: commits of the sandboxed worker",
      `refs/heads/${view.branch}`,
      sha,
      view.startSha ?? "",
    ],
    local(opts),
  );
  return sha;
}

async function branchTip(mirror: string, branch: string, opts: WorkspaceOptions) {
  const out = await git(
    mirror,
    ["for-each-ref", "--format=%(objectname)", `refs/heads/${branch}`],
    local(opts),
  );
  const sha = out.trim().split("\n")[0] ?? "";
  return OBJECT_ID.test(sha) ? sha : null;
}

function refName(branch: string): string {
  return path.posix.basename(branch);
}
