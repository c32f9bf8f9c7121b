import nock from "nock";
import type { Pool } from "../../src/db/pool.js";
import { API, examplePayload, INSTALLATION_ID } from "./github-app.js";

/**
 * Shared fixtures for the hardening tests: the example payloads' repository, tasks seeded
 * as a runner leaves them, and the GitHub answers those tests read.
 */

export const OWNER = "Codertocat";
export const REPO = "Hello-World";
export const REPO_PATH = `/repos/${OWNER}/${REPO}`;
/** The repository id in @octokit/webhooks-examples. */
export const REPO_ID = 186853002;
export const PUSHED_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
export const MERGE_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
export const STATUS_COMMENT_ID = 42;

export async function seedRepo(pool: Pool): Promise<number> {
  const result = await pool.query<{ id: number }>(
    `INSERT INTO repos (github_id, full_name, installation_id, clone_url, default_branch)
     VALUES ($1, $2, $3, 'https://github.com/Codertocat/Hello-World.git', 'main')
     ON CONFLICT (github_id) DO UPDATE SET full_name = EXCLUDED.full_name
     RETURNING id`,
    [REPO_ID, `${OWNER}/${REPO}`, INSTALLATION_ID],
  );
  return result.rows[0]?.id ?? 0;
}

export const branchOf = (issue: number) => `overseer/${issue}-make-it-so`;

export interface SeedOptions {
  prNumber?: number | null;
  config?: Record<string, unknown>;
  riskLabelled?: boolean;
  approvedBy?: string | null;
  approvedSha?: string | null;
  attempts?: number;
  lastError?: string | null;
  /** Default STATUS_COMMENT_ID; null as if the status comment was never posted. */
  statusCommentId?: number | null;
}

/** A task as the runner leaves it: status comment 42 and its state label already exist. */
export async function seedTask(
  pool: Pool,
  issue: number,
  state: string,
  options: SeedOptions = {},
): Promise<number> {
  const repoId = await seedRepo(pool);
  const prNumber = options.prNumber === undefined ? prFor(issue) : options.prNumber;
  const result = await pool.query<{ id: number }>(
    `INSERT INTO tasks (repo_id, issue_number, title, state, attempts, branch, pr_number, pr_url,
                        pr_head_sha, config, risk_labelled, approved_by, approved_sha,
                        status_comment_id, state_label, last_error, started_at)
     VALUES ($1, $2, 'Make it so', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
             now() - interval '5 minutes')
     RETURNING id`,
    [
      repoId,
      issue,
      state,
      options.attempts ?? 1,
      branchOf(issue),
      prNumber,
      prNumber === null ? null : pullUrl(prNumber),
      prNumber === null ? null : PUSHED_SHA,
      JSON.stringify({
        label: "overseer",
        merge: "manual",
        mergeMethod: "squash",
        riskLabels: ["risk:high"],
        commanders: "write",
        ...options.config,
      }),
      options.riskLabelled ?? false,
      options.approvedBy ?? null,
      options.approvedSha ?? null,
      options.statusCommentId === undefined ? STATUS_COMMENT_ID : options.statusCommentId,
      `overseer:${state.replace(/_/g, "-")}`,
      options.lastError ?? null,
    ],
  );
  return result.rows[0]?.id ?? 0;
}

/** Each issue's PR number, so tests never share one. */
export const prFor = (issue: number) => issue + 5_000;
export const pullUrl = (pr: number) => `https://github.com/${OWNER}/${REPO}/pull/${pr}`;

export async function taskRow(pool: Pool, id: number) {
  return (await pool.query("SELECT * FROM tasks WHERE id = $1", [id])).rows[0];
}

/** GET /repos/{owner}/{repo}/pulls/{pull_number} as GitHub answers it. */
export function apiPull(
  issue: number,
  options: {
    merged?: boolean;
    state?: "open" | "closed";
    number?: number;
    head?: { ref?: string; sha?: string; repo?: { id: number; full_name: string } | null };
    body?: string;
    extra?: Record<string, unknown>;
  } = {},
) {
  const merged = options.merged ?? false;
  const number = options.number ?? prFor(issue);
  return {
    number,
    html_url: pullUrl(number),
    state: options.state ?? (merged ? "closed" : "open"),
    merged,
    merge_commit_sha: merged ? MERGE_SHA : null,
    merged_at: merged ? "2026-11-23T15:00:00Z" : null,
    merged_by: merged ? { login: "octocat" } : null,
    body: options.body ?? `Closes #${issue}`,
    head: {
      ref: branchOf(issue),
      sha: PUSHED_SHA,
      repo: { id: REPO_ID, full_name: `${OWNER}/${REPO}` },
      ...options.head,
    },
    base: { ref: "main" },
    ...options.extra,
  };
}

/** A signed pull_request webhook as GitHub would send it for this issue's PR. */
export function pullPayload(
  action: "closed" | "reopened" | "synchronize",
  issue: number,
  options: { merged?: boolean; number?: number; headRef?: string; body?: string } = {},
) {
  const payload = examplePayload("pull_request", action === "closed" ? "closed" : "reopened");
  payload.action = action;
  const number = options.number ?? prFor(issue);
  payload.number = number;
  payload.pull_request.number = number;
  payload.pull_request.merged = options.merged ?? false;
  payload.pull_request.body = options.body ?? "";
  payload.pull_request.head.ref = options.headRef ?? branchOf(issue);
  payload.pull_request.head.sha = PUSHED_SHA;
  return payload;
}

export function issuePayload(
  action: "labeled" | "unlabeled" | "closed",
  issue: number,
  options: {
    label?: string;
    labels?: string[];
    sender?: { login: string; type?: string; id?: number };
  } = {},
) {
  const payload = examplePayload("issues", action === "unlabeled" ? "unlabeled" : "labeled");
  payload.action = action;
  payload.issue.number = issue;
  payload.issue.title = "Make it so";
  const label = options.label ?? "overseer";
  payload.label = { ...payload.label, name: label };
  const names = options.labels ?? (action === "unlabeled" ? [] : [label]);
  payload.issue.labels = names.map((name) => ({ ...payload.label, name }));
  if (options.sender) {
    payload.sender = {
      ...payload.sender,
      login: options.sender.login,
      id: options.sender.id ?? 9_000_001,
      type: options.sender.type ?? "User",
    };
  }
  return payload;
}

export function commentPayload(issue: number, body: string, login = "octocat", commentId = 0) {
  const payload = examplePayload("issue_comment", "created");
  payload.issue.number = issue;
  payload.issue.pull_request = undefined;
  payload.comment.id = commentId || 8_000_000 + issue;
  payload.comment.body = body;
  payload.comment.user = { ...payload.comment.user, login, id: 9_000_002, type: "User" };
  payload.sender = { ...payload.sender, login, id: 9_000_002, type: "User" };
  return payload;
}

export function mockPermission(login: string, role: string): nock.Scope {
  return nock(API)
    .get(`${REPO_PATH}/collaborators/${login}/permission`)
    .reply(200, {
      permission: role === "maintain" ? "write" : role === "triage" ? "read" : role,
      role_name: role,
      user: { login },
    });
}

/** What a task moving from `from` to `to` sends: its status comment edit and label swap. */
export function mockStateChange(issue: number, from: string, to: string) {
  const statusBodies: string[] = [];
  const scope = nock(API)
    .patch(`${REPO_PATH}/issues/comments/${STATUS_COMMENT_ID}`, (body) => {
      statusBodies.push(body.body);
      return true;
    })
    .reply(200, {})
    .post(`${REPO_PATH}/issues/${issue}/labels`, { labels: [`overseer:${to.replace(/_/g, "-")}`] })
    .reply(200, [])
    .delete(`${REPO_PATH}/issues/${issue}/labels/overseer%3A${from.replace(/_/g, "-")}`)
    .reply(200, []);
  return { scope, statusBodies };
}

/** Replies (new comments) posted on the issue, collected. */
export function mockReplies(issue: number, times = 1) {
  const bodies: string[] = [];
  const scope = nock(API)
    .post(`${REPO_PATH}/issues/${issue}/comments`, (body) => {
      bodies.push(body.body);
      return true;
    })
    .times(times)
    .reply(201, () => ({ id: 70_000 + bodies.length }));
  return { scope, bodies };
}
