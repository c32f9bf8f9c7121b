import { httpStatusOf } from "../errors.js";
import { type GithubRequester, splitRepo } from "../github/octokit.js";
import { MAX_PROMPT_COMMENTS, type PromptComment } from "./prompt.js";

/**
 * What a runner needs from GitHub for one task: the port the runner consumes, and its
 * implementation over Octokit (documented REST endpoints only). Tests pass their own.
 */
export interface RunnerGithub {
  issueForPrompt(
    repo: string,
    issueNumber: number,
  ): Promise<{ title: string; body: string | null; comments: PromptComment[] }>;
  /** The open PR whose head is `branch` (opened by anyone, the agent included), or a new one. */
  findOrOpenPullRequest(
    repo: string,
    pull: { branch: string; base: string; title: string; body: string },
  ): Promise<{ number: number; url: string; headSha: string; created: boolean }>;
  /** Installation token for git over HTTPS; undefined when git needs none (local paths). */
  installationToken(): Promise<string | undefined>;
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
  body?: string;
  created_at: string;
}

/** Overseer's own comments (status, replies) tell the agent nothing about the task. */
const OVERSEER_MARKER = "<!-- overseer:";

export function createRunnerGithub(
  octokit: GithubRequester & { auth?: (options: object) => Promise<unknown> },
): RunnerGithub {
  return {
    async issueForPrompt(repo, issueNumber) {
      const target = { ...splitRepo(repo), issue_number: issueNumber };
      const issue = (
        await octokit.request("GET /repos/{owner}/{repo}/issues/{issue_number}", target)
      ).data as { title: string; body?: string | null; comments?: number };
      const comments = await recentComments(octokit, target, issue.comments ?? 0);
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
  };
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
