import { hasControlCharacter } from "../domain/branch.js";
import { WorkspaceError } from "./errors.js";
import { git, gitSucceeds } from "./git.js";
import { assertBranch } from "./paths.js";
import type { WorktreeHandle } from "./types.js";

/**
 * What the runner asks of a worktree after the worker has had its turn. Every command names
 * the worktree's git dir outright (see WorktreeHandle).
 */

export function worktreeRepo(worktree: WorktreeHandle) {
  return {
    repo: { gitDir: worktree.gitDir, commonDir: worktree.commonDir, workTree: worktree.path },
  };
}

/** Commits on HEAD that the base (as last fetched into the mirror) does not have. */
export async function commitsAheadOfBase(worktree: WorktreeHandle, base: string): Promise<number> {
  assertBranch(base, "base");
  const out = await git(
    worktree.path,
    ["rev-list", "--count", `refs/remotes/origin/${base}..HEAD`, "--"],
    worktreeRepo(worktree),
  );
  return Number.parseInt(out.trim(), 10);
}

/**
 * Modified, staged or untracked (not ignored) files. Submodules are not entered: a nested
 * repository's config is the worker's, and git would run its filters.
 */
export async function hasUncommittedChanges(worktree: WorktreeHandle): Promise<boolean> {
  const out = await git(
    worktree.path,
    ["status", "--porcelain", "--untracked-files=normal", "--ignore-submodules=all"],
    worktreeRepo(worktree),
  );
  return out.trim() !== "";
}

export interface CommitAuthor {
  name: string;
  email: string;
}

function assertAuthor(author: CommitAuthor) {
  const ok = (value: string) =>
    value.trim() !== "" && !hasControlCharacter(value) && !/[<>]/.test(value);
  if (!ok(author.name) || !ok(author.email)) {
    throw new WorkspaceError(`unusable commit author: ${JSON.stringify(author)}`);
  }
}

/**
 * Commits everything (not ignored files) as `author`, who is also the committer. Returns the
 * new commit, or null when there was nothing to commit.
 */
export async function commitAll(
  worktree: WorktreeHandle,
  message: string,
  author: CommitAuthor,
): Promise<string | null> {
  assertAuthor(author);
  if (message.trim() === "") throw new WorkspaceError("empty commit message");
  const repo = worktreeRepo(worktree);
  await git(worktree.path, ["add", "--all"], repo);
  if (await gitSucceeds(worktree.path, ["diff", "--cached", "--quiet"], repo)) return null;
  // Hooks (husky sets core.hooksPath) and signing are off for every Overseer command.
  await git(worktree.path, ["commit", "--quiet", "--no-verify", "-m", message], {
    ...repo,
    env: {
      GIT_AUTHOR_NAME: author.name,
      GIT_AUTHOR_EMAIL: author.email,
      GIT_COMMITTER_NAME: author.name,
      GIT_COMMITTER_EMAIL: author.email,
    },
  });
  return (await git(worktree.path, ["rev-parse", "HEAD"], repo)).trim();
}

/**
 * Commits on HEAD after `start`, or null when `start` is no longer in HEAD's history (the
 * branch was rewritten instead of added to).
 */
export async function commitsSince(
  worktree: WorktreeHandle,
  start: string,
): Promise<number | null> {
  if (!/^[0-9a-f]{40}(?:[0-9a-f]{24})?$/.test(start))
    throw new WorkspaceError(`not a commit id: ${start}`);
  const repo = worktreeRepo(worktree);
  const kept = await gitSucceeds(
    worktree.path,
    ["merge-base", "--is-ancestor", start, "HEAD"],
    repo,
  );
  if (!kept) return null;
  const out = await git(worktree.path, ["rev-list", "--count", `${start}..HEAD`, "--"], repo);
  return Number.parseInt(out.trim(), 10);
}
