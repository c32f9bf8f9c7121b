#!/usr/bin/env node
import { Command } from "commander";
import { EnvError, type OverseerEnv, readEnv } from "./config/env.js";
import { WorkerProfileError } from "./config/workers.js";
import { openDatabase } from "./db/database.js";
import { migrate, schemaVersion } from "./db/migrate.js";
import { DatabaseUnreachableError } from "./db/pool.js";
import { listRunners } from "./db/runner-registry.js";
import { countTasksByState } from "./db/tasks.js";
import { type ProcessMode, startOverseer } from "./index.js";
import { createLogger, type Logger } from "./log.js";

/** EX_CONFIG from sysexits.h: the configuration is wrong, retrying will not help. */
const EXIT_CONFIG = 78;

function loadEnvOrExit(): OverseerEnv {
  try {
    return readEnv();
  } catch (error) {
    if (error instanceof EnvError) {
      process.stderr.write(`overseer: ${error.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw error;
  }
}

function failAndExit(error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`overseer: ${message}\n`);
  const configError =
    error instanceof DatabaseUnreachableError || error instanceof WorkerProfileError;
  process.exit(configError ? EXIT_CONFIG : 1);
}

async function runProcess(mode: ProcessMode): Promise<void> {
  const env = loadEnvOrExit();
  const log = createLogger(env.logLevel);
  const overseer = await startOverseer(env, log, mode).catch(failAndExit);
  const shutdown = (signal: string) => {
    log.info({ signal }, "shutting down");
    overseer.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
}

async function withDatabase<T>(
  work: (db: Awaited<ReturnType<typeof openDatabase>>, log: Logger) => Promise<T>,
  options: { migrate: boolean },
): Promise<T> {
  const env = loadEnvOrExit();
  const log = createLogger(env.logLevel === "info" ? "warn" : env.logLevel, process.stderr);
  const db = await openDatabase(env, log, options).catch(failAndExit);
  try {
    return await work(db, log);
  } finally {
    await db.close();
  }
}

const program = new Command()
  .name("overseer")
  .description("Turns labelled GitHub issues into work done by coding agents.")
  .showHelpAfterError();

program
  .command("start")
  .description("webhook server, dashboard, runner and watchdog in one process")
  .action(() => runProcess("all"));

program
  .command("serve")
  .description("webhooks and dashboard only (stateless; run several behind a load balancer)")
  .action(() => runProcess("serve"));

program
  .command("runner")
  .description("claim and run tasks on this host (one per worker machine)")
  .action(() => runProcess("runner"));

program
  .command("migrate")
  .description("apply pending database migrations")
  .action(() =>
    withDatabase(
      async (db) => {
        const applied = await migrate(db.url);
        const version = await schemaVersion(db.pool);
        process.stdout.write(
          applied.length > 0
            ? `applied ${applied.length} migration(s): ${applied.join(", ")}\n`
            : `schema is up to date (${version})\n`,
        );
      },
      { migrate: false },
    ),
  );

program
  .command("status")
  .description("database reachability, schema version and tasks by state")
  .option("--json", "print JSON")
  .action((options: { json?: boolean }) =>
    withDatabase(
      async (db) => {
        const version = await schemaVersion(db.pool);
        const counts = version ? await countTasksByState(db.pool) : {};
        const runners = version ? await listRunners(db.pool) : [];
        const status = { database: "up", schema: version, tasks: counts, runners };
        if (options.json) {
          process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
          return;
        }
        const lines = [
          "database: up",
          `schema:   ${version ?? "not migrated (run: overseer migrate)"}`,
          "tasks:",
          ...Object.entries(counts).map(([state, count]) => `  ${state.padEnd(18)} ${count}`),
          "runners:",
          ...runners.map(
            (runner) =>
              `  ${runner.id}  ${runner.host} pid ${runner.pid}  capacity ${runner.capacity}  ${
                runner.stoppedAt ? "stopped" : `heartbeat ${runner.heartbeatAt.toISOString()}`
              }`,
          ),
        ];
        process.stdout.write(`${lines.join("\n")}\n`);
      },
      { migrate: false },
    ),
  );

await program.parseAsync(process.argv);
