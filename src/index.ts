import type http from "node:http";
import type { Logger } from "pino";
import type { OverseerEnv } from "./config/env.js";
import { DEFAULT_WORKER_PROFILES, loadWorkerProfiles } from "./config/workers.js";
import { type Database, openDatabase } from "./db/database.js";
import { OutboxDispatcher } from "./github/outbox/dispatcher.js";
import { createGithubHandler } from "./github/probot.js";
import { overseerApp } from "./github/webhooks.js";
import { createRunnerGithub } from "./runner/github.js";
import { Runner } from "./runner/runner.js";
import { healthHandler } from "./web/health.js";
import { closeServer, createHttpServer, listen } from "./web/http.js";

/** all: everything; serve: webhooks and HTTP only; runner: also claims and runs tasks. */
export type ProcessMode = "all" | "serve" | "runner";

export interface Overseer {
  port: number;
  mode: "app" | "setup";
  db: Database;
  server: http.Server;
  /** Delivers GitHub side effects; absent in setup mode (no credentials yet). */
  dispatcher: OutboxDispatcher | undefined;
  /** Claims and runs tasks; absent in `serve` mode and in setup mode. */
  runner: Runner | undefined;
  stop(): Promise<void>;
}

/**
 * Starts Overseer in this process: database (embedded unless DATABASE_URL), migrations,
 * and the HTTP server with /healthz and the GitHub webhook endpoint (or Probot's setup
 * pages until the App has credentials).
 */
export async function startOverseer(
  env: OverseerEnv,
  log: Logger,
  processMode: ProcessMode = "all",
): Promise<Overseer> {
  // Read before anything starts, so a bad profile file stops the process at once.
  const workers = env.workersFile
    ? await loadWorkerProfiles(env.workersFile)
    : DEFAULT_WORKER_PROFILES;
  const db = await openDatabase(env, log);
  try {
    const github = await createGithubHandler(env, log, overseerApp({ pool: db.pool, log }));
    const probot = github.probot;
    const dispatcher = probot
      ? new OutboxDispatcher({
          pool: db.pool,
          databaseUrl: db.url,
          log: log.child({ component: "outbox" }),
          octokitFor: (installationId) => probot.auth(installationId),
          pollIntervalMs: env.pollIntervalMs,
          backoffBaseMs: env.outboxRetryBaseMs,
          settleMs: env.outboxSettleMs,
          ...(env.publicUrl ? { publicUrl: env.publicUrl } : {}),
        })
      : undefined;
    await dispatcher?.start();
    const runner =
      probot && processMode !== "serve"
        ? new Runner({
            pool: db.pool,
            databaseUrl: db.url,
            env,
            log: log.child({ component: "runner" }),
            workers,
            github: async (installationId) => createRunnerGithub(await probot.auth(installationId)),
          })
        : undefined;
    if (processMode === "runner" && !runner) {
      throw new Error("overseer runner needs GitHub App credentials: set APP_ID and PRIVATE_KEY");
    }
    await runner?.start();
    const server = createHttpServer(
      [healthHandler(db.pool, () => github.mode), github.handler],
      log,
    );
    const port = await listen(server, env.port, env.host);
    log.info({ port, mode: github.mode }, `Overseer listening on http://localhost:${port}`);
    if (github.mode === "setup") {
      log.info(
        `No GitHub App credentials (APP_ID, PRIVATE_KEY): open http://localhost:${port} to register the App`,
      );
    }
    let stopping: Promise<void> | undefined;
    return {
      port,
      mode: github.mode,
      db,
      server,
      dispatcher,
      runner,
      stop() {
        stopping ??= (async () => {
          await runner?.stop();
          await closeServer(server);
          await dispatcher?.stop();
          await db.close();
        })();
        return stopping;
      },
    };
  } catch (error) {
    await db.close();
    throw error;
  }
}
