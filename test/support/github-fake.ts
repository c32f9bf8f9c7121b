import nock from "nock";
import { API, apiPath } from "./github-app.js";
import { loadDocumentedRoutes } from "./github-stand-in.js";

const DOCUMENTED = loadDocumentedRoutes();

const CHECK_STATUSES = new Set(["queued", "in_progress", "completed"]);
const CHECK_CONCLUSIONS = new Set([
  "action_required",
  "cancelled",
  "failure",
  "neutral",
  "success",
  "skipped",
  "stale",
  "timed_out",
]);

/**
 * A check run body as GitHub's REST description allows it: a failed check throws, which
 * nock turns into a failed request the test sees.
 */
// biome-ignore lint/suspicious/noExplicitAny: request bodies as GitHub receives them
function checkRunBody(body: any, create: boolean): void {
  const problems: string[] = [];
  if (create && (typeof body.name !== "string" || typeof body.head_sha !== "string")) {
    problems.push("name and head_sha are required");
  }
  if (body.status !== undefined && !CHECK_STATUSES.has(body.status))
    problems.push(`status ${body.status}`);
  if (body.conclusion !== undefined && !CHECK_CONCLUSIONS.has(body.conclusion)) {
    problems.push(`conclusion ${body.conclusion}`);
  }
  if (body.status === "completed" && body.conclusion === undefined)
    problems.push("completed without conclusion");
  if (
    body.output &&
    (typeof body.output.title !== "string" || typeof body.output.summary !== "string")
  ) {
    problems.push("output needs title and summary");
  }
  if ((body.output?.summary?.length ?? 0) > 65_535) problems.push("summary over 65535 characters");
  for (const key of ["started_at", "completed_at"]) {
    if (body[key] !== undefined && Number.isNaN(Date.parse(body[key])))
      problems.push(`${key} not a time`);
  }
  if (problems.length > 0) throw new Error(`invalid check run body: ${problems.join("; ")}`);
}

/**
 * A stateful stand-in for the part of GitHub's REST API a whole task touches (issues,
 * comments, labels, reactions, pulls, reviews, check runs, repository config), behind nock,
 * for tests that follow a task through many steps. Every call is recorded; a call to a
 * route the fake does not know is answered 404 and listed in `unexpected`, which tests
 * assert empty. Only documented routes are served.
 */

export interface RecordedCall {
  method: string;
  path: string;
  // biome-ignore lint/suspicious/noExplicitAny: request bodies as GitHub receives them
  body: any;
}

export interface FakeCheckRun {
  id: number;
  head_sha: string;
  name: string;
  external_id?: string;
  status: string;
  conclusion?: string;
  details_url?: string;
  output?: { title: string; summary: string };
}

export interface FakePull {
  number: number;
  head: { ref: string; sha: string };
  state: "open" | "closed";
  merged: boolean;
  merge_commit_sha: string | null;
  merged_at: string | null;
}

export interface FakeReviewComment {
  id: number;
  in_reply_to_id?: number;
  path: string;
  line: number | null;
  start_line?: number | null;
  user: { login: string };
  author_association: string;
  body: string;
  created_at: string;
}

type Handler = (
  match: RegExpExecArray,
  // biome-ignore lint/suspicious/noExplicitAny: request bodies as GitHub receives them
  body: any,
  query: URLSearchParams,
) => [number, unknown] | [number, unknown, Record<string, string>];

export class GithubFake {
  readonly calls: RecordedCall[] = [];
  readonly unexpected: string[] = [];
  readonly comments = new Map<number, { id: number; issue: number; body: string }>();
  readonly labels = new Map<number, Set<string>>();
  readonly checkRuns: FakeCheckRun[] = [];
  readonly pulls = new Map<number, FakePull>();
  readonly issues = new Map<number, { title: string; body: string }>();
  readonly reviewComments = new Map<number, FakeReviewComment[]>();
  readonly reviews = new Map<number, unknown[]>();
  readonly conversation = new Map<
    number,
    {
      id: number;
      user: { login: string };
      body: string;
      created_at: string;
      author_association: string;
    }[]
  >();
  readonly permissions = new Map<string, string>();
  /** `.github/overseer.yml` of the repository (null: none). */
  config: string | null = null;
  #nextId = 70_000;
  readonly #routes: { method: string; pattern: RegExp; handle: Handler }[] = [];

  constructor(
    readonly owner: string,
    readonly repo: string,
    /** GitHub's id of the repository (the example payloads' is 186853002). */
    readonly repoId = 186_853_002,
  ) {
    this.#defineRoutes();
  }

  /**
   * Puts the fake in front of GitHub; needed in every test, since the strict network check
   * clears all mocks after each one. The fake's state carries over.
   */
  install(): void {
    for (const method of ["GET", "POST", "PATCH", "DELETE", "PUT"]) {
      nock(API)
        .persist()
        .intercept(/.*/, method)
        .optionally()
        .reply((uri, body) => this.#answer(method, uri, body));
    }
  }

  /** Calls made so far whose path mentions `needle` (an issue or PR path, say). */
  callsFor(predicate: (call: RecordedCall) => boolean): RecordedCall[] {
    return this.calls.filter(predicate);
  }

  openPull(number: number, ref: string, sha: string): FakePull {
    const pull: FakePull = {
      number,
      head: { ref, sha },
      state: "open",
      merged: false,
      merge_commit_sha: null,
      merged_at: null,
    };
    this.pulls.set(number, pull);
    return pull;
  }

  #id(): number {
    this.#nextId += 1;
    return this.#nextId;
  }

  #answer(
    method: string,
    uri: string,
    rawBody: unknown,
  ): [number, unknown] | [number, unknown, Record<string, string>] {
    const url = new URL(uri, API);
    // Under GHE_HOST the API lives below /api/v3; routes are matched without it.
    url.pathname = apiPath(url.pathname);
    const body = typeof rawBody === "string" && rawBody !== "" ? safeJson(rawBody) : rawBody;
    this.calls.push({ method, path: url.pathname, body });
    for (const route of this.#routes) {
      if (route.method !== method) continue;
      const match = route.pattern.exec(url.pathname);
      if (!match) continue;
      try {
        return route.handle(match, body, url.searchParams);
      } catch (error) {
        this.unexpected.push(`${method} ${url.pathname}: ${(error as Error).message}`);
        return [422, { message: (error as Error).message }];
      }
    }
    this.unexpected.push(`${method} ${url.pathname}${url.search}`);
    return [404, { message: "Not Found (no such route in the fake)" }];
  }

  /** `spec` as GitHub's REST description writes it; refused at once if it is not there. */
  #on(spec: string, handle: Handler, repo = this.repo): void {
    if (!DOCUMENTED.has(spec)) throw new Error(`not a documented GitHub route: ${spec}`);
    const [method = "", template = ""] = spec.split(" ");
    const path = template
      .replace("{owner}", this.owner)
      .replace("{repo}", repo.replace(".", "\\."))
      .replace(/\{path\}/, "(.+)")
      .replace(/\{[a-z_]+\}/g, "([^/]+)");
    this.#routes.push({ method, pattern: new RegExp(`^${path}$`), handle });
  }

  #defineRoutes(): void {
    const now = () => new Date().toISOString();
    const R = "/repos/{owner}/{repo}";
    this.#on("POST /app/installations/{installation_id}/access_tokens", () => [
      201,
      { token: "ghs_fake", expires_at: new Date(Date.now() + 3_600_000).toISOString() },
    ]);
    this.#on(`GET ${R}/contents/{path}`, (m) =>
      this.config === null || !/^\.github(%2F|\/)overseer\.yml$/.test(m[1] ?? "")
        ? [404, { message: "Not Found" }]
        : [200, this.config, { "content-type": "text/plain; charset=utf-8" }],
    );
    // Probot's config reader falls back to the owner's `.github` repository.
    this.#on(`GET ${R}/contents/{path}`, () => [404, { message: "Not Found" }], ".github");
    this.#on(`GET ${R}/collaborators/{username}/permission`, (m) => {
      const role = this.permissions.get(decodeURIComponent(m[1] ?? "")) ?? "write";
      return [200, { permission: role === "maintain" ? "write" : role, role_name: role }];
    });
    this.#on(`GET ${R}/issues/{issue_number}`, (m) => {
      const number = Number(m[1]);
      const issue = this.issues.get(number) ?? { title: `Issue ${number}`, body: "Do it." };
      return [200, { number, ...issue, comments: 0 }];
    });
    this.#on(`GET ${R}/issues/{issue_number}/comments`, (m, _b, query) => {
      const number = Number(m[1]);
      const since = query.get("since");
      const extra = (this.conversation.get(number) ?? []).filter(
        (comment) => !since || comment.created_at >= since,
      );
      const own = [...this.comments.values()]
        .filter((comment) => comment.issue === number)
        .map((comment) => ({ ...comment, created_at: now(), user: { login: "overseer[bot]" } }));
      return [200, [...own, ...extra]];
    });
    this.#on(`POST ${R}/issues/{issue_number}/comments`, (m, body) => {
      const comment = { id: this.#id(), issue: Number(m[1]), body: String(body.body) };
      this.comments.set(comment.id, comment);
      return [201, { id: comment.id }];
    });
    this.#on(`PATCH ${R}/issues/comments/{comment_id}`, (m, body) => {
      const comment = this.comments.get(Number(m[1]));
      if (!comment) return [404, { message: "Not Found" }];
      comment.body = String(body.body);
      return [200, { id: comment.id }];
    });
    this.#on(`POST ${R}/issues/comments/{comment_id}/reactions`, () => [201, { id: this.#id() }]);
    this.#on(`POST ${R}/pulls/comments/{comment_id}/reactions`, () => [201, { id: this.#id() }]);
    this.#on(`POST ${R}/issues/{issue_number}/labels`, (m, body) => {
      const set = this.labels.get(Number(m[1])) ?? new Set<string>();
      for (const name of body.labels as string[]) set.add(name);
      this.labels.set(Number(m[1]), set);
      return [200, [...set].map((name) => ({ name }))];
    });
    this.#on(`DELETE ${R}/issues/{issue_number}/labels/{name}`, (m) => {
      this.labels.get(Number(m[1]))?.delete(decodeURIComponent(m[2] ?? ""));
      return [200, []];
    });
    this.#on(`POST ${R}/pulls`, (_m, body) => {
      const existing = [...this.pulls.values()].find(
        (pull) => pull.head.ref === body.head && pull.state === "open",
      );
      if (existing) {
        return [
          422,
          { message: "Validation Failed", errors: [{ message: "A pull request already exists" }] },
        ];
      }
      const number = this.nextPullNumber ?? this.#id();
      this.nextPullNumber = null;
      const pull = this.openPull(number, String(body.head), "0".repeat(40));
      return [201, this.#pullJson(pull)];
    });
    this.#on(`GET ${R}/pulls/{pull_number}`, (m) => {
      const pull = this.pulls.get(Number(m[1]));
      return pull ? [200, this.#pullJson(pull)] : [404, { message: "Not Found" }];
    });
    this.#on(`GET ${R}/pulls/{pull_number}/comments`, (m, _b, query) => {
      const all = this.reviewComments.get(Number(m[1])) ?? [];
      const page = Number(query.get("page") ?? 1);
      const size = Number(query.get("per_page") ?? 30);
      return [200, all.slice((page - 1) * size, page * size)];
    });
    this.#on(`GET ${R}/pulls/{pull_number}/reviews`, (m) => [
      200,
      this.reviews.get(Number(m[1])) ?? [],
    ]);
    this.#on(`POST ${R}/check-runs`, (_m, body) => {
      checkRunBody(body, true);
      const run: FakeCheckRun = { id: this.#id(), ...body };
      this.checkRuns.push(run);
      return [201, run];
    });
    this.#on(`PATCH ${R}/check-runs/{check_run_id}`, (m, body) => {
      checkRunBody(body, false);
      const run = this.checkRuns.find((each) => each.id === Number(m[1]));
      if (!run) return [404, { message: "Not Found" }];
      Object.assign(run, body);
      return [200, run];
    });
    this.#on(`GET ${R}/commits/{ref}/check-runs`, (m) => {
      const runs = this.checkRuns.filter((run) => run.head_sha === m[1]);
      return [200, { total_count: runs.length, check_runs: runs }];
    });
  }

  /** The number the next PR opened gets (else a fresh id). */
  nextPullNumber: number | null = null;

  #pullJson(pull: FakePull) {
    return {
      number: pull.number,
      html_url: `https://github.com/${this.owner}/${this.repo}/pull/${pull.number}`,
      state: pull.state,
      merged: pull.merged,
      merge_commit_sha: pull.merge_commit_sha,
      merged_at: pull.merged_at,
      merged_by: pull.merged ? { login: "octocat" } : null,
      head: {
        ref: pull.head.ref,
        sha: pull.head.sha,
        repo: { id: this.repoId, full_name: `${this.owner}/${this.repo}` },
      },
    };
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
