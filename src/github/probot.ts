import type { IncomingMessage, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import type { Logger } from "pino";
import { type ApplicationFunction, createNodeMiddleware, Probot, ProbotOctokit } from "probot";
import type { OverseerEnv } from "../config/env.js";
import { ConfigError } from "../errors.js";
import {
  BodyTooLargeError,
  REQUEST_BODY_LIMIT_BYTES,
  readBodyWithin,
  refuseTooLarge,
} from "../web/body-limit.js";
import { pathOf } from "../web/http.js";
import { createSetupToken, guardSetupPages } from "../web/setup-access.js";

/** Answers the request and returns true, or returns false to let the next handler try. */
type RequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

export interface GithubHandler {
  handler: RequestHandler;
  mode: "app" | "setup";
  probot: Probot | undefined;
  /** Setup mode: the one-time token that opens the setup pages to other machines. */
  setupToken: string | undefined;
}

/**
 * With App credentials: Probot's webhook middleware, which verifies the signature before
 * any handler runs, behind a body read that stops at GitHub's 25 MB cap. Without: Probot's
 * own setup pages (the app.yml manifest flow), as `probot run` would show them, to this
 * machine (or to whoever has the setup token).
 */
export async function createGithubHandler(
  env: OverseerEnv,
  log: Logger,
  app: ApplicationFunction,
  metrics?: GithubCallMetrics,
): Promise<GithubHandler> {
  if (env.appId !== undefined && env.privateKey !== undefined) {
    const probot = createOverseerProbot(env, log, metrics);
    const middleware = await createNodeMiddleware(app, {
      probot,
      webhooksPath: env.webhookPath,
    });
    const webhookPath = withoutTrailingSlashes(env.webhookPath);
    return {
      mode: "app",
      probot,
      setupToken: undefined,
      handler: async (req, res) => {
        if (req.method === "POST" && withoutTrailingSlashes(pathOf(req)) === webhookPath) {
          if (!(await bufferBody(req, res))) return true;
        }
        return middleware(req, res, () => undefined) as Promise<boolean>;
      },
    };
  }
  // Loading the setup app may try to open a smee.io channel; requests wait for it, start-up
  // (and /healthz) does not.
  const setup = createSetupHandler(env, log);
  setup.catch((error: unknown) => log.error({ err: error }, "Probot setup pages failed to load"));
  const setupToken = createSetupToken();
  return {
    mode: "setup",
    probot: undefined,
    setupToken,
    handler: guardSetupPages(async (req, res) => (await setup)(req, res), setupToken),
  };
}

/**
 * Reads the webhook's body within the limit and hands it to Probot's middleware as
 * `req.body` (a string it verifies and parses as it would the stream). False when the
 * request was refused with 413.
 */
async function bufferBody(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  try {
    const body = await readBodyWithin(req, REQUEST_BODY_LIMIT_BYTES);
    (req as IncomingMessage & { body?: string }).body = body.toString("utf8");
    return true;
  } catch (error) {
    if (!(error instanceof BodyTooLargeError)) throw error;
    refuseTooLarge(req, res, REQUEST_BODY_LIMIT_BYTES);
    return false;
  }
}

function withoutTrailingSlashes(path: string): string {
  return path.replace(/\/+$/, "") || "/";
}

/**
 * Probot's Octokit with its retry and throttling plugins off: GitHub writes go through the
 * outbox, whose dispatcher owns retry, Retry-After and pacing, and persists them across
 * restarts. A failed read in a webhook handler fails the delivery before anything is
 * recorded, so GitHub's redelivery replays it.
 */
export const OverseerOctokit = ProbotOctokit.defaults((options: Record<string, unknown>) => ({
  ...options,
  throttle: { ...(options.throttle as object | undefined), enabled: false },
  retry: { enabled: false },
}));

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
