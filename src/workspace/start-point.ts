import { type GitRunOptions, gitSucceeds } from "./git.js";

/**
 * Where a new worktree's branch starts. Work that exists anywhere (pushed, or committed
 * locally) is never dropped; a branch with no work of its own moves up to the fresh base.
 */

export interface StartCandidates {
  /** refs/heads/<branch> in the mirror. */
  local: string | null;
  /** refs/remotes/origin/<branch>, just fetched. */
  remote: string | null;
  /** refs/remotes/origin/<base>, just fetched. */
  base: string;
}

export interface StartPoint {
  from: "remote-branch" | "local-branch" | "base";
  sha: string;
  /** The local tip diverged from the remote and must be kept under another ref. */
  keepLocal: boolean;
}

export type IsAncestor = (ancestor: string, descendant: string) => Promise<boolean>;

export async function decideStart(c: StartCandidates, isAncestor: IsAncestor): Promise<StartPoint> {
  const onto = async (from: "remote-branch" | "local-branch", sha: string, keepLocal = false) =>
    (await isAncestor(sha, c.base))
      ? { from: "base" as const, sha: c.base, keepLocal }
      : { from, sha, keepLocal };

  if (c.local === null && c.remote === null) return { from: "base", sha: c.base, keepLocal: false };
  if (c.local === null && c.remote !== null) return onto("remote-branch", c.remote);
  if (c.local !== null && c.remote === null) return onto("local-branch", c.local);
  const local = c.local as string;
  const remote = c.remote as string;
  if (local === remote || (await isAncestor(local, remote))) return onto("remote-branch", remote);
  // Local commits the remote has not seen yet (a run that committed, then crashed before pushing).
  if (await isAncestor(remote, local)) return onto("local-branch", local);
  // Diverged (someone pushed to the PR branch, or rewrote it): the remote is what the PR
  // shows and what success is judged by, so start there and keep the local tip aside.
  return { from: "remote-branch", sha: remote, keepLocal: true };
}

export function ancestryIn(mirror: string, opts: GitRunOptions): IsAncestor {
  return (ancestor, descendant) =>
    gitSucceeds(mirror, ["merge-base", "--is-ancestor", ancestor, descendant], opts);
}
