import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { Context } from "probot";
import {
  ConfigTooLargeError,
  loadRepoConfig,
  REPO_CONFIG_FILE,
  REPO_CONFIG_MAX_BYTES,
  type RepoConfig,
  renderConfigProblem,
} from "../config/repo-config.js";
import { isDeliverySeen, recordDelivery, recordRejectedDelivery } from "../db/deliveries.js";
import { type Pool, type PoolClient, type Queryable, withTransaction } from "../db/pool.js";
import { findRepoByGithubId, type RepoRow, upsertRepo } from "../db/repos.js";
import { findTask, type TaskRow } from "../db/tasks.js";
import { errorMessage } from "../errors.js";
import { withStoredConfigReads } from "./config-reads.js";
import { PayloadError, type Repository } from "./payloads.js";
import type { PermissionCache } from "./permissions.js";

/**
 * What every webhook handler shares: a delivery is processed once, its changes commit in
 * one transaction with its id, and its log lines carry its id.
 */

export type DeliveryOutcome = "processed" | "duplicate" | "rejected" | "failed";

/** Counts deliveries by outcome (src/web/metrics.ts implements it). */
export interface DeliveryMetrics {
  delivery(outcome: DeliveryOutcome): void;
}

export interface HandlerDependencies {
  pool: Pool;
  log: Logger;
  permissions: PermissionCache;
  metrics?: DeliveryMetrics;
}

/** One delivery being handled: Probot's context, and a logger that names the delivery. */
export interface Delivery {
  context: Context;
  id: string;
  log: Logger;
}

function actionOf(context: Context): string | null {
  const action = (context.payload as { action?: unknown }).action;
  return typeof action === "string" ? action : null;
}

/**
 * A redelivery (same X-GitHub-Delivery id) is dropped before any API call. A payload that
 * does not have the shape we read is recorded as rejected and answered 400 (the
 * PayloadError's status): GitHub will not fix it by sending it again. A delivery the
 * handler would ignore anyway (`ignores`: a well-formed payload that asks nothing, such as
 * a conversation comment or one of Overseer's own labels) is answered without touching
 * the database, redelivered or not.
 */
export async function oncePerDelivery(
  deps: HandlerDependencies,
  context: Context,
  handle: (delivery: Delivery) => Promise<void>,
  options: { ignores?: (payload: unknown) => boolean } = {},
): Promise<void> {
  if (options.ignores?.(context.payload)) {
    deps.metrics?.delivery("processed");
    return;
  }
  const action = actionOf(context);
  const log = deps.log.child({
    delivery: context.id,
    event: action ? `${context.name}.${action}` : context.name,
  });
  if (await isDeliverySeen(deps.pool, context.id)) {
    log.info("redelivery ignored");
    deps.metrics?.delivery("duplicate");
    return;
  }
  try {
    await handle({ context, id: context.id, log });
    deps.metrics?.delivery("processed");
  } catch (error) {
    deps.metrics?.delivery(error instanceof PayloadError ? "rejected" : "failed");
    if (error instanceof PayloadError) {
      await recordRejectedDelivery(
        deps.pool,
        { id: context.id, event: context.name, action, repoId: null },
        errorMessage(error),
      );
      log.warn({ err: error }, "malformed payload rejected");
    }
    throw error;
  }
}

/**
 * Runs `work` in a transaction that first records the delivery id; a concurrent duplicate
 * of the same delivery loses the insert and changes nothing.
 *
 * The repository is recorded first, in a statement of its own: an upsert locks the
 * repository's row even when it changes nothing, and a runner changing a task's state
 * locks the task, then that row (its running count). Held through the transaction, the
 * row lock would meet a runner's the other way round as soon as `work` locks the task:
 * a deadlock, and the delivery answered 500 (which GitHub never redelivers).
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
    const fresh = await recordDelivery(client, {
      id: delivery.id,
      event: delivery.context.name,
      action: actionOf(delivery.context),
      repoId: repo.id,
    });
    if (!fresh) return;
    await work(client, repo);
  });
}

/**
 * Records the repository (and its installation) before anything is asked of GitHub, so a
 * delivery that then fails (the API answering 5xx, never redelivered) still leaves the
 * repository where the watchdog's reconciliation polls it.
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
