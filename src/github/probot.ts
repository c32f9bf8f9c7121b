import type { IncomingMessage, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import type { Logger } from "pino";
import { type ApplicationFunction, Probot, ProbotOctokit } from "probot";
import type { OverseerEnv } from "../config/env.js";
import type { Pool } from "../db/pool.js";
import { ConfigError } from "../errors.js";
import { createSetupToken, guardSetupPages } from "../web/setup-access.js";
import type { DeliveryMetrics } from "./deliveries.js";
import { DeliveryQueue } from "./delivery-queue.js";
import type { DeliveryRoutes } from "./delivery-routes.js";
import { createWebhookDoor } from "./webhook-door.js";

/** Answers the request and returns true, or returns false to let the next handler try. */
type RequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

export interface GithubHandler {
  handler: RequestHandler;
  mode: "app" | "setup";
  probot: Probot | undefined;
  /** Processes stored deliveries (start it, stop it); absent in setup mode. */
  deliveries: DeliveryQueue | undefined;
  /** Setup mode: the one-time token that opens the setup pages to other machines. */
  setupToken: string | undefined;
}

export interface GithubHandlerOptions {
  /** Where the app's handlers declared what they need of a delivery (see onDelivery). */
  routes: DeliveryRoutes;
  pool: Pool;
  /** For the connections the webhook door writes through, apart from `pool`. */
  databaseUrl: string;
  metrics?: GithubCallMetrics & DeliveryMetrics;
}

/**
 * With App credentials: the webhook door (Probot verifies the signature, the body read
 * stops at GitHub's 25 MB cap, the delivery is stored and answered) and the queue that
 * runs the app's handlers on stored deliveries through Probot's `receive`. Without:
 * Probot's own setup pages (the app.yml manifest flow), as `probot run` would show them,
 * to this machine (or to whoever has the setup token).
 */
export async function createGithubHandler(
  env: OverseerEnv,
  log: Logger,
  app: ApplicationFunction,
  options: GithubHandlerOptions,
): Promise<GithubHandler> {
  if (env.appId !== undefined && env.privateKey !== undefined) {
    const { routes, pool, databaseUrl, metrics } = options;
    const probot = createOverseerProbot(env, log, metrics);
    await probot.load(app, {
      cwd: process.cwd(),
      addHandler: () => {
        throw new Error("Overseer's HTTP routes are its own; an app function cannot add any");
      },
    });
    const deliveries = new DeliveryQueue({
      pool,
      databaseUrl,
      log: log.child({ component: "deliveries" }),
      receive: (event) => probot.receive(event as Parameters<Probot["receive"]>[0]),
      ...(metrics ? { metrics } : {}),
      leaseMs: env.deliveryLeaseMs,
      pollIntervalMs: env.pollIntervalMs,
    });
    const door = createWebhookDoor({
      path: env.webhookPath,
      verify: (body, signature) => probot.webhooks.verify(body, signature),
      routes,
      store: (delivery) => deliveries.store(delivery),
      pool,
      log: log.child({ component: "webhooks" }),
      ...(metrics ? { metrics } : {}),
    });
    return { mode: "app", probot, deliveries, setupToken: undefined, handler: door };
  }
  // Loading the setup app may try to open a smee.io channel; requests wait for it, start-up
  // (and /healthz) does not.
  const setup = createSetupHandler(env, log);
  setup.catch((error: unknown) => log.error({ err: error }, "Probot setup pages failed to load"));
  const setupToken = createSetupToken();
  return {
    mode: "setup",
    probot: undefined,
    deliveries: undefined,
    setupToken,
    handler: guardSetupPages(async (req, res) => (await setup)(req, res), setupToken),
  };
}

/**
 * Probot's Octokit with its retry and throttling plugins off: GitHub writes go through the
 * outbox, whose dispatcher owns retry, Retry-After and pacing, and persists them across
 * restarts. A failed read in a webhook handler fails the delivery before anything is
 * recorded, so GitHub's redelivery replays it.
 */
export const OverseerOctokit = ProbotOctokit.defaults((options: Record<string, unknown>) => ({
  ...options,
  auth: onConfiguredHost(options),
  throttle: { ...(options.throttle as object | undefined), enabled: false },
  retry: { enabled: false },
}));

type AuthRequest = { defaults(options: { baseUrl: string }): unknown };

/**
 * Probot hands the App's auth its own `request` without the Enterprise base URL, so an
 * installation token asked for outright (`octokit.auth({ type: "installation" })`, what git
 * needs) would be requested from api.github.com. Only requests made through Octokit's hook
 * carried the right host.
 */
function onConfiguredHost(options: Record<string, unknown>): unknown {
  const auth = options.auth as { request?: AuthRequest } | undefined;
  if (typeof options.baseUrl !== "string" || !auth?.request?.defaults) return options.auth;
  return { ...auth, request: auth.request.defaults({ baseUrl: options.baseUrl }) };
}

/** Counts GitHub API calls by status and keeps the rate limit GitHub reports. */
export interface GithubCallMetrics {
  githubCall(status: number | "network", headers: Record<string, unknown> | undefined): void;
}

/**
 * An Octokit plugin that reports every request's outcome (installation-token exchanges
 * included: they go through the same hooks) to `metrics`.
 */
function countRequests(metrics: GithubCallMetrics) {
  return (octokit: Pick<InstanceType<typeof ProbotOctokit>, "hook">) => {
    octokit.hook.wrap("request", async (request, options) => {
      try {
        const response = await request(options);
        metrics.githubCall(response.status, response.headers);
        return response;
      } catch (error) {
        const failed = error as {
          status?: unknown;
          response?: { headers?: Record<string, unknown> };
        };
        metrics.githubCall(
          typeof failed.status === "number" ? failed.status : "network",
          failed.response?.headers,
        );
        throw error;
      }
    });
  };
}

export function createOverseerProbot(
  env: Pick<OverseerEnv, "appId" | "privateKey" | "webhookSecret" | "githubApiUrl">,
  log: Logger,
  metrics?: GithubCallMetrics,
): Probot {
  // readEnv refuses App credentials without a secret; never fall back to Probot's default.
  if (!env.webhookSecret) {
    throw new ConfigError("WEBHOOK_SECRET is required with App credentials (APP_ID)");
  }
  return new Probot({
    appId: env.appId,
    privateKey: env.privateKey,
    secret: env.webhookSecret,
    baseUrl: env.githubApiUrl,
    log: log.child({ name: "probot" }),
    Octokit: metrics ? OverseerOctokit.plugin(countRequests(metrics)) : OverseerOctokit,
  });
}

type SetupAppFactory = (options: {
  host?: string;
  port?: number;
  log: Logger;
  updateEnv?: (env: Record<string, string>) => Record<string, string>;
}) => () => Promise<RequestHandler>;

/**
 * Probot exports only its package root; the setup app (manifest flow) lives at
 * lib/apps/setup.js and its static assets at lib/server/handlers/static-files.js. Both
 * are loaded by file path from the installed probot (pinned to 14.x in package.json).
 */
async function createSetupHandler(env: OverseerEnv, log: Logger): Promise<RequestHandler> {
  const probotEntry = createRequire(import.meta.url).resolve("probot");
  const load = async <T>(relative: string): Promise<T> =>
    (await import(new URL(relative, pathToFileURL(probotEntry)).href)) as T;
  const { setupAppFactory } = await load<{ setupAppFactory: SetupAppFactory }>("./apps/setup.js");
  const { staticFilesHandler } = await load<{ staticFilesHandler: RequestHandler }>(
    "./server/handlers/static-files.js",
  );
  const setup = await setupAppFactory({
    host: env.host ?? "localhost",
    port: env.port,
    log: log.child({ name: "setup" }),
  })();
  return async (req, res) => (await staticFilesHandler(req, res)) || setup(req, res);
}
