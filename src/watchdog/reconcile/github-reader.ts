import type { Logger } from "pino";
import type { Probot } from "probot";
import type { OverseerEnv } from "../../config/env.js";
import { createOverseerProbot, type GithubCallMetrics } from "../../github/probot.js";
import type { GithubReader } from "../detector.js";

/**
 * The watchdog's GitHub reader for a real process: the App's installation auth through
 * Probot (GHE_HOST / GHE_PROTOCOL decide the API's base URL, see env.ts), with retries and
 * throttling off as everywhere else (a failed read fails the detection; the next tick asks
 * again). Installation tokens are cached by Probot's auth across calls.
 *
 * Null without App credentials: the watchdog then skips the GitHub findings.
 */
export function createGithubReader(
  env: Pick<OverseerEnv, "appId" | "privateKey" | "webhookSecret" | "githubApiUrl">,
  log: Logger,
  metrics?: GithubCallMetrics,
): GithubReader | null {
  if (env.appId === undefined || env.privateKey === undefined) return null;
  return githubReaderFor(createOverseerProbot(env, log, metrics));
}

/** The same over a Probot the process already has (the webhook server's). */
export function githubReaderFor(probot: Pick<Probot, "auth">): GithubReader {
  return {
    forInstallation: async (installationId) => probot.auth(installationId),
  };
}
