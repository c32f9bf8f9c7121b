import { createHash, createHmac, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import type http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { type GitServer, startGitServer } from "./git-http.js";
import { webhookExample } from "./webhook-examples.js";

/**
 * GitHub as a process would meet it: one HTTP server answering the REST API under
 * `/api/v3` (as GitHub Enterprise does, so Overseer reaches it through GHE_HOST and
 * GHE_PROTOCOL=http) and git over smart HTTP at `/<owner>/<name>.git`. It keeps repositories,
 * issues, comments, labels and pull requests in memory, sends signed webhooks shaped like
 * GitHub's own examples (and, like GitHub, never redelivers one that failed; a test can hold
 * a delivery back and send it later, again, or out of order), honours conditional requests
 * (ETag → 304, which costs no rate limit), counts the rate limit, and can be told to fail.
 *
 * It answers only routes that exist in GitHub's published REST description (checked at
 * start against the route list Octokit generates from it); anything else is a 404 that
 * the test sees in `unknownCalls`.
 */

const DOCUMENTED = loadDocumentedRoutes();

export function loadDocumentedRoutes(): Set<string> {
  const require = createRequire(import.meta.url);
  const entry = require.resolve("@octokit/plugin-rest-endpoint-methods");
  const file = path.join(path.dirname(entry), "..", "dist-src", "generated", "endpoints.js");
  const routes = new Set<string>();
  for (const match of readFileSync(file, "utf8").matchAll(
    /"(GET|POST|PATCH|PUT|DELETE) (\/[^"]*)"/g,
  )) {
    routes.add(`${match[1]} ${match[2]}`);
  }
  return routes;
}

export interface Comment {
  id: number;
  body: string;
  user: { login: string; type: string };
  performed_via_github_app: { id: number; slug: string } | null;
  created_at: string;
  updated_at: string;
}

export interface Issue {
  number: number;
  title: string;
  body: string;
  state: "open" | "closed";
  createdAt: string;
  /** Moved by every change, as GitHub's `updated_at`. */
  updatedAt: string;
  closedAt: string | null;
  labels: string[];
  comments: Comment[];
  reactions: { commentId: number; content: string }[];
  /** What GET …/issues/{n}/events lists: who labelled, unlabelled, closed or reopened it. */
  events: IssueEventRecord[];
}

export interface IssueEventRecord {
  id: number;
  event: "labeled" | "unlabeled" | "closed" | "reopened";
  actor: { login: string; id: number; type: string };
  label?: { name: string };
  created_at: string;
}

/**
 * Whether a change made on the stand-in is also delivered as a webhook (default: yes). Not
 * delivered, it is held in `held` (the delivery GitHub dropped, or one a test sends later).
 */
export interface DeliverOption {
  deliver?: boolean;
}

/** A webhook as GitHub would send it: its delivery id (GUID), event and payload. */
export interface WebhookDelivery {
  id: string;
  event: string;
  payload: Record<string, unknown>;
}

export interface Pull {
  number: number;
  head: string;
  base: string;
  title: string;
  body: string;
  state: "open" | "closed";
  merged: boolean;
  mergeCommitSha: string | null;
  mergedAt: string | null;
  mergedBy: string | null;
  headSha: string;
}

export interface RepoModel {
  id: number;
  owner: string;
  name: string;
  fullName: string;
  cloneUrl: string;
  defaultBranch: string;
  /** `.github/overseer.yml`, or null for none. */
  config: string | null;
  issues: Map<number, Issue>;
  pulls: Map<number, Pull>;
  permissions: Map<string, string>;
}

export interface ApiCall {
  method: string;
  route: string;
  status: number;
  /** False for a 304: conditional requests that match cost no rate limit. */
  counted: boolean;
  /** When it arrived (Date.now()). */
  at: number;
}

export interface Fault {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
  /**
   * Carry the request out, then answer with the fault anyway: a 502 from a proxy after
   * GitHub did the write, which a client cannot tell from a write that never happened.
   */
  afterEffect?: boolean;
  /** Never answer (until the stand-in stops): a read that hangs. `status` is unused. */
  hang?: boolean;
}

export interface StandIn {
  host: string;
  url: string;
  git: GitServer;
  installationId: number;
  appId: number;
  /** The App's own bot login, as GitHub shows it on its comments. */
  botLogin: string;
  calls: ApiCall[];
  unknownCalls: string[];
  /** Every delivery attempt, with its payload (to redeliver it, as GitHub's UI can). */
  deliveries: { id: string; event: string; status: number; payload: unknown }[];
  /** Deliveries of changes made with `deliver: false`, in the order the changes were made. */
  held: WebhookDelivery[];
  /** Where webhooks go: set once the app listens. */
  webhookUrl: string | undefined;
  /**
   * Called with each delivery the app acknowledged, before `deliver` returns: a test that
   * reads the database right after a delivery waits here for its processing.
   */
  afterAcknowledged: ((id: string) => Promise<unknown>) | undefined;
  webhookSecret: string;
  createRepo(owner: string, name: string, options?: { config?: string }): Promise<RepoModel>;
  openIssue(repo: RepoModel, title: string, options?: { body?: string; labels?: string[] }): Issue;
  /** Adds the label and delivers `issues.labeled` as `sender`. */
  label(
    repo: RepoModel,
    issue: number,
    label: string,
    sender?: string,
    options?: DeliverOption,
  ): Promise<{ status: number; id: string }>;
  /** Removes the label and delivers `issues.unlabeled` as `sender`. */
  unlabel(
    repo: RepoModel,
    issue: number,
    label: string,
    sender?: string,
    options?: DeliverOption,
  ): Promise<{ status: number; id: string }>;
  /** Closes the issue and delivers `issues.closed` as `sender`. */
  closeIssue(
    repo: RepoModel,
    issue: number,
    sender?: string,
    options?: DeliverOption,
  ): Promise<{ status: number; id: string }>;
  /** Opens a PR from an existing branch (no webhook: Overseer opens its own PRs). */
  openPull(repo: RepoModel, pull: { head: string; title?: string; body?: string }): Pull;
  /** Closes the PR unmerged (or reopens it) and delivers `pull_request.closed`/`reopened`. */
  setPullState(
    repo: RepoModel,
    pull: number,
    state: "closed" | "open",
    sender?: string,
    options?: DeliverOption,
  ): Promise<{ status: number; id: string }>;
  /** Posts a comment as `login` and delivers `issue_comment.created`. */
  comment(
    repo: RepoModel,
    issue: number,
    body: string,
    login?: string,
    options?: DeliverOption,
  ): Promise<{ status: number; id: string }>;
  /**
   * The `pull_request` webhook GitHub sends for `action` on the PR as it is now (for one
   * the stand-in does not send itself: `opened` for a PR Overseer opened through the API).
   */
  pullRequestWebhook(
    repo: RepoModel,
    pull: number,
    action: string,
    sender?: string,
  ): WebhookDelivery;
  /** Merges the PR on the git server (fast-forward of the base) and delivers `pull_request.closed`. */
  merge(
    repo: RepoModel,
    pull: number,
    by?: string,
    options?: DeliverOption,
  ): Promise<{ status: number; id: string }>;
  /** Answers API calls (not git) with `fault` until `clear()` or for `ms`. */
  fail(
    fault: Fault | ((call: { method: string; route: string }) => Fault | null),
    ms?: number,
  ): () => void;
  /** Calls that counted against the rate limit. */
  rateLimitUsed(): number;
  deliver(event: string, payload: unknown, id?: string): Promise<{ status: number; id: string }>;
  stop(): Promise<void>;
}

interface Route {
  method: string;
  template: string;
  pattern: RegExp;
  names: string[];
  handle(ctx: RouteContext): Answer;
}

interface RouteContext {
  params: Record<string, string>;
  query: URLSearchParams;
  body: Record<string, unknown>;
}

interface Answer {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Raw text instead of JSON. */
  text?: string;
}

const TOKEN = "ghs_standininstallationtoken";
const RATE_LIMIT = 5_000;

export async function startGithubStandIn(
  options: { webhookSecret?: string; rateLimit?: number } = {},
): Promise<StandIn> {
  const rateLimit = options.rateLimit ?? RATE_LIMIT;
  let counted = 0;
  const git = await startGitServer({ tokens: [TOKEN] });
  const repos = new Map<string, RepoModel>();
  const calls: ApiCall[] = [];
  const unknownCalls: string[] = [];
  const deliveries: StandIn["deliveries"] = [];
  const held: WebhookDelivery[] = [];
  let lastEventAt = 0;
  let nextId = 1000;
  const userIds = new Map<string, number>();
  let faults: ((call: { method: string; route: string }) => Fault | null) | null = null;
  /** Requests held unanswered by a `hang` fault. */
  const hung = new Set<http.ServerResponse>();
  const appId = 123;
  const installationId = 4242;
  const botLogin = "overseer[bot]";

  const repoOf = (params: Record<string, string>): RepoModel => {
    const repo = repos.get(`${params.owner}/${params.repo}`.toLowerCase());
    if (!repo) throw new NotFound();
    return repo;
  };
  const issueOf = (params: Record<string, string>): Issue => {
    const issue = repoOf(params).issues.get(Number(params.issue_number));
    if (!issue) throw new NotFound();
    return issue;
  };
  const findComment = (repo: RepoModel, id: number): Comment => {
    for (const issue of repo.issues.values()) {
      const found = issue.comments.find((comment) => comment.id === id);
      if (found) return found;
    }
    throw new NotFound();
  };

  const routes: Route[] = [
    route("POST /app/installations/{installation_id}/access_tokens", () => ({
      status: 201,
      body: {
        token: TOKEN,
        expires_at: new Date(Date.now() + 3_600_000).toISOString(),
        permissions: {
          issues: "write",
          pull_requests: "write",
          contents: "write",
          checks: "write",
        },
        repository_selection: "all",
      },
    })),
    route("GET /repos/{owner}/{repo}/contents/{path}", ({ params }) => {
      const repo = repos.get(`${params.owner}/${params.repo}`.toLowerCase());
      if (
        !repo ||
        repo.config === null ||
        decodeURIComponent(params.path ?? "") !== ".github/overseer.yml"
      ) {
        return { status: 404, body: { message: "Not Found" } };
      }
      return { status: 200, text: repo.config };
    }),
    route("GET /repos/{owner}/{repo}/issues/{issue_number}", ({ params }) => {
      const repo = repoOf(params);
      return { status: 200, body: issueJson(repo, issueOf(params)) };
    }),
    route("GET /repos/{owner}/{repo}/issues", ({ params, query }) => {
      const repo = repoOf(params);
      const labels = (query.get("labels") ?? "").split(",").filter(Boolean);
      const state = query.get("state") ?? "open";
      const list = [...repo.issues.values()].filter(
        (issue) =>
          (state === "all" || issue.state === state) &&
          labels.every((label) => issue.labels.includes(label)),
      );
      return { status: 200, body: page(list, query).map((issue) => issueJson(repo, issue)) };
    }),
    route("GET /repos/{owner}/{repo}/issues/{issue_number}/events", ({ params, query }) => ({
      status: 200,
      body: page(issueOf(params).events, query),
    })),
    route("GET /repos/{owner}/{repo}/issues/{issue_number}/comments", ({ params, query }) => ({
      status: 200,
      body: page(issueOf(params).comments, query),
    })),
    route("POST /repos/{owner}/{repo}/issues/{issue_number}/comments", ({ params, body }) => {
      const comment = newComment(String(body.body ?? ""), botLogin, "Bot", {
        id: appId,
        slug: "overseer",
      });
      const issue = issueOf(params);
      issue.comments.push(comment);
      touch(issue);
      return { status: 201, body: comment };
    }),
    route("PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}", ({ params, body }) => {
      const comment = findComment(repoOf(params), Number(params.comment_id));
      comment.body = String(body.body ?? "");
      comment.updated_at = eventTime();
      return { status: 200, body: comment };
    }),
    route(
      "POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
      ({ params, body }) => {
        const repo = repoOf(params);
        const id = Number(params.comment_id);
        findComment(repo, id);
        for (const issue of repo.issues.values()) {
          if (issue.comments.some((comment) => comment.id === id)) {
            issue.reactions.push({ commentId: id, content: String(body.content) });
          }
        }
        return { status: 201, body: { id: nextId++, content: body.content } };
      },
    ),
    route("POST /repos/{owner}/{repo}/issues/{issue_number}/labels", ({ params, body }) => {
      const issue = issueOf(params);
      for (const label of (body.labels as string[] | undefined) ?? []) {
        if (!issue.labels.includes(label)) issue.labels.push(label);
      }
      touch(issue);
      return { status: 200, body: issue.labels.map((name) => ({ name })) };
    }),
    route("DELETE /repos/{owner}/{repo}/issues/{issue_number}/labels/{name}", ({ params }) => {
      const issue = issueOf(params);
      const name = decodeURIComponent(params.name ?? "");
      if (!issue.labels.includes(name))
        return { status: 404, body: { message: "Label does not exist" } };
      issue.labels = issue.labels.filter((label) => label !== name);
      touch(issue);
      return { status: 200, body: issue.labels.map((label) => ({ name: label })) };
    }),
    route("GET /repos/{owner}/{repo}/collaborators/{username}/permission", ({ params }) => {
      const role = repoOf(params).permissions.get(params.username ?? "") ?? "admin";
      return {
        status: 200,
        body: {
          permission: role === "maintain" ? "write" : role,
          role_name: role,
          user: { login: params.username },
        },
      };
    }),
    route("POST /repos/{owner}/{repo}/pulls", ({ params, body }) => {
      const repo = repoOf(params);
      const head = String(body.head ?? "");
      if ([...repo.pulls.values()].some((pull) => pull.head === head && pull.state === "open")) {
        return {
          status: 422,
          body: {
            message: "Validation Failed",
            errors: [
              {
                resource: "PullRequest",
                code: "custom",
                message: `A pull request already exists for ${repo.owner}:${head}.`,
              },
            ],
          },
        };
      }
      const headSha = branchSha(repo, head);
      if (!headSha)
        return {
          status: 422,
          body: { message: "Validation Failed", errors: [{ field: "head", code: "invalid" }] },
        };
      const number = nextIssueNumber(repo);
      const pull: Pull = {
        number,
        head,
        base: String(body.base ?? repo.defaultBranch),
        title: String(body.title ?? ""),
        body: String(body.body ?? ""),
        state: "open",
        merged: false,
        mergeCommitSha: null,
        mergedAt: null,
        mergedBy: null,
        headSha,
      };
      repo.pulls.set(number, pull);
      return { status: 201, body: pullJson(repo, pull) };
    }),
    route("GET /repos/{owner}/{repo}/pulls", ({ params, query }) => {
      const repo = repoOf(params);
      const head = query.get("head")?.split(":").pop();
      const state = query.get("state") ?? "open";
      const list = [...repo.pulls.values()].filter(
        (pull) => (state === "all" || pull.state === state) && (!head || pull.head === head),
      );
      return { status: 200, body: page(list, query).map((pull) => pullJson(repo, pull)) };
    }),
    route("GET /repos/{owner}/{repo}/pulls/{pull_number}", ({ params }) => {
      const repo = repoOf(params);
      const pull = repo.pulls.get(Number(params.pull_number));
      if (!pull) throw new NotFound();
      pull.headSha = branchSha(repo, pull.head) ?? pull.headSha;
      return { status: 200, body: pullJson(repo, pull) };
    }),
    route("PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge", ({ params, body }) => {
      const repo = repoOf(params);
      const pull = repo.pulls.get(Number(params.pull_number));
      if (!pull) throw new NotFound();
      if (body.sha && body.sha !== branchSha(repo, pull.head)) {
        return {
          status: 409,
          body: { message: "Head branch was modified. Review and try the merge again." },
        };
      }
      mergeOnGit(repo, pull, botLogin);
      return {
        status: 200,
        body: {
          merged: true,
          sha: pull.mergeCommitSha,
          message: "Pull Request successfully merged",
        },
      };
    }),
    route("GET /repos/{owner}/{repo}/commits/{ref}/check-runs", () => ({
      status: 200,
      body: { total_count: 0, check_runs: [] },
    })),
    route("GET /repos/{owner}/{repo}/commits/{ref}/status", ({ params }) => ({
      status: 200,
      body: { state: "success", total_count: 0, statuses: [], sha: params.ref },
    })),
    route("POST /repos/{owner}/{repo}/check-runs", ({ body }) => ({
      status: 201,
      body: {
        id: nextId++,
        name: body.name,
        status: body.status ?? "queued",
        head_sha: body.head_sha,
      },
    })),
    route("PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}", ({ params, body }) => ({
      status: 200,
      body: {
        id: Number(params.check_run_id),
        status: body.status,
        conclusion: body.conclusion ?? null,
      },
    })),
  ];

  /**
   * Now, as GitHub would stamp an event, and later than every time stamped before: events
   * made one after another keep their order in their times even within a millisecond.
   */
  function eventTime(): string {
    lastEventAt = Math.max(Date.now(), lastEventAt + 1);
    return new Date(lastEventAt).toISOString();
  }

  /** A change to the issue: its `updated_at` moves, and the change happened then. */
  function touch(issue: Issue): string {
    issue.updatedAt = eventTime();
    return issue.updatedAt;
  }

  function newComment(
    body: string,
    login: string,
    type: string,
    app: Comment["performed_via_github_app"] = null,
  ): Comment {
    const now = eventTime();
    return {
      id: nextId++,
      body,
      user: { login, type },
      performed_via_github_app: app,
      created_at: now,
      updated_at: now,
    };
  }

  function recordEvent(
    issue: Issue,
    event: IssueEventRecord["event"],
    login: string,
    label?: string,
  ): void {
    let userId = userIds.get(login);
    if (userId === undefined) {
      userId = nextId++;
      userIds.set(login, userId);
    }
    issue.events.push({
      id: nextId++,
      event,
      actor: { login, id: userId, type: login.endsWith("[bot]") ? "Bot" : "User" },
      ...(label !== undefined ? { label: { name: label } } : {}),
      created_at: issue.updatedAt,
    });
  }

  /** A change's webhook, or (deliver: false) none yet: it is held, with its delivery id. */
  async function maybeDeliver(
    options: DeliverOption | undefined,
    event: string,
    payload: Record<string, unknown>,
  ): Promise<{ status: number; id: string }> {
    if (options?.deliver === false) {
      const id = randomUUID();
      held.push({ id, event, payload });
      return { status: 0, id };
    }
    return standIn.deliver(event, payload);
  }

  /**
   * A webhook payload as GitHub shapes it: its example for `event.action` (issues.closed
   * has none; it is the reopened one, closed), with this repository, installation, sender
   * and the `parts` the event is about laid over the example's.
   */
  function webhookPayload(
    event: string,
    action: string,
    repo: RepoModel,
    sender: string,
    parts: Record<string, Record<string, unknown>>,
  ): Record<string, unknown> {
    const example = webhookExample(
      event,
      event === "issues" && action === "closed" ? "reopened" : action,
    );
    const base = webhookBase(repo, sender);
    const payload: Record<string, unknown> = {
      ...example,
      action,
      installation: base.installation,
      repository: {
        ...example.repository,
        ...base.repository,
        owner: { ...example.repository.owner, ...base.repository.owner },
      },
      sender: { ...example.sender, ...base.sender },
    };
    for (const [key, part] of Object.entries(parts)) payload[key] = { ...example[key], ...part };
    return payload;
  }

  function nextIssueNumber(repo: RepoModel): number {
    return Math.max(0, ...repo.issues.keys(), ...repo.pulls.keys()) + 1;
  }

  function branchSha(repo: RepoModel, branch: string): string | null {
    try {
      return git.git(
        repo.owner,
        repo.name,
        "rev-parse",
        "--verify",
        `refs/heads/${branch}^{commit}`,
      );
    } catch {
      return null;
    }
  }

  function mergeOnGit(repo: RepoModel, pull: Pull, by: string): void {
    const head = branchSha(repo, pull.head);
    if (!head) throw new Error(`no branch ${pull.head}`);
    // A merge commit on the base, as the "Create a merge commit" button makes.
    const tree = git.git(repo.owner, repo.name, "rev-parse", `${head}^{tree}`);
    const base = branchSha(repo, pull.base);
    const commit = git.git(
      repo.owner,
      repo.name,
      "commit-tree",
      tree,
      ...(base ? ["-p", base] : []),
      "-p",
      head,
      "-m",
      `Merge pull request #${pull.number}`,
    );
    git.git(repo.owner, repo.name, "update-ref", `refs/heads/${pull.base}`, commit);
    pull.state = "closed";
    pull.merged = true;
    pull.mergeCommitSha = commit;
    pull.mergedAt = eventTime();
    pull.mergedBy = by;
    pull.headSha = head;
  }

  function issueJson(repo: RepoModel, issue: Issue) {
    return {
      id: repo.id * 100_000 + issue.number,
      number: issue.number,
      title: issue.title,
      body: issue.body,
      state: issue.state,
      labels: issue.labels.map((name) => ({ name })),
      comments: issue.comments.length,
      created_at: issue.createdAt,
      updated_at: issue.updatedAt,
      closed_at: issue.closedAt,
      html_url: `${base}/${repo.fullName}/issues/${issue.number}`,
      user: { login: "octocat", type: "User" },
    };
  }

  function pullJson(repo: RepoModel, pull: Pull) {
    return {
      number: pull.number,
      html_url: `${base}/${repo.fullName}/pull/${pull.number}`,
      state: pull.state,
      title: pull.title,
      body: pull.body,
      draft: false,
      merged: pull.merged,
      mergeable: pull.state === "open" ? true : null,
      mergeable_state: pull.state === "open" ? "clean" : "unknown",
      merge_commit_sha: pull.mergeCommitSha,
      merged_at: pull.mergedAt,
      merged_by: pull.mergedBy ? { login: pull.mergedBy } : null,
      head: { ref: pull.head, sha: pull.headSha, repo: { id: repo.id, full_name: repo.fullName } },
      base: { ref: pull.base, repo: { id: repo.id, full_name: repo.fullName } },
      user: { login: botLogin, type: "Bot" },
    };
  }

  const handleApi = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    const url = new URL(req.url ?? "/", "http://stand-in");
    if (!url.pathname.startsWith("/api/v3/")) return false;
    const pathname = url.pathname.slice("/api/v3".length);
    const method = req.method ?? "GET";
    const matched = routes
      .filter((candidate) => candidate.method === method)
      .map((candidate) => ({ candidate, match: candidate.pattern.exec(pathname) }))
      .find((entry) => entry.match);
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      if (!matched?.match) {
        unknownCalls.push(`${method} ${pathname}`);
        send(res, { status: 404, body: { message: "Not Found" } }, null);
        return;
      }
      const { candidate, match } = matched;
      const params = Object.fromEntries(
        candidate.names.map((name, i) => [name, match[i + 1] ?? ""]),
      );
      const at = Date.now();
      const fault = faults?.({ method, route: candidate.template }) ?? null;
      // A fault counts like any answer GitHub gives, before or after the route's effect.
      const answerFault = (injected: NonNullable<typeof fault>) => {
        calls.push({
          method,
          route: candidate.template,
          status: injected.status,
          counted: true,
          at,
        });
        counted += 1;
        send(
          res,
          {
            status: injected.status,
            body: injected.body ?? { message: "Server Error" },
            headers: injected.headers,
          },
          null,
        );
      };
      if (fault?.hang) {
        // Listed (status 0: no answer) so a test can tell the request arrived.
        calls.push({ method, route: candidate.template, status: 0, counted: false, at });
        hung.add(res);
        res.on("close", () => hung.delete(res));
        return;
      }
      if (fault && !fault.afterEffect) {
        answerFault(fault);
        return;
      }
      let body: Record<string, unknown> = {};
      try {
        body =
          chunks.length > 0
            ? (JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>)
            : {};
      } catch {
        send(res, { status: 400, body: { message: "Problems parsing JSON" } }, null);
        return;
      }
      let answer: Answer;
      try {
        answer = candidate.handle({ params, query: url.searchParams, body });
      } catch (error) {
        answer =
          error instanceof NotFound
            ? { status: 404, body: { message: "Not Found" } }
            : { status: 500, body: { message: String(error) } };
      }
      if (fault) {
        answerFault(fault);
        return;
      }
      const etag =
        method === "GET" && answer.status === 200
          ? `"${createHash("sha1")
              .update(JSON.stringify(answer.body ?? answer.text))
              .digest("hex")}"`
          : null;
      if (etag && req.headers["if-none-match"] === etag) {
        calls.push({ method, route: candidate.template, status: 304, counted: false, at });
        res.writeHead(304, { etag }).end();
        return;
      }
      calls.push({ method, route: candidate.template, status: answer.status, counted: true, at });
      counted += 1;
      send(res, answer, etag);
    });
    return true;
  };

  const rateLimitUsed = () => counted;

  function send(res: http.ServerResponse, answer: Answer, etag: string | null): void {
    const headers: Record<string, string> = {
      "x-ratelimit-limit": String(rateLimit),
      "x-ratelimit-remaining": String(Math.max(0, rateLimit - rateLimitUsed())),
      "x-ratelimit-reset": String(Math.floor(Date.now() / 1000) + 3600),
      ...(etag ? { etag } : {}),
      ...answer.headers,
    };
    if (answer.text !== undefined) {
      res
        .writeHead(answer.status, { ...headers, "content-type": "text/plain; charset=utf-8" })
        .end(answer.text);
      return;
    }
    const text = answer.status === 204 ? "" : JSON.stringify(answer.body ?? {});
    res
      .writeHead(answer.status, { ...headers, "content-type": "application/json; charset=utf-8" })
      .end(text);
  }

  git.handle = handleApi;
  const base = git.url;

  const standIn: StandIn = {
    host: git.host,
    url: git.url,
    git,
    installationId,
    appId,
    botLogin,
    calls,
    unknownCalls,
    deliveries,
    held,
    webhookUrl: undefined,
    afterAcknowledged: undefined,
    webhookSecret: options.webhookSecret ?? "stand-in-webhook-secret",
    async createRepo(owner, name, repoOptions = {}) {
      const { cloneUrl } = await git.createRepo(owner, name);
      const repo: RepoModel = {
        id: 500_000 + repos.size,
        owner,
        name,
        fullName: `${owner}/${name}`,
        cloneUrl,
        defaultBranch: "main",
        config: repoOptions.config ?? null,
        issues: new Map(),
        pulls: new Map(),
        permissions: new Map(),
      };
      repos.set(repo.fullName.toLowerCase(), repo);
      return repo;
    },
    openIssue(repo, title, issueOptions = {}) {
      const now = eventTime();
      const issue: Issue = {
        number: nextIssueNumber(repo),
        title,
        body: issueOptions.body ?? "",
        state: "open",
        createdAt: now,
        updatedAt: now,
        closedAt: null,
        labels: [...(issueOptions.labels ?? [])],
        comments: [],
        reactions: [],
        events: [],
      };
      for (const label of issue.labels) recordEvent(issue, "labeled", "octocat", label);
      repo.issues.set(issue.number, issue);
      return issue;
    },
    async label(repo, number, label, sender = "octocat", deliverOptions) {
      const issue = repo.issues.get(number);
      if (!issue) throw new Error(`no issue #${number}`);
      if (!issue.labels.includes(label)) issue.labels.push(label);
      touch(issue);
      recordEvent(issue, "labeled", sender, label);
      return maybeDeliver(
        deliverOptions,
        "issues",
        webhookPayload("issues", "labeled", repo, sender, {
          label: { name: label },
          issue: issueJson(repo, issue),
        }),
      );
    },
    async unlabel(repo, number, label, sender = "octocat", deliverOptions) {
      const issue = repo.issues.get(number);
      if (!issue) throw new Error(`no issue #${number}`);
      issue.labels = issue.labels.filter((each) => each !== label);
      touch(issue);
      recordEvent(issue, "unlabeled", sender, label);
      return maybeDeliver(
        deliverOptions,
        "issues",
        webhookPayload("issues", "unlabeled", repo, sender, {
          label: { name: label },
          issue: issueJson(repo, issue),
        }),
      );
    },
    async closeIssue(repo, number, sender = "octocat", deliverOptions) {
      const issue = repo.issues.get(number);
      if (!issue) throw new Error(`no issue #${number}`);
      issue.state = "closed";
      issue.closedAt = touch(issue);
      recordEvent(issue, "closed", sender);
      return maybeDeliver(
        deliverOptions,
        "issues",
        webhookPayload("issues", "closed", repo, sender, { issue: issueJson(repo, issue) }),
      );
    },
    openPull(repo, spec) {
      const headSha = branchSha(repo, spec.head);
      if (!headSha) throw new Error(`no branch ${spec.head}`);
      const pull: Pull = {
        number: nextIssueNumber(repo),
        head: spec.head,
        base: repo.defaultBranch,
        title: spec.title ?? spec.head,
        body: spec.body ?? "",
        state: "open",
        merged: false,
        mergeCommitSha: null,
        mergedAt: null,
        mergedBy: null,
        headSha,
      };
      repo.pulls.set(pull.number, pull);
      return pull;
    },
    async setPullState(repo, number, state, sender = "octocat", deliverOptions) {
      const pull = repo.pulls.get(number);
      if (!pull) throw new Error(`no pull #${number}`);
      if (pull.merged) throw new Error(`pull #${number} is merged`);
      pull.state = state;
      const action = state === "closed" ? "closed" : "reopened";
      const { payload } = standIn.pullRequestWebhook(repo, number, action, sender);
      return maybeDeliver(deliverOptions, "pull_request", payload);
    },
    async comment(repo, number, body, login = "octocat", deliverOptions) {
      const issue = repo.issues.get(number);
      if (!issue) throw new Error(`no issue #${number}`);
      const comment = newComment(body, login, "User");
      issue.comments.push(comment);
      touch(issue);
      return maybeDeliver(
        deliverOptions,
        "issue_comment",
        webhookPayload("issue_comment", "created", repo, login, {
          issue: { ...issueJson(repo, issue), pull_request: undefined },
          comment: { ...comment },
        }),
      );
    },
    pullRequestWebhook(repo, number, action, sender = "octocat") {
      const pull = repo.pulls.get(number);
      if (!pull) throw new Error(`no pull #${number}`);
      const payload = webhookPayload("pull_request", action, repo, sender, {
        pull_request: pullJson(repo, pull),
      });
      return { id: randomUUID(), event: "pull_request", payload: { ...payload, number } };
    },
    async merge(repo, number, by = "octocat", deliverOptions) {
      const pull = repo.pulls.get(number);
      if (!pull) throw new Error(`no pull #${number}`);
      mergeOnGit(repo, pull, by);
      const { payload } = standIn.pullRequestWebhook(repo, number, "closed", by);
      return maybeDeliver(deliverOptions, "pull_request", payload);
    },
    fail(fault, ms) {
      faults = typeof fault === "function" ? fault : () => fault;
      const clear = () => {
        faults = null;
      };
      if (ms !== undefined) setTimeout(clear, ms).unref();
      return clear;
    },
    rateLimitUsed,
    async deliver(event, payload, id = randomUUID()) {
      if (!standIn.webhookUrl) throw new Error("no webhook URL yet");
      const body = JSON.stringify(payload);
      const signature = createHmac("sha256", standIn.webhookSecret).update(body).digest("hex");
      let status = 0;
      try {
        const response = await fetch(standIn.webhookUrl, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "x-github-event": event,
            "x-github-delivery": id,
            "x-hub-signature-256": `sha256=${signature}`,
            "user-agent": "GitHub-Hookshot/stand-in",
          },
          body,
        });
        await response.text();
        status = response.status;
      } catch {
        // A delivery that reached nobody; GitHub records it as failed and moves on.
      }
      deliveries.push({ id, event, status, payload });
      if (status >= 200 && status < 300) await standIn.afterAcknowledged?.(id);
      return { status, id };
    },
    stop: () => {
      for (const res of hung) res.destroy();
      return git.stop();
    },
  };

  function webhookBase(repo: RepoModel, sender: string) {
    return {
      repository: {
        id: repo.id,
        name: repo.name,
        full_name: repo.fullName,
        clone_url: repo.cloneUrl,
        default_branch: repo.defaultBranch,
        owner: { login: repo.owner },
      },
      installation: { id: installationId },
      sender: { login: sender, type: "User" },
    };
  }

  return standIn;
}

class NotFound extends Error {}

function route(spec: string, handle: Route["handle"]): Route {
  if (!DOCUMENTED.has(spec))
    throw new Error(`the stand-in may only answer documented routes: ${spec}`);
  const [method = "GET", template = "/"] = spec.split(" ");
  const names: string[] = [];
  const pattern = new RegExp(
    `^${template.replace(/\{(\w+)\}/g, (_, name: string) => {
      names.push(name);
      // {path} of the contents API may hold slashes; every other parameter is one segment.
      return name === "path" ? "(.+)" : "([^/]+)";
    })}$`,
  );
  return { method, template, pattern, names, handle };
}

function page<T>(items: T[], query: URLSearchParams): T[] {
  const perPage = Math.min(100, Number(query.get("per_page") ?? 30) || 30);
  const pageNumber = Math.max(1, Number(query.get("page") ?? 1) || 1);
  return items.slice((pageNumber - 1) * perPage, pageNumber * perPage);
}
