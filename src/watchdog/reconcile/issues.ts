import { parse as parseYaml } from "yaml";
import {
  parseRepoConfig,
  REPO_CONFIG_MAX_BYTES,
  REPO_CONFIG_PATH,
  type RepoConfig,
} from "../../config/repo-config.js";
import type { Queryable } from "../../db/pool.js";
import type { RepoRow } from "../../db/repos.js";
import { configReadKey } from "../../github/config-reads.js";
import type { GithubRequester } from "../../github/octokit.js";
import type { WatchdogContext } from "../detector.js";
import { readConditionally } from "./conditional.js";
import { repositoryOf } from "./shared.js";

/**
 * What the watchdog reads about issues, every read conditional: the repository's config
 * (for its trigger label), the open issues carrying a label, one issue, and an issue's
 * events (who added or removed the label, who closed the issue).
 */

/** GitHub's largest page; lists longer than MAX_PAGES pages are read that far only. */
const PER_PAGE = 100;
const MAX_PAGES = 10;

export type PolledConfig = { ok: true; config: RepoConfig } | { ok: false; reason: string };

/**
 * The repository's `.github/overseer.yml`, else the owner's `.github` repository's (where
 * Probot's config reader looks too), parsed as a delivery's would be. `_extends` is not
 * followed: such a repository's trigger label is not polled (its deliveries still work).
 */
export async function readPolledConfig(
  ctx: WatchdogContext,
  github: GithubRequester,
  repo: RepoRow,
): Promise<PolledConfig> {
  const { owner, name } = repositoryOf(repo);
  let text = await readConfigFile(ctx, github, owner.login, name);
  if (text === null && name !== ".github") {
    text = await readConfigFile(ctx, github, owner.login, ".github");
  }
  if (text === null) return configFrom(null);
  if (Buffer.byteLength(text) > REPO_CONFIG_MAX_BYTES) {
    return { ok: false, reason: `${REPO_CONFIG_PATH} is too large` };
  }
  let raw: unknown;
  try {
    raw = parseYaml(text, { logLevel: "error" }) || {};
  } catch {
    return { ok: false, reason: `${REPO_CONFIG_PATH} is not valid YAML` };
  }
  if (raw && typeof raw === "object" && "_extends" in raw) {
    return {
      ok: false,
      reason: `${REPO_CONFIG_PATH} uses _extends, which polling does not follow`,
    };
  }
  return configFrom(raw);
}

function configFrom(raw: unknown): PolledConfig {
  const parsed = parseRepoConfig(raw);
  return parsed.ok ? parsed : { ok: false, reason: `${REPO_CONFIG_PATH} is invalid` };
}

async function readConfigFile(
  ctx: WatchdogContext,
  github: GithubRequester,
  owner: string,
  repo: string,
): Promise<string | null> {
  const answer = await readConditionally(ctx.pool, github, {
    key: configReadKey(owner, repo),
    route: "GET /repos/{owner}/{repo}/contents/{path}",
    params: { owner, repo, path: REPO_CONFIG_PATH, mediaType: { format: "raw" } },
    absentIsAnswer: true,
    now: ctx.now,
    store: !ctx.readOnly,
  });
  return typeof answer.data === "string" ? answer.data : null;
}

export interface ListedIssue {
  number: number;
  title: string;
  state: string;
  labels: { name: string }[];
  pull_request?: unknown;
}

/** Every page of a list, each page conditional under `key:<page>`. */
async function readPages<T>(
  db: Queryable,
  github: GithubRequester,
  read: {
    key: string;
    route: string;
    params: Record<string, unknown>;
    now: () => Date;
    store: boolean;
  },
): Promise<T[]> {
  const items: T[] = [];
  for (let page = 1; page <= MAX_PAGES; page++) {
    const answer = await readConditionally(db, github, {
      key: `${read.key}:${page}`,
      route: read.route,
      params: { ...read.params, per_page: PER_PAGE, page },
      now: read.now,
      store: read.store,
    });
    const pageItems = (answer.data as T[] | null) ?? [];
    items.push(...pageItems);
    if (pageItems.length < PER_PAGE) break;
  }
  return items;
}

/** The open issues (not PRs) that carry `label`: one conditional call per 100 of them. */
export async function openIssuesLabelled(
  ctx: WatchdogContext,
  github: GithubRequester,
  repo: RepoRow,
  label: string,
): Promise<ListedIssue[]> {
  const { owner, name } = repositoryOf(repo);
  const listed = await readPages<ListedIssue>(ctx.pool, github, {
    key: `issues:${repo.githubId}:${label}`,
    route: "GET /repos/{owner}/{repo}/issues",
    params: { owner: owner.login, repo: name, labels: label, state: "open" },
    now: ctx.now,
    store: !ctx.readOnly,
  });
  return listed.filter((issue) => issue.pull_request === undefined);
}

/** One issue as the API has it now. */
export async function readIssue(
  ctx: WatchdogContext,
  github: GithubRequester,
  repo: RepoRow,
  number: number,
): Promise<ListedIssue | null> {
  const { owner, name } = repositoryOf(repo);
  const answer = await readConditionally(ctx.pool, github, {
    key: `issue:${repo.githubId}:${number}`,
    route: "GET /repos/{owner}/{repo}/issues/{issue_number}",
    params: { owner: owner.login, repo: name, issue_number: number },
    absentIsAnswer: true,
    now: ctx.now,
    store: !ctx.readOnly,
  });
  return (answer.data as ListedIssue | null) ?? null;
}

export interface IssueEventRecord {
  id: number;
  event: string;
  actor: { login: string; id?: number; type?: string } | null;
  label?: { name: string };
  created_at: string;
}

/** The key under which an issue's events are stored (and what was acted on is marked). */
export function eventsKey(repo: RepoRow, number: number): string {
  return `events:${repo.githubId}:${number}`;
}

/** The issue's events, oldest first (GitHub's order). */
export function issueEvents(
  ctx: WatchdogContext,
  github: GithubRequester,
  repo: RepoRow,
  number: number,
): Promise<IssueEventRecord[]> {
  const { owner, name } = repositoryOf(repo);
  return readPages<IssueEventRecord>(ctx.pool, github, {
    key: eventsKey(repo, number),
    route: "GET /repos/{owner}/{repo}/issues/{issue_number}/events",
    params: { owner: owner.login, repo: name, issue_number: number },
    now: ctx.now,
    store: !ctx.readOnly,
  });
}

/** The newest event that added `label`: its actor is the labeller. */
export function lastLabelling(
  events: readonly IssueEventRecord[],
  label: string,
): IssueEventRecord | null {
  return (
    events.findLast((event) => event.event === "labeled" && event.label?.name === label) ?? null
  );
}

/**
 * The newest event that decides whether the label's task stands: the label added or
 * removed, the issue closed or reopened.
 */
export function lastDecision(
  events: readonly IssueEventRecord[],
  label: string,
): IssueEventRecord | null {
  return (
    events.findLast(
      (event) =>
        event.event === "closed" ||
        event.event === "reopened" ||
        ((event.event === "labeled" || event.event === "unlabeled") && event.label?.name === label),
    ) ?? null
  );
}
