import { mkdir, realpath } from "node:fs/promises";
import path from "node:path";
import { branchName, hasControlCharacter, isValidBranchName } from "../domain/branch.js";
import { WorkspaceError } from "./errors.js";
import type { RemoteProtocol } from "./git.js";
import { remoteProtocolOf } from "./remote-url.js";
import type { WorkspaceTask } from "./types.js";

/**
 * Where everything lives under OVERSEER_HOME. Names come from webhook payloads, so each
 * one is validated before it becomes part of a path or a git argument.
 */

export interface TaskPaths {
  home: string;
  mirror: string;
  worktree: string;
  /** Every worktree of this repository: a lock git left in one may belong to a process in any. */
  repoWorktrees: string;
  quarantine: string;
  taskLock: string;
  mirrorLock: string;
  /**
   * Serialises changes to the mirror's worktree registry: two `git worktree add` at once
   * can each trip over the other's half-written admin dir ("failed to read …/commondir").
   */
  registryLock: string;
  /** Records when the last fetch started, so queued fetches can coalesce. */
  fetchStamp: string;
}

const NAME_PART = /^[A-Za-z0-9._-]{1,100}$/;

function repoParts(repoFullName: string): [string, string] {
  const parts = repoFullName.split("/");
  const [owner, repo] = parts;
  const ok = (part: string | undefined): part is string =>
    part !== undefined && NAME_PART.test(part) && part !== "." && part !== "..";
  if (parts.length !== 2 || !ok(owner) || !ok(repo)) {
    throw new WorkspaceError(`not a repository name: ${JSON.stringify(repoFullName)}`);
  }
  // GitHub names are case-insensitive; one spelling on disk avoids two mirrors of one repo.
  return [owner.toLowerCase(), repo.toLowerCase()];
}

const realHomes = new Map<string, Promise<string>>();

/**
 * Git records worktree paths with symlinks resolved; resolving the home once makes our
 * paths compare equal to git's.
 */
export function resolveHome(home: string): Promise<string> {
  const absolute = path.resolve(home);
  let real = realHomes.get(absolute);
  if (!real) {
    real = mkdir(absolute, { recursive: true }).then(() => realpath(absolute));
    real.catch(() => realHomes.delete(absolute));
    realHomes.set(absolute, real);
  }
  return real;
}

export function taskPaths(home: string, task: Pick<WorkspaceTask, "repoFullName" | "issueNumber">) {
  const [owner, repo] = repoParts(task.repoFullName);
  if (!Number.isSafeInteger(task.issueNumber) || task.issueNumber <= 0) {
    throw new WorkspaceError(`not an issue number: ${task.issueNumber}`);
  }
  const issue = String(task.issueNumber);
  const locks = path.join(home, "locks", owner, repo);
  return {
    home,
    mirror: path.join(home, "mirrors", owner, `${repo}.git`),
    worktree: path.join(home, "worktrees", owner, repo, issue),
    repoWorktrees: path.join(home, "worktrees", owner, repo),
    quarantine: path.join(home, "quarantine", owner, repo),
    taskLock: path.join(locks, `task-${issue}.lock`),
    mirrorLock: path.join(locks, "mirror.lock"),
    registryLock: path.join(locks, "worktrees.lock"),
    fetchStamp: path.join(locks, "mirror.fetched"),
  } satisfies TaskPaths;
}

/** Validates the task's names before anything is created on disk, then resolves the paths. */
export async function resolveTaskPaths(
  home: string,
  task: Pick<WorkspaceTask, "repoFullName" | "issueNumber">,
): Promise<TaskPaths> {
  taskPaths(path.resolve(home), task);
  return taskPaths(await resolveHome(home), task);
}

/** The recorded branch wins; otherwise the name derived from issue and title. */
export function taskBranch(task: WorkspaceTask): string {
  const branch = task.branch ?? branchName(task.issueNumber, task.title);
  assertBranch(branch, "task branch");
  return branch;
}

export function assertBranch(name: string, what: string): void {
  if (!isValidBranchName(name)) {
    throw new WorkspaceError(`${what} is not a valid branch name: ${JSON.stringify(name)}`);
  }
}

/**
 * What git may clone from: an http(s) URL and nothing else. Refused: option-looking strings,
 * `transport::address` remote helpers (ext:: runs commands), file: URLs and plain paths
 * (a repository on this host is not GitHub), ssh and git transports, and passwords in
 * URLs, which would end up in config.
 */
export function assertCloneUrl(url: string): RemoteProtocol {
  const bad = (why: string) => new WorkspaceError(`unusable clone_url (${why})`);
  if (url === "" || url.startsWith("-") || hasControlCharacter(url)) {
    throw bad("empty, option-like or with control characters");
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*::/.test(url)) throw bad("remote helpers are not allowed");
  const protocol = remoteProtocolOf(url);
  const parsed = new URL(url);
  if (parsed.username !== "" || parsed.password !== "") {
    throw bad("credentials belong in the token, not the URL");
  }
  if (parsed.host === "") throw bad("no host");
  return protocol;
}
