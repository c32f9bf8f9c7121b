import { httpStatusOf } from "../../errors.js";
import type { GithubRequester } from "../octokit.js";

/**
 * Comments Overseer writes carry a hidden marker on their first line. A delivery that may
 * have been attempted before (its process crashed after the API call, before recording
 * it) looks for the marker first, so a retry edits instead of posting twice. Only the
 * App's own comments count: anyone can type a marker, and the App may edit anyone's
 * comment, so a marker in someone else's comment must neither suppress ours nor be
 * overwritten.
 */

export interface CommentTarget {
  owner: string;
  repo: string;
  issueNumber: number;
}

/** Who wrote a comment, as GitHub's comment objects say it. */
export interface CommentAuthor {
  user?: { login?: string; type?: string } | null;
  performed_via_github_app?: { id?: number } | null;
}

/** True for a comment this App wrote (through an installation token). */
export function isOwnComment(comment: CommentAuthor, appId: number): boolean {
  return comment.performed_via_github_app?.id === appId && comment.user?.type === "Bot";
}

export interface MarkedComment {
  /** The App whose comments may carry the marker. */
  appId: number;
  /** The comment id Overseer recorded, if any. */
  knownId: number | null;
  marker: string;
  /** An earlier attempt may have posted it already. */
  mayExist: boolean;
  /** Once posted, never edited (completion comments, replies). */
  createOnly?: boolean;
}

/** Edits the known comment, or creates one; returns the comment's id. */
export async function upsertMarkedComment(
  octokit: GithubRequester,
  target: CommentTarget,
  body: string,
  options: MarkedComment,
): Promise<number> {
  let commentId = options.knownId;
  if (commentId === null && options.mayExist) {
    commentId = await findMarkedComment(octokit, target, options.marker, options.appId);
    if (commentId !== null && options.createOnly) return commentId;
  }
  if (commentId !== null) {
    const edited = await ignoreNotFound(
      octokit.request("PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}", {
        owner: target.owner,
        repo: target.repo,
        comment_id: commentId,
        body,
      }),
    );
    // Someone deleted the sticky comment: post a new one.
    if (edited) return commentId;
  }
  const created = await octokit.request(
    "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
    { owner: target.owner, repo: target.repo, issue_number: target.issueNumber, body },
  );
  return (created.data as { id: number }).id;
}

const COMMENT_PAGES_SEARCHED = 10;

async function findMarkedComment(
  octokit: GithubRequester,
  target: CommentTarget,
  marker: string,
  appId: number,
): Promise<number | null> {
  for (let page = 1; page <= COMMENT_PAGES_SEARCHED; page += 1) {
    const response = await octokit.request(
      "GET /repos/{owner}/{repo}/issues/{issue_number}/comments",
      {
        owner: target.owner,
        repo: target.repo,
        issue_number: target.issueNumber,
        per_page: 100,
        page,
      },
    );
    const comments = response.data as ({ id: number; body?: string } & CommentAuthor)[];
    const found = comments.find(
      (comment) => isOwnComment(comment, appId) && comment.body?.startsWith(marker),
    );
    if (found) return found.id;
    if (comments.length < 100) return null;
  }
  return null;
}

/** The request's result, or null when GitHub answered 404 (the thing is gone). */
export async function ignoreNotFound<T>(request: Promise<T>): Promise<T | null> {
  try {
    return await request;
  } catch (error) {
    if (httpStatusOf(error) === 404) return null;
    throw error;
  }
}
