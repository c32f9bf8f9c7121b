import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { GitCommandError } from "./errors.js";
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
 *
 * The mirror's config is Overseer's: written whole when the mirror is made, compared
 * before every fetch and after every run, and rewritten when anything changed it. Fetches
 * name the URL and refspec outright, so `remote.origin.*` is only there for people.
 */

const FETCH_REFSPEC = "+refs/heads/*:refs/remotes/origin/*";

export function mirrorConfig(cloneUrl: string): string {
  return [
    "[core]",
    "\trepositoryformatversion = 0",
    "\tfilemode = true",
    "\tbare = true",
    // Bare repositories keep no reflogs by default; with them a moved branch can be found again.
    "\tlogallrefupdates = true",
    '[remote "origin"]',
    `\turl = ${cloneUrl}`,
    `\tfetch = ${FETCH_REFSPEC}`,
    "",
  ].join("\n");
}

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
      const changed = await restoreConfig(p.mirror, cloneUrl, opts);
      if (changed.length > 0) {
        opts.log?.warn({ mirror: p.mirror, keys: changed }, "mirror config was changed; restored");
      }
      await fetchInto(p.mirror, p, cloneUrl, opts);
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
    await writeFile(path.join(draft, "config"), mirrorConfig(cloneUrl));
    await fetchInto(draft, p, cloneUrl, opts);
    // Only a complete mirror ever appears at its final path.
    await rename(draft, p.mirror);
    opts.log?.info({ mirror: p.mirror }, "created mirror");
  } catch (error) {
    await rm(draft, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Rewrites the mirror's config when it is not exactly Overseer's; returns the keys that
 * differed. Reading the file (git config --file never follows includes) runs nothing of
 * what it says.
 */
async function restoreConfig(
  mirror: string,
  cloneUrl: string,
  opts: WorkspaceOptions,
): Promise<string[]> {
  const file = path.join(mirror, "config");
  const wanted = mirrorConfig(cloneUrl);
  const found = await readFile(file, "utf8").catch(() => "");
  if (found === wanted) return [];
  const keys = await configKeys(mirror, file, opts);
  const expected = new Set(configLines(wanted));
  const changed =
    keys === null
      ? ["(unparseable)"]
      : [...new Set(keys.filter((line) => !expected.has(line)).map(keyOf))];
  const draft = `${file}.overseer-${randomBytes(4).toString("hex")}`;
  await writeFile(draft, wanted);
  await rename(draft, file);
  return changed.length > 0 ? changed : ["(formatting)"];
}

/** `key\nvalue` entries of a config file; null when git cannot parse it. */
async function configKeys(
  mirror: string,
  file: string,
  opts: WorkspaceOptions,
): Promise<string[] | null> {
  try {
    const out = await git(mirror, ["config", "--file", file, "--null", "--list"], local(opts));
    return out.split("\0").filter((entry) => entry !== "");
  } catch (error) {
    if (error instanceof GitCommandError) return null;
    throw error;
  }
}

function configLines(text: string): string[] {
  const lines: string[] = [];
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const header = /^\[([^\s\]"]+)(?:\s+"([^"]*)")?\]$/.exec(line);
    if (header) section = header[2] === undefined ? (header[1] ?? "") : `${header[1]}.${header[2]}`;
    const pair = /^([\w-]+)\s*=\s*(.*)$/.exec(line);
    if (pair) lines.push(`${section}.${pair[1]?.toLowerCase()}\n${pair[2]}`);
  }
  return lines;
}

function keyOf(entry: string): string {
  return entry.split("\n")[0] ?? entry;
}

export interface MirrorFindings {
  /** Config keys the mirror had that Overseer did not write (the file is rewritten). */
  config: string[];
  /** Hooks someone installed in the mirror (moved to quarantine). */
  hooks: string[];
}

/**
 * After a run: the mirror's config back to Overseer's own, and hooks nobody asked for moved
 * aside. Overseer's git never runs hooks, but a later worker's git would.
 */
export async function checkMirror(
  task: WorkspaceTask,
  opts: WorkspaceOptions,
): Promise<MirrorFindings> {
  assertCloneUrl(task.cloneUrl);
  const p = await resolveTaskPaths(opts.home, task);
  return withFileLock(
    p.mirrorLock,
    async () => {
      if ((await stat(p.mirror).catch(() => null)) === null) return { config: [], hooks: [] };
      const config = await restoreConfig(p.mirror, task.cloneUrl, opts);
      const hooks = await quarantineHooks(p);
      if (config.length > 0 || hooks.length > 0) {
        opts.log?.warn({ mirror: p.mirror, config, hooks }, "restored the mirror after a run");
      }
      return { config, hooks };
    },
    lockOptions(opts),
  );
}

async function quarantineHooks(p: TaskPaths): Promise<string[]> {
  const dir = path.join(p.mirror, "hooks");
  const entries = await readdir(dir).catch(() => [] as string[]);
  const found: string[] = [];
  for (const name of entries) {
    if (name.endsWith(".sample")) continue;
    await moveToQuarantine(path.join(dir, name), p.quarantine, `hook-${name}`);
    found.push(name);
  }
  return found;
}

async function fetchInto(repo: string, p: TaskPaths, cloneUrl: string, opts: WorkspaceOptions) {
  const startedAt = Date.now();
  const fetch = () =>
    retryAfterStaleLocks(repo, mirrorLockScope(p, opts), () =>
      git(
        repo,
        [
          "fetch",
          "--quiet",
          "--prune",
          "--no-tags",
          "--no-write-fetch-head",
          cloneUrl,
          FETCH_REFSPEC,
        ],
        { ...authed(opts, cloneUrl), repo: { gitDir: repo } },
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
  const out = await git(home, ["ls-remote", task.cloneUrl, ref], authed(opts, task.cloneUrl));
  // ls-remote patterns match on a path tail; only the exact ref counts.
  for (const line of out.split("\n")) {
    const [sha, name] = line.split("\t");
    if (name === ref && sha) return sha;
  }
  return null;
}
