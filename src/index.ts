import type http from "node:http";
import path from "node:path";
import type { Logger } from "pino";
import type { OverseerEnv } from "./config/env.js";
import { DEFAULT_WORKER_PROFILES, loadWorkerProfiles } from "./config/workers.js";
import { type Database, openDatabase } from "./db/database.js";
import type { DeliveryQueue } from "./github/delivery-queue.js";
import { DeliveryRoutes } from "./github/delivery-routes.js";
import { OutboxDispatcher } from "./github/outbox/dispatcher.js";
import { createGithubHandler } from "./github/probot.js";
import { overseerApp } from "./github/webhooks.js";
import { createRunnerGithub } from "./runner/github.js";
import { Runner } from "./runner/runner.js";
import { assertSandboxWorks, unsandboxedProfiles } from "./runner/sandbox.js";
import { overseerSecrets } from "./runner/secrets.js";
import { type WatchdogSourceDependencies, watchdogContext } from "./watchdog/findings-source.js";
import { Watchdog } from "./watchdog/watchdog.js";
import { createDashboard } from "./web/dashboard.js";
import { findingsSourceFor } from "./web/findings.js";
import { healthHandler } from "./web/health.js";
import { closeServer, createHttpServer, listen } from "./web/http.js";
import { OverseerMetrics } from "./web/metrics.js";
import { readinessHandler } from "./web/readiness.js";
import { setupUrl } from "./web/setup-access.js";

/** all: everything; serve: webhooks and HTTP only; runner: also claims and runs tasks. */
export type ProcessMode = "all" | "serve" | "runner";

export interface Overseer {
  port: number;
  mode: "app" | "setup";
  db: Database;
  server: http.Server;
  metrics: OverseerMetrics;
  /** Delivers GitHub side effects; absent in setup mode (no credentials yet). */
  dispatcher: OutboxDispatcher | undefined;
  /** Processes stored webhook deliveries; absent in setup mode. */
  deliveries: DeliveryQueue | undefined;
  /** Claims and runs tasks; absent in `serve` mode and in setup mode. */
  runner: Runner | undefined;
  /** Competes for the watchdog's lock; ticks while it holds it. */
  watchdog: Watchdog;
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
  const secretFiles = runnerSecretFiles(env);
  if (processMode !== "serve") {
    await assertSandboxWorks(workers, {
      home: process.env.HOME,
      overseerHome: env.home,
      secretFiles,
    });
    for (const profile of unsandboxedProfiles(workers)) {
      log.warn(
        { profile: profile.name },
        `worker profile ${profile.name} runs without a sandbox (sandbox: false): its workers can read and change everything this user can, Overseer's secrets included`,
      );
    }
  }
  const db = await openDatabase(env, log);
  let watchdog: Watchdog | undefined;
  try {
    const watchdogDeps: WatchdogSourceDependencies = {
      pool: db.pool,
      env,
      log,
      workers,
      counts: () => watchdog?.countsByKind() ?? {},
    };
    const findings = findingsSourceFor(watchdogDeps);
    const metrics = new OverseerMetrics({
      pool: db.pool,
      findings,
      runnerStaleAfterMs: env.runnerStaleAfterMs,
      log: log.child({ component: "metrics" }),
    });
    const routes = new DeliveryRoutes();
    const github = await createGithubHandler(
      env,
      log,
      overseerApp({ pool: db.pool, log, routes, metrics }),
      { routes, pool: db.pool, databaseUrl: db.url, metrics },
    );
    const probot = github.probot;
    const dispatcher = probot
      ? new OutboxDispatcher({
          pool: db.pool,
          databaseUrl: db.url,
          log: log.child({ component: "outbox" }),
          appId: env.appId ?? 0,
          octokitFor: (installationId) => probot.auth(installationId),
          pollIntervalMs: env.pollIntervalMs,
          backoffBaseMs: env.outboxRetryBaseMs,
          settleMs: env.outboxSettleMs,
          ...(env.publicUrl ? { publicUrl: env.publicUrl } : {}),
        })
      : undefined;
    await dispatcher?.start();
    if (probot) {
      watchdogDeps.github = { forInstallation: (installationId) => probot.auth(installationId) };
      watchdogDeps.workspaceToken = async (installationId) =>
        createRunnerGithub(await probot.auth(installationId)).installationToken();
    }
    // Every process competes for the watchdog's lock; only its holder ticks.
    watchdog = new Watchdog({ context: watchdogContext(watchdogDeps), databaseUrl: db.url });
    const runner =
      probot && processMode !== "serve"
        ? new Runner({
            pool: db.pool,
            databaseUrl: db.url,
            env,
            log: log.child({ component: "runner" }),
            workers,
            github: async (installationId) => createRunnerGithub(await probot.auth(installationId)),
            secrets: { values: overseerSecrets(env, [db.url]), files: secretFiles },
            metrics,
          })
        : undefined;
    if (processMode === "runner" && !runner) {
      throw new Error("overseer runner needs GitHub App credentials: set APP_ID and PRIVATE_KEY");
    }
    await runner?.start();
    watchdog.start();
    github.deliveries?.start();
    let stopping: Promise<void> | undefined;
    const dashboard = createDashboard({
      pool: db.pool,
      databaseUrl: db.url,
      env,
      log: log.child({ component: "dashboard" }),
      findings,
      metrics,
      mode: () => github.mode,
    });
    const server = createHttpServer(
      [
        healthHandler(db.pool, () => github.mode, log),
        readinessHandler(db.pool, {
          mode: () => github.mode,
          stopping: () => stopping !== undefined,
        }),
        dashboard.handler,
        github.handler,
      ],
      log,
    );
    const port = await listen(server, env.port, env.host);
    log.info({ port, mode: github.mode }, `Overseer listening on http://localhost:${port}`);
    if (github.mode === "setup" && github.setupToken) {
      log.info(
        `No GitHub App credentials (APP_ID, PRIVATE_KEY): open http://localhost:${port} on this machine to register the App`,
      );
      // Printed once, for the operator: it opens the setup pages to one other machine.
      log.info(
        `From another machine, open ${setupUrl(`http://${reachableHost(env.host)}:${port}`, github.setupToken)}`,
      );
    }
    return {
      port,
      mode: github.mode,
      db,
      server,
      metrics,
      dispatcher,
      deliveries: github.deliveries,
      runner,
      watchdog,
      stop() {
        stopping ??= (async () => {
          await watchdog?.stop();
          await runner?.stop();
          await dashboard.close();
          await closeServer(server);
          await github.deliveries?.stop();
          await dispatcher?.stop();
          await db.close();
        })();
        return stopping;
      },
    };
  } catch (error) {
    await watchdog?.stop();
    await db.close();
    throw error;
  }
}

/**
 * Files no sandbox shows, even inside a directory it does: the App's key file and the app
 * folder's `.env` (where Probot's setup writes the key and the webhook secret).
 * OVERSEER_HOME is hidden whole by the sandbox itself.
 */
function runnerSecretFiles(env: OverseerEnv): string[] {
  return [env.privateKeyPath, path.resolve(".env")].filter(
    (file): file is string => file !== undefined,
  );
}

/** The host to name in a URL for other machines: a wildcard address is no address. */
function reachableHost(host: string | undefined): string {
  return host && host !== "0.0.0.0" && host !== "::" ? host : "<this host>";
}
