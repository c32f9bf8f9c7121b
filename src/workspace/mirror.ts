import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { withFileLock } from "./file-lock.js";
import { git } from "./git.js";
import { retryAfterStaleLocks } from "./git-locks.js";
import { authed, local, lockOptions, mirrorLockScope } from "./options.js";
import {
  assertBranch,
  assertCloneUrl,
  resolveHome,
  resolveTaskPaths,
  type TaskPaths,
} from "./paths.js";
import { moveToQuarantine } from "./quarantine.js";
import type { WorkspaceOptions, WorkspaceTask } from "./types.js";

/**
 * One bare mirror per repository. Remote branches land in refs/remotes/origin/*, so task
 * branches (refs/heads/overseer/…) are ours alone and a fetch can never move them.
 */

const FETCH_REFSPEC = "+refs/heads/*:refs/remotes/origin/*";

export async function ensureMirror(task: WorkspaceTask, opts: WorkspaceOptions): Promise<string> {
  assertCloneUrl(task.cloneUrl);
  const p = await resolveTaskPaths(opts.home, task);
  await syncMirror(p, task.cloneUrl, opts);
  return p.mirror;
}

/** Creates or fetches the mirror; a fetch that started after we asked already answers us. */
export async function syncMirror(p: TaskPaths, cloneUrl: string, opts: WorkspaceOptions) {
  const requestedAt = Date.now();
  await withFileLock(
    p.mirrorLock,
    async () => {
      if (!(await looksLikeMirror(p, opts))) {
        await createMirror(p, cloneUrl, opts);
        return;
      }
      if ((await lastFetchStart(p)) >= requestedAt) return;
      await pointAt(p.mirror, cloneUrl, opts);
      await fetchInto(p.mirror, p, opts);
    },
    lockOptions(opts),
  );
}

async function looksLikeMirror(p: TaskPaths, opts: WorkspaceOptions): Promise<boolean> {
  const kinds = await Promise.all(
    ["HEAD", "objects", "refs", "config"].map((name) =>
      stat(path.join(p.mirror, name)).then(
        (info) => (info.isDirectory() ? "dir" : "file"),
        () => null,
      ),
    ),
  );
  if (kinds.join() === "file,dir,dir,file") return true;
  if (kinds.every((kind) => kind === null)) {
    // Absent, or something that is not a repository: the latter is moved aside, not deleted.
    const exists = await stat(p.mirror).then(
      () => true,
      () => false,
    );
    if (!exists) return false;
  }
  const moved = await moveToQuarantine(p.mirror, p.quarantine, "mirror");
  opts.log?.warn({ mirror: p.mirror, movedTo: moved }, "mirror path held no repository");
  return false;
}

async function createMirror(p: TaskPaths, cloneUrl: string, opts: WorkspaceOptions) {
  const parent = path.dirname(p.mirror);
  const base = path.basename(p.mirror);
  await mkdir(parent, { recursive: true });
  // Half-made mirrors from a holder of the mirror lock that crashed: ours, so safe to delete.
  for (const entry of await readdir(parent)) {
    if (entry.startsWith(`${base}.tmp-`)) {
      await rm(path.join(parent, entry), { recursive: true, force: true });
    }
  }
  const draft = `${p.mirror}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await git(parent, ["init", "--bare", "--quiet", draft], local(opts));
    await git(draft, ["config", "remote.origin.url", cloneUrl], local(opts));
    await git(draft, ["config", "remote.origin.fetch", FETCH_REFSPEC], local(opts));
    // Bare repositories keep no reflogs by default; with them a moved branch can be found again.
    await git(draft, ["config", "core.logAllRefUpdates", "true"], local(opts));
    await fetchInto(draft, p, opts);
    // Only a complete mirror ever appears at its final path.
    await rename(draft, p.mirror);
    opts.log?.info({ mirror: p.mirror }, "created mirror");
  } catch (error) {
    await rm(draft, { recursive: true, force: true });
    throw error;
  }
}

/** Mirrors whose remote URL this process has already checked, and the URL it found. */
const checkedUrls = new Map<string, string>();

async function pointAt(mirror: string, cloneUrl: string, opts: WorkspaceOptions) {
  // A git process per fetch just to re-read an unchanged URL is most of our overhead.
  if (checkedUrls.get(mirror) === cloneUrl) return;
  await setUrl(mirror, cloneUrl, opts);
  checkedUrls.set(mirror, cloneUrl);
}

async function setUrl(mirror: string, cloneUrl: string, opts: WorkspaceOptions) {
  const current = await git(mirror, ["config", "--get", "remote.origin.url"], local(opts)).then(
    (out) => out.trim(),
    () => "",
  );
  if (current === cloneUrl) return;
  await git(mirror, ["config", "remote.origin.url", cloneUrl], local(opts));
  opts.log?.info({ mirror, from: current, to: cloneUrl }, "clone URL changed");
}

async function fetchInto(repo: string, p: TaskPaths, opts: WorkspaceOptions) {
  const startedAt = Date.now();
  const fetch = () =>
    retryAfterStaleLocks(repo, mirrorLockScope(p, opts), () =>
      git(
        repo,
        ["fetch", "--quiet", "--prune", "--no-tags", "--no-write-fetch-head", "origin"],
        authed(opts),
      ),
    );
  // Fetch reads every worktree's HEAD, and `git worktree add` parks a null HEAD in its
  // admin dir until checkout: a fetch meanwhile fails with "bad object worktrees/N/HEAD".
  // So the mirror's own fetch (not a draft's) excludes worktree changes; lock order is
  // always mirror, then registry.
  if (repo === p.mirror) await withFileLock(p.registryLock, fetch, lockOptions(opts));
  else await fetch();
  await mkdir(path.dirname(p.fetchStamp), { recursive: true });
  await writeFile(p.fetchStamp, String(startedAt));
}

async function lastFetchStart(p: TaskPaths): Promise<number> {
  const text = await readFile(p.fetchStamp, "utf8").catch(() => "0");
  return Number(text) || 0;
}

/** The branch's commit on the remote itself (not the mirror's possibly older copy). */
export async function remoteBranchSha(
  task: WorkspaceTask,
  branch: string,
  opts: WorkspaceOptions,
): Promise<string | null> {
  assertCloneUrl(task.cloneUrl);
  assertBranch(branch, "branch");
  const home = await resolveHome(opts.home);
  const ref = `refs/heads/${branch}`;
  const out = await git(home, ["ls-remote", task.cloneUrl, ref], authed(opts));
  // ls-remote patterns match on a path tail; only the exact ref counts.
  for (const line of out.split("\n")) {
    const [sha, name] = line.split("\t");
    if (name === ref && sha) return sha;
  }
  return null;
}
