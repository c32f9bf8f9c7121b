import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { Context, Probot } from "probot";
import {
  ConfigTooLargeError,
  loadRepoConfig,
  REPO_CONFIG_FILE,
  REPO_CONFIG_MAX_BYTES,
  type RepoConfig,
  renderConfigProblem,
} from "../config/repo-config.js";
import { markDeliveryApplied } from "../db/deliveries.js";
import { type Pool, type PoolClient, type Queryable, withTransaction } from "../db/pool.js";
import { findRepoByGithubId, type RepoRow, upsertRepo } from "../db/repos.js";
import { findTask, type TaskRow } from "../db/tasks.js";
import { withStoredConfigReads } from "./config-reads.js";
import { type AdmissionRule, actionOf, type DeliveryRoutes } from "./delivery-routes.js";
import type { Repository } from "./payloads.js";
import type { PermissionCache } from "./permissions.js";

/**
 * What every webhook handler shares: a delivery is stored and answered before any handler
 * runs (src/github/webhook-door.ts), then processed from its stored row
 * (src/github/delivery-queue.ts); its changes commit in one transaction that marks it
 * processed, so it is applied once however often it is attempted; its log lines carry its id.
 */

/**
 * How deliveries ended, as counted: at the door `ignored` (no handler acts on it),
 * `duplicate` (a redelivery), `rejected` (malformed) or `failed` (not stored: answered
 * 5xx); once processed `processed`, `rejected` (a handler found it malformed), `retried`
 * (an attempt failed and will be repeated) or `dead` (given up after too many attempts).
 */
export type DeliveryOutcome =
  | "ignored"
  | "processed"
  | "duplicate"
  | "rejected"
  | "failed"
  | "retried"
  | "dead";

/** Counts deliveries by outcome (src/web/metrics.ts implements it). */
export interface DeliveryMetrics {
  delivery(outcome: DeliveryOutcome): void;
}

export interface HandlerDependencies {
  pool: Pool;
  log: Logger;
  permissions: PermissionCache;
  /** Where each handler declares what it needs of a delivery before it is stored. */
  routes: DeliveryRoutes;
  metrics?: DeliveryMetrics;
}

/** One delivery being handled: Probot's context, and a logger that names the delivery. */
export interface Delivery {
  context: Context;
  id: string;
  log: Logger;
}

type EventNames = Parameters<Probot["on"]>[0];

/**
 * Registers a handler for stored deliveries of `events`, and what the door checks before
 * storing one (`rule`: the payload's shape, and which payloads it would ignore anyway).
 */
export function onDelivery<T>(
  app: Probot,
  deps: HandlerDependencies,
  events: EventNames,
  rule: AdmissionRule<T>,
  handle: (delivery: Delivery) => Promise<void>,
): void {
  deps.routes.add(events, rule);
  app.on(events, (context) => {
    const action = actionOf(context.payload);
    const log = deps.log.child({
      delivery: context.id,
      event: action ? `${context.name}.${action}` : context.name,
    });
    return handle({ context: context as Context, id: context.id, log });
  });
}

/**
 * Runs `work` in a transaction that first marks the delivery processed; when it was
 * processed already (an earlier attempt, another process) nothing is written.
 *
 * The repository is recorded first, in a statement of its own: an upsert locks the
 * repository's row even when it changes nothing, and a runner changing a task's state
 * locks the task, then that row (its running count). Held through the transaction, the
 * row lock would meet a runner's the other way round as soon as `work` locks the task:
 * a deadlock, and the delivery failed.
 */
export async function recordDeliveryIn(
  deps: Pick<HandlerDependencies, "pool">,
  delivery: Delivery,
  repository: Repository,
  installationId: number | null,
  work: (client: PoolClient, repo: RepoRow) => Promise<void>,
): Promise<void> {
  const repo = await rememberRepository(deps, repository, installationId);
  await withTransaction(deps.pool, async (client) => {
    if (!(await markDeliveryApplied(client, delivery.id, repo.id))) {
      delivery.log.info("processed already; nothing written");
      return;
    }
    await work(client, repo);
  });
}

/**
 * Records the repository (and its installation) before anything is asked of GitHub, so a
 * delivery whose attempts then fail (the API answering 5xx until it is given up on) still
 * leaves the repository where the watchdog's reconciliation polls it.
 */
export async function rememberRepository(
  deps: Pick<HandlerDependencies, "pool">,
  repository: Repository,
  installationId: number | null,
): Promise<RepoRow> {
  return upsertRepo(deps.pool, {
    githubId: repository.id,
    fullName: repository.full_name,
    installationId,
    cloneUrl: repository.clone_url,
    defaultBranch: repository.default_branch,
  });
}

/** The issue's task, if Overseer knows the repository and has one for the issue. */
export async function findTaskForIssue(
  deps: Pick<HandlerDependencies, "pool">,
  event: { repository: Repository; issue: { number: number } },
): Promise<TaskRow | null> {
  const repo = await findRepoByGithubId(deps.pool, event.repository.id);
  return repo ? findTask(deps.pool, repo.id, event.issue.number) : null;
}

export type RepoConfigRead =
  | { ok: true; config: RepoConfig }
  | { ok: false; body: string; key: string };

/**
 * `.github/overseer.yml` through Probot's config reader, asking conditionally (see
 * config-reads.ts: an unchanged file costs no rate limit). A broken file comes back as the
 * comment to post (and a key to post it once per distinct problem); GitHub being
 * unreachable is thrown, failing the delivery.
 */
export async function readRepoConfig(db: Queryable, context: Context): Promise<RepoConfigRead> {
  // The size check sees GitHub's answers before they are stored (its hook is the inner one).
  const result = await loadRepoConfig(() =>
    withConfigSizeLimit(context.octokit, () =>
      withStoredConfigReads(db, context.octokit, () => context.config(REPO_CONFIG_FILE)),
    ),
  );
  if (result.ok) return result;
  const body = renderConfigProblem(result.problems, undefined, result.unreported);
  return { ok: false, body, key: createHash("sha256").update(body).digest("hex").slice(0, 16) };
}

interface HookableOctokit {
  hook: {
    after(
      name: "request",
      hook: (response: { data: unknown; url: string }, options: { url?: unknown }) => void,
    ): void;
  };
}

/**
 * Refuses a config file over REPO_CONFIG_MAX_BYTES as GitHub's answer arrives, before the
 * config plugin hands its text to the YAML parser. The event's Octokit is its own (Probot
 * makes one per event), and the hook stops looking once the config is read.
 */
async function withConfigSizeLimit<T>(octokit: HookableOctokit, read: () => Promise<T>) {
  let reading = true;
  octokit.hook.after("request", (response, options) => {
    if (!reading || typeof response.data !== "string") return;
    if (!String(options.url ?? "").includes("/contents/")) return;
    const bytes = Buffer.byteLength(response.data);
    if (bytes > REPO_CONFIG_MAX_BYTES) throw new ConfigTooLargeError(bytes, response.url);
  });
  try {
    return await read();
  } finally {
    reading = false;
  }
}
