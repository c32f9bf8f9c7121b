import type { PromptComment } from "../runner/prompt.js";
import type { GithubRequester } from "./outbox-dispatcher.js";

/** What a runner needs from GitHub for one task; documented REST endpoints only. */
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

const PROMPT_COMMENTS = 20;

function split(repo: string): { owner: string; repo: string } {
  const [owner = "", name = ""] = repo.split("/");
  return { owner, repo: name };
}

interface PullSummary {
  number: number;
  html_url: string;
  head: { sha: string };
}

export function createRunnerGithub(
  octokit: GithubRequester & { auth?: (options: object) => Promise<unknown> },
): RunnerGithub {
  return {
    async issueForPrompt(repo, issueNumber) {
      const target = { ...split(repo), issue_number: issueNumber };
      const issue = (
        await octokit.request("GET /repos/{owner}/{repo}/issues/{issue_number}", target)
      ).data as { title: string; body?: string | null; comments?: number };
      const total = issue.comments ?? 0;
      // The most recent comments: the last page of PROMPT_COMMENTS-sized pages.
      const comments =
        total === 0
          ? []
          : ((
              await octokit.request("GET /repos/{owner}/{repo}/issues/{issue_number}/comments", {
                ...target,
                per_page: PROMPT_COMMENTS,
                page: Math.max(1, Math.ceil(total / PROMPT_COMMENTS)),
              })
            ).data as { user?: { login?: string } | null; body?: string; created_at: string }[]);
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
      const target = split(repo);
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
        if ((error as { status?: number }).status !== 422) throw error;
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
