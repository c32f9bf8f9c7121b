/**
 * The part of Octokit Overseer uses, and the helpers every caller of it needs. Everything
 * that talks to GitHub takes a GithubRequester, so tests and other hosts can pass a
 * stand-in; only documented REST routes are requested.
 */

export interface GithubRequester {
  request(route: string, parameters?: Record<string, unknown>): Promise<GithubResponse>;
}

/** Octokit's answer; status and headers matter to conditional requests (ETag). */
export interface GithubResponse {
  data: unknown;
  status?: number;
  headers?: Record<string, unknown>;
}

/** `owner/name` → the route parameters GitHub's REST API takes. */
export function splitRepo(fullName: string): { owner: string; repo: string } {
  const [owner = "", repo = ""] = fullName.split("/");
  return { owner, repo };
}
