import { generateKeyPairSync } from "node:crypto";
import { type Logger, pino } from "pino";
import { readEnv } from "../../src/config/env.js";
import type { Pool } from "../../src/db/pool.js";
import { upsertRepo } from "../../src/db/repos.js";
import type {
  DetectedFinding,
  Detector,
  GithubReader,
  RepairOutcome,
  WatchdogContext,
} from "../../src/watchdog/detector.js";
import { createGithubReader } from "../../src/watchdog/reconcile/github-reader.js";
import type { RepoModel, StandIn } from "./github-stand-in.js";

/**
 * Detectors run by hand: a WatchdogContext over a test database and (optionally) the
 * GitHub stand-in reached through the real reader (App auth, GHE_HOST), then one detection
 * and, for every finding, its repair, as one tick of the watchdog would.
 */

const { privateKey } = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  privateKeyEncoding: { type: "pkcs1", format: "pem" },
  publicKeyEncoding: { type: "spki", format: "pem" },
});

export function testLogger(): Logger {
  return pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
}

/** The environment of a process whose GitHub is the stand-in (GitHub Enterprise on it). */
export function standInEnv(github: StandIn, databaseUrl: string) {
  return readEnv({
    APP_ID: String(github.appId),
    PRIVATE_KEY: privateKey,
    WEBHOOK_SECRET: github.webhookSecret,
    GHE_HOST: github.host,
    GHE_PROTOCOL: "http",
    DATABASE_URL: databaseUrl,
  });
}

export function watchdogContext(
  pool: Pool,
  options: { github?: StandIn; databaseUrl?: string; now?: () => Date; log?: Logger } = {},
): WatchdogContext {
  const log = options.log ?? testLogger();
  const env = options.github
    ? standInEnv(options.github, options.databaseUrl ?? "postgres://unused@127.0.0.1/unused")
    : readEnv({});
  const github: GithubReader | null = options.github ? createGithubReader(env, log) : null;
  return { pool, env, log, host: "test-host", github, now: options.now ?? (() => new Date()) };
}

export interface Pass {
  findings: DetectedFinding[];
  outcomes: { finding: DetectedFinding; outcome: RepairOutcome }[];
}

/** One detection by each detector in order, each followed by the repair of its findings. */
export async function detectAndRepair(
  ctx: WatchdogContext,
  detectors: readonly Detector[],
  by = "watchdog",
): Promise<Pass> {
  const pass: Pass = { findings: [], outcomes: [] };
  for (const detector of detectors) {
    const findings = await detector.detect(ctx);
    pass.findings.push(...findings);
    for (const finding of findings) {
      pass.outcomes.push({ finding, outcome: await detector.repair(ctx, finding, by) });
    }
  }
  return pass;
}

/** Overseer's row for a stand-in repository, as its first delivery would have made it. */
export function knownRepo(pool: Pool, github: StandIn, repo: RepoModel) {
  return upsertRepo(pool, {
    githubId: repo.id,
    fullName: repo.fullName,
    installationId: github.installationId,
    cloneUrl: repo.cloneUrl,
    defaultBranch: repo.defaultBranch,
  });
}
