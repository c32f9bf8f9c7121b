import { httpStatusOf } from "../errors.js";
import { type GithubRequester, splitRepo } from "../github/octokit.js";
import { MAX_PROMPT_COMMENTS, type PromptComment } from "./prompt.js";
import {
  type ConversationText,
  MAX_REVIEW_COMMENTS,
  type ReviewCommentText,
  type ReviewText,
} from "./revision-prompt.js";

/**
 * What a runner needs from GitHub for one task: the port the runner consumes, and its
 * implementation over Octokit (documented REST endpoints only). Tests pass their own.
 */
export interface RunnerGithub {
  /**
   * The issue's title, body and most recent comments. `ownComments`: how many of its
   * comments Overseer knows are its own (the status comment); an issue with no more
   * comments than that has none to read.
   */
  issueForPrompt(
    repo: string,
    issueNumber: number,
    ownComments?: number,
  ): Promise<{ title: string; body: string | null; comments: PromptComment[] }>;
  /** The open PR whose head is `branch` (opened by anyone, the agent included), or a new one. */
  findOrOpenPullRequest(
    repo: string,
    pull: { branch: string; base: string; title: string; body: string },
  ): Promise<{ number: number; url: string; headSha: string; created: boolean }>;
  /** Installation token for git over HTTPS; undefined when git needs none (local paths). */
  installationToken(): Promise<string | undefined>;
  /**
   * What a revision's prompt needs from the PR: its review comments, its reviews, and its
   * conversation (issue comments on the PR) created since `since` (all of it when null).
   */
  pullRequestFeedback(
    repo: string,
    prNumber: number,
    since: Date | null,
  ): Promise<{
    reviewComments: ReviewCommentText[];
    reviews: ReviewText[];
    conversation: ConversationText[];
  }>;
  /** The PR as GitHub has it now: a revision's commits must land on it, open, from the branch. */
  pullRequest(
    repo: string,
    prNumber: number,
  ): Promise<{ state: string; headRef: string; headSha: string; url: string }>;
}

/** GitHub's largest page of issue comments. */
const COMMENTS_PER_PAGE = 100;

interface PullSummary {
  number: number;
  html_url: string;
  head: { sha: string };
}

interface ApiComment {
  user?: { login?: string } | null;
  author_association?: string;
  body?: string;
  created_at: string;
}

/** Overseer's own comments (status, replies) tell the agent nothing about the task. */
const OVERSEER_MARKER = "<!-- overseer:";

export function createRunnerGithub(
  octokit: GithubRequester & { auth?: (options: object) => Promise<unknown> },
): RunnerGithub {
  return {
    async issueForPrompt(repo, issueNumber, ownComments = 0) {
      const target = { ...splitRepo(repo), issue_number: issueNumber };
      const issue = (
        await octokit.request("GET /repos/{owner}/{repo}/issues/{issue_number}", target)
      ).data as { title: string; body?: string | null; comments?: number };
      // Overseer's own comments are left out of the prompt anyway: a task that waited in
      // the queue long enough for its status comment to be posted reads no comment page
      // for it alone.
      const total = issue.comments ?? 0;
      const comments = total > ownComments ? await recentComments(octokit, target, total) : [];
      return {
        title: issue.title,
        body: issue.body ?? null,
        comments: comments.map((comment) => ({
          author: comment.user?.login ?? "ghost",
          body: comment.body ?? "",
          createdAt: comment.created_at,
        })),
      };
    },

    async findOrOpenPullRequest(repo, pull) {
      const target = splitRepo(repo);
      // Opening first costs one call in the common case; GitHub answers 422 when an open PR
      // for this head already exists (say, the agent opened one), and then we find it.
      try {
        const created = (
          await octokit.request("POST /repos/{owner}/{repo}/pulls", {
            ...target,
            head: pull.branch,
            base: pull.base,
            title: pull.title,
            body: pull.body,
          })
        ).data as PullSummary;
        return {
          number: created.number,
          url: created.html_url,
          headSha: created.head.sha,
          created: true,
        };
      } catch (error) {
        if (httpStatusOf(error) !== 422) throw error;
        const existing = (
          await octokit.request("GET /repos/{owner}/{repo}/pulls", {
            ...target,
            head: `${target.owner}:${pull.branch}`,
            state: "open",
            per_page: 1,
          })
        ).data as PullSummary[];
        const found = existing[0];
        if (!found) throw error;
        return {
          number: found.number,
          url: found.html_url,
          headSha: found.head.sha,
          created: false,
        };
      }
    },

    async installationToken() {
      if (!octokit.auth) return undefined;
      const auth = (await octokit.auth({ type: "installation" })) as { token?: string };
      return auth.token;
    },

    async pullRequestFeedback(repo, prNumber, since) {
      const target = { ...splitRepo(repo), pull_number: prNumber };
      const reviewComments = await lastPages<ApiReviewComment>(
        octokit,
        "GET /repos/{owner}/{repo}/pulls/{pull_number}/comments",
        target,
        MAX_REVIEW_COMMENTS,
      );
      const reviews = (
        await octokit.request("GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews", {
          ...target,
          per_page: COMMENTS_PER_PAGE,
        })
      ).data as ApiReview[];
      const conversation = (
        await octokit.request("GET /repos/{owner}/{repo}/issues/{issue_number}/comments", {
          ...splitRepo(repo),
          issue_number: prNumber,
          per_page: COMMENTS_PER_PAGE,
          ...(since ? { since: since.toISOString() } : {}),
        })
      ).data as ApiComment[];
      const after = (at: string | undefined) =>
        !since || (at !== undefined && new Date(at) >= since);
      return {
        reviewComments: reviewComments.map((comment) => ({
          id: comment.id,
          inReplyTo: comment.in_reply_to_id ?? null,
          path: comment.path ?? "",
          line: comment.line ?? null,
          startLine: comment.start_line ?? null,
          author: comment.user?.login ?? "ghost",
          association: comment.author_association ?? "NONE",
          body: comment.body ?? "",
          createdAt: comment.created_at,
        })),
        reviews: reviews
          .filter((review) => review.state !== "PENDING" && after(review.submitted_at ?? undefined))
          .map((review) => ({
            author: review.user?.login ?? "ghost",
            association: review.author_association ?? "NONE",
            state: review.state ?? "COMMENTED",
            body: review.body ?? "",
            submittedAt: review.submitted_at ?? "",
          })),
        conversation: conversation
          .filter((comment) => after(comment.created_at) && !isOverseers(comment))
          .map((comment) => ({
            author: comment.user?.login ?? "ghost",
            association: comment.author_association ?? "NONE",
            body: comment.body ?? "",
            createdAt: comment.created_at,
          })),
      };
    },

    async pullRequest(repo, prNumber) {
      const pull = (
        await octokit.request("GET /repos/{owner}/{repo}/pulls/{pull_number}", {
          ...splitRepo(repo),
          pull_number: prNumber,
        })
      ).data as { state: string; html_url: string; head: { ref: string; sha: string } };
      return {
        state: pull.state,
        headRef: pull.head.ref,
        headSha: pull.head.sha,
        url: pull.html_url,
      };
    },
  };
}

interface ApiReviewComment {
  id: number;
  in_reply_to_id?: number;
  path?: string;
  line?: number | null;
  start_line?: number | null;
  user?: { login?: string } | null;
  author_association?: string;
  body?: string;
  created_at: string;
}

interface ApiReview {
  user?: { login?: string } | null;
  author_association?: string;
  state?: string;
  body?: string | null;
  submitted_at?: string | null;
}

/** Overseer's own comments (status, replies) carry its marker; they are not conversation. */
function isOverseers(comment: ApiComment): boolean {
  return (comment.body ?? "").includes("<!-- overseer:");
}

/** Reads pages forwards until one comes back short, keeping the last `keep` items. */
async function lastPages<T>(
  octokit: GithubRequester,
  route: string,
  target: Record<string, unknown>,
  keep: number,
  maxPages = 5,
): Promise<T[]> {
  const items: T[] = [];
  for (let page = 1; page <= maxPages; page += 1) {
    const batch = (await octokit.request(route, { ...target, per_page: COMMENTS_PER_PAGE, page }))
      .data as T[];
    items.push(...batch);
    if (batch.length < COMMENTS_PER_PAGE) break;
  }
  return items.slice(-keep);
}

/**
 * The most recent MAX_PROMPT_COMMENTS comments, oldest first. GitHub lists comments oldest
 * first, so they are read from the last page backwards until there are enough; `total` (the
 * issue's comment count) only says where to start, and an empty page past a stale count
 * steps back.
 */
async function recentComments(
  octokit: GithubRequester,
  target: { owner: string; repo: string; issue_number: number },
  total: number,
): Promise<ApiComment[]> {
  let page = Math.ceil(total / COMMENTS_PER_PAGE);
  const collected: ApiComment[] = [];
  while (page >= 1 && collected.length < MAX_PROMPT_COMMENTS) {
    const comments = (
      await octokit.request("GET /repos/{owner}/{repo}/issues/{issue_number}/comments", {
        ...target,
        per_page: COMMENTS_PER_PAGE,
        page,
      })
    ).data as ApiComment[];
    collected.unshift(...comments.filter((comment) => !comment.body?.startsWith(OVERSEER_MARKER)));
    page -= 1;
  }
  return collected.slice(-MAX_PROMPT_COMMENTS);
}
