import nock from "nock";
import type { Pool } from "../../src/db/pool.js";
import { listProcessGroup } from "../../src/runner/process-group.js";
import type { GitServer } from "./git-http.js";
import { API, apiPath, examplePayload, useGithubHost } from "./github-app.js";

/**
 * What end-to-end tests of documented behaviour share: the repository GitHub's example
 * payloads describe (optionally hosted by the git stand-in, so a real runner can clone and
 * push it), payload builders for the events Overseer answers, and waiting for the effect.
 */

// Tests reshape GitHub's example payloads freely; their full types would only get in the way.
// biome-ignore lint/suspicious/noExplicitAny: see above
type LoosePayload = Record<string, any>;

export const OWNER = "Codertocat";
export const NAME = "Hello-World";
export const REPO_PATH = `/repos/${OWNER}/${NAME}`;
/** The installation token the git stand-in accepts and `mockInstallationToken` hands out. */
export const INSTALLATION_TOKEN = "ghs_testinstallationtoken";

export interface Repository {
  owner: string;
  name: string;
  fullName: string;
  /** Where git finds it; what the payload's `repository.clone_url` says. */
  cloneUrl: string;
  defaultBranch: string;
}

/** The example payloads' repository as GitHub describes it (no git behind it). */
export const EXAMPLE_REPOSITORY: Repository = {
  owner: OWNER,
  name: NAME,
  fullName: `${OWNER}/${NAME}`,
  cloneUrl: `https://github.com/${OWNER}/${NAME}.git`,
  defaultBranch: "main",
};

/**
 * The example repository, hosted by the git stand-in so that runners can clone and push
 * it. The only place that decides how a test repository's git URL is made.
 */
export async function hostRepository(server: GitServer): Promise<Repository> {
  const { cloneUrl } = await server.createRepo(OWNER, NAME);
  // Overseer's git goes only to the configured GitHub host: make it the stand-in's.
  useGithubHost(server);
  return { ...EXAMPLE_REPOSITORY, cloneUrl };
}

/** Describes `repository` in a payload the way GitHub would. */
function withRepository(payload: LoosePayload, repository: Repository): LoosePayload {
  payload.repository = {
    ...payload.repository,
    name: repository.name,
    full_name: repository.fullName,
    clone_url: repository.cloneUrl,
    default_branch: repository.defaultBranch,
    owner: { ...payload.repository.owner, login: repository.owner },
  };
  return payload;
}

function labelObject(payload: LoosePayload, name: string) {
  return { ...payload.label, name };
}

/** `issues.labeled` for `label`, the issue carrying `labels` besides it. */
export function labeledPayload(
  issue: number,
  options: { label?: string; labels?: string[]; sender?: string; repository?: Repository } = {},
): LoosePayload {
  const payload = examplePayload("issues", "labeled");
  const label = options.label ?? "overseer";
  payload.issue.number = issue;
  payload.issue.title = `Make the widget faster ${issue}`;
  payload.label = labelObject(payload, label);
  payload.issue.labels = [...(options.labels ?? []), label].map((name) =>
    labelObject(payload, name),
  );
  if (options.sender) payload.sender = { ...payload.sender, login: options.sender };
  return withRepository(payload, options.repository ?? EXAMPLE_REPOSITORY);
}

export function unlabeledPayload(
  issue: number,
  options: { label?: string; sender?: string; repository?: Repository } = {},
): LoosePayload {
  const payload = examplePayload("issues", "unlabeled");
  payload.issue.number = issue;
  payload.label = labelObject(payload, options.label ?? "overseer");
  payload.issue.labels = [];
  if (options.sender) payload.sender = { ...payload.sender, login: options.sender };
  return withRepository(payload, options.repository ?? EXAMPLE_REPOSITORY);
}

/** `issues.closed`. The examples have none, so it is the reopened example, closed. */
export function closedIssuePayload(
  issue: number,
  options: { sender?: string; repository?: Repository } = {},
): LoosePayload {
  const payload = examplePayload("issues", "reopened");
  payload.action = "closed";
  payload.issue.number = issue;
  payload.issue.state = "closed";
  payload.issue.closed_at = payload.issue.updated_at;
  if (options.sender) payload.sender = { ...payload.sender, login: options.sender };
  return withRepository(payload, options.repository ?? EXAMPLE_REPOSITORY);
}

/** A new comment on the issue by `login`, a person unless `type` says otherwise. */
export function commentPayload(
  issue: number,
  body: string,
  options: { login?: string; type?: string; commentId?: number; repository?: Repository } = {},
): LoosePayload {
  const payload = examplePayload("issue_comment", "created");
  const login = options.login ?? "octocat";
  const type = options.type ?? "User";
  payload.issue.number = issue;
  payload.issue.pull_request = undefined;
  payload.comment.id = options.commentId ?? 9_000_000 + issue;
  payload.comment.body = body;
  payload.comment.user = { ...payload.comment.user, login, type };
  payload.sender = { ...payload.sender, login, type };
  return withRepository(payload, options.repository ?? EXAMPLE_REPOSITORY);
}

/** What GitHub answers about a collaborator's permission. */
export function mockPermission(login: string, role = "write"): nock.Scope {
  return nock(API)
    .get(`${REPO_PATH}/collaborators/${login}/permission`)
    .reply(200, {
      permission: role === "maintain" ? "write" : role,
      role_name: role,
      user: { login },
    });
}

/** The issue as the runner reads it for the prompt (no comments, so no comment pages). */
export function mockIssueForPrompt(issue: number, title = `Make the widget faster ${issue}`) {
  return nock(API)
    .get(`${REPO_PATH}/issues/${issue}`)
    .reply(200, { number: issue, title, body: "It is slow.", comments: 0 });
}

/**
 * A task's sticky comment and state label while its state moves on faster than the outbox
 * (queued, then running, ...): the comment is created once (unless `existing`) and may be
 * edited; labels may be swapped any number of times, at least once. Records what was sent,
 * for the test to assert where it ended.
 */
export function mockStickyEffects(
  issue: number,
  commentId: number,
  options: { existing?: boolean } = {},
) {
  const bodies: string[] = [];
  const labels: string[] = [];
  if (!options.existing) {
    nock(API)
      .post(`${REPO_PATH}/issues/${issue}/comments`, (body) => {
        if (!body.body.startsWith("<!-- overseer:status ")) return false;
        bodies.push(body.body);
        return true;
      })
      .reply(201, { id: commentId });
  }
  nock(API)
    .persist()
    .patch(`${REPO_PATH}/issues/comments/${commentId}`, (body) => {
      bodies.push(body.body);
      return true;
    })
    .optionally()
    .reply(200, {})
    .delete((uri) => apiPath(uri).startsWith(`${REPO_PATH}/issues/${issue}/labels/`))
    .optionally()
    .reply(200, []);
  nock(API)
    .persist()
    .post(`${REPO_PATH}/issues/${issue}/labels`, (body) => {
      labels.push(...body.labels);
      return true;
    })
    .reply(200, []);
  return { bodies, labels };
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

// biome-ignore lint/suspicious/noExplicitAny: rows are read as the database returns them
type Row = Record<string, any>;

export async function taskOf(pool: Pool, issue: number): Promise<Row | undefined> {
  const result = await pool.query("SELECT * FROM tasks WHERE issue_number = $1", [issue]);
  return result.rows[0];
}

export async function runsOf(pool: Pool, taskId: number): Promise<Row[]> {
  const result = await pool.query("SELECT * FROM runs WHERE task_id = $1 ORDER BY id", [taskId]);
  return result.rows;
}

export function waitForState(pool: Pool, issue: number, states: string[], timeoutMs?: number) {
  return waitFor(
    `the task of issue ${issue} to be ${states.join(" or ")}`,
    async () => {
      const task = await taskOf(pool, issue);
      return task && states.includes(task.state) ? task : undefined;
    },
    timeoutMs,
  );
}

/** Members of the group that still run (zombies have run their last instruction). */
export function livingMembers(pgid: number) {
  return listProcessGroup(pgid).filter((member) => member.state !== "Z" && member.state !== "X");
}

/** The task's current run once its worker (and `minimum` processes of its group) run. */
export function waitForWorker(pool: Pool, taskId: number, minimum = 1) {
  return waitFor(`the worker of task ${taskId} to run`, async () => {
    const run = (await runsOf(pool, taskId)).at(-1);
    return run?.state === "running" && run.pgid && livingMembers(run.pgid).length >= minimum
      ? run
      : undefined;
  });
}
