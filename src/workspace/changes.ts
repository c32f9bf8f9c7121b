import { hasControlCharacter } from "../domain/branch.js";
import { WorkspaceError } from "./errors.js";
import { git, gitSucceeds } from "./git.js";
import { assertBranch } from "./paths.js";

/** What the runner asks of a worktree after the worker has had its turn. */

/** Commits on HEAD that the base (as last fetched into the mirror) does not have. */
export async function commitsAheadOfBase(worktreePath: string, base: string): Promise<number> {
  assertBranch(base, "base");
  const out = await git(worktreePath, [
    "rev-list",
    "--count",
    `refs/remotes/origin/${base}..HEAD`,
    "--",
  ]);
  return Number.parseInt(out.trim(), 10);
}

/** Modified, staged or untracked (not ignored) files. */
export async function hasUncommittedChanges(worktreePath: string): Promise<boolean> {
  const out = await git(worktreePath, ["status", "--porcelain", "--untracked-files=normal"]);
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
  worktreePath: string,
  message: string,
  author: CommitAuthor,
): Promise<string | null> {
  assertAuthor(author);
  if (message.trim() === "") throw new WorkspaceError("empty commit message");
  await git(worktreePath, ["add", "--all"]);
  if (await gitSucceeds(worktreePath, ["diff", "--cached", "--quiet"])) return null;
  await git(worktreePath, ["commit", "--quiet", "--no-verify", "-m", message], {
    env: {
      GIT_AUTHOR_NAME: author.name,
      GIT_AUTHOR_EMAIL: author.email,
      GIT_COMMITTER_NAME: author.name,
      GIT_COMMITTER_EMAIL: author.email,
    },
    // The repository's hooks are code the agent may have written or installed (husky
    // sets core.hooksPath); signing needs keys this host may not have.
    config: { "core.hooksPath": "/dev/null", "commit.gpgSign": "false" },
  });
  return (await git(worktreePath, ["rev-parse", "HEAD"])).trim();
}

/**
 * Commits on HEAD after `start`, or null when `start` is no longer in HEAD's history (the
 * branch was rewritten instead of added to).
 */
export async function commitsSince(worktreePath: string, start: string): Promise<number | null> {
  if (!/^[0-9a-f]{40}(?:[0-9a-f]{24})?$/.test(start))
    throw new WorkspaceError(`not a commit id: ${start}`);
  const kept = await gitSucceeds(worktreePath, ["merge-base", "--is-ancestor", start, "HEAD"]);
  if (!kept) return null;
  const out = await git(worktreePath, ["rev-list", "--count", `${start}..HEAD`, "--"]);
  return Number.parseInt(out.trim(), 10);
}
