import { generateKeyPairSync } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ensureDatabaseExists } from "../../src/db/database.js";
import { startEmbeddedPostgres } from "../../src/db/embedded.js";
import { migrate } from "../../src/db/migrate.js";
import { createPool, type Pool } from "../../src/db/pool.js";
import { withDatabase } from "../../src/db/url.js";
import { type StandIn, startGithubStandIn } from "../support/github-stand-in.js";
import { type OverseerProcess, spawnOverseer } from "../support/process.js";

/**
 * The whole app as processes for the chaos suite: Overseer (`start`, `serve`, `runner`)
 * against the GitHub stand-in, with short intervals so that a lease, a heartbeat and a
 * poll each take a fraction of a second. Every process started here is tracked and
 * killed by `stop()`, as is every worker process group a run recorded.
 */

export interface ChaosStack {
  github: StandIn;
  home: string;
  processes: Set<OverseerProcess>;
  /** Every process started, live or not, for failure messages. */
  started: OverseerProcess[];
  /** Starts `overseer <mode>` with the stack's credentials, intervals and `env` on top. */
  spawn(
    mode: "start" | "serve" | "runner",
    env: Record<string, string>,
    options?: { home?: string },
  ): Promise<OverseerProcess>;
  /** SIGKILL, as an OOM killer or a pulled plug would: no shutdown code runs. */
  kill9(process: OverseerProcess): Promise<void>;
  /** Lets the workers of a stack started with `gate: true` go on (they wait until then). */
  openGate(): Promise<void>;
  /** Ends every process this stack started, and every worker group recorded in `pool`. */
  stop(pool?: Pool): Promise<void>;
}

/** A worker that waits `seconds`, then commits one file (once) and writes its summary. */
export function committingWorker(seconds: number): string[] {
  const script = [
    `sleep ${seconds}`,
    'echo "work for #$OVERSEER_ISSUE" > "work-$OVERSEER_ISSUE.txt"',
    "git add -A",
    // A run resumed from a branch pushed by an earlier attempt finds its work already there.
    `(git diff --cached --quiet || git -c user.name=agent -c user.email=agent@example.com commit -qm "Work for #$OVERSEER_ISSUE")`,
    'echo "Did the work." > "$OVERSEER_SUMMARY_FILE"',
  ].join(" && ");
  return ["sh", "-c", script];
}

/** Intervals short enough that recovery paths are exercised within seconds. */
export const FAST_INTERVALS: Record<string, string> = {
  OVERSEER_HEARTBEAT_INTERVAL: "250ms",
  OVERSEER_LEASE: "1500ms",
  OVERSEER_POLL_INTERVAL: "300ms",
  OVERSEER_OUTBOX_SETTLE: "0",
  OVERSEER_OUTBOX_RETRY_BASE: "200ms",
  OVERSEER_REQUEUE_BACKOFF: "200ms",
  OVERSEER_RUNNER_STALE_AFTER: "2s",
};

export async function startChaosStack(options: {
  databaseUrl: string;
  worker: string[];
  /** Profile settings beyond the command, as YAML lines under the profile. */
  profileYaml?: string;
  /**
   * Every worker first waits until `openGate()` (a file the sandbox lets it read): runs can
   * be claimed, stopped and cancelled meanwhile, but none finishes before the test says.
   */
  gate?: boolean;
}): Promise<ChaosStack> {
  const { privateKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  });
  const github = await startGithubStandIn();
  const home = await mkdtemp(path.join(os.tmpdir(), "overseer-chaos-"));
  const workers = path.join(home, "workers.yml");
  const gateDir = path.join(home, "gate");
  const gateFile = path.join(gateDir, "open");
  let command = options.worker;
  let profileYaml = options.profileYaml ?? "";
  if (options.gate) {
    await mkdir(gateDir);
    const wait = `while [ ! -e ${JSON.stringify(gateFile)} ]; do sleep 0.1; done; exec "$@"`;
    command = ["sh", "-c", wait, "gated", ...options.worker];
    profileYaml += `    sandbox:\n      readable: [${JSON.stringify(gateDir)}]\n`;
  }
  await writeFile(
    workers,
    `default: script\nprofiles:\n  script:\n    command: ${JSON.stringify(command)}\n    timeout: 2m\n${profileYaml}`,
  );
  const processes = new Set<OverseerProcess>();
  const started: OverseerProcess[] = [];

  const stack: ChaosStack = {
    github,
    home,
    processes,
    started,
    async spawn(mode, env, spawnOptions = {}) {
      const processHome = spawnOptions.home ?? path.join(home, "app");
      const child = await spawnOverseer([mode], {
        APP_ID: String(github.appId),
        PRIVATE_KEY: privateKey,
        WEBHOOK_SECRET: github.webhookSecret,
        GHE_HOST: github.host,
        GHE_PROTOCOL: "http",
        DATABASE_URL: options.databaseUrl,
        OVERSEER_HOME: processHome,
        OVERSEER_WORKERS: workers,
        HOST: "127.0.0.1",
        LOG_LEVEL: "warn",
        ...FAST_INTERVALS,
        ...env,
      });
      processes.add(child);
      started.push(child);
      void child.exited.then(() => processes.delete(child));
      return child;
    },
    async kill9(target) {
      target.child.kill("SIGKILL");
      await target.exited;
    },
    async openGate() {
      if (!options.gate) throw new Error("this stack's workers have no gate");
      await writeFile(gateFile, "");
    },
    async stop(pool) {
      await Promise.all(
        [...processes].map(async (running) => {
          if (running.child.exitCode === null && running.child.signalCode === null) {
            running.child.kill("SIGKILL");
          }
          await running.exited;
        }),
      );
      if (pool) await killRecordedWorkerGroups(pool);
      await github.stop();
      await rm(home, { recursive: true, force: true });
    },
  };
  return stack;
}

/** Worker process groups recorded by runs (a killed runner leaves its worker running). */
async function killRecordedWorkerGroups(pool: Pool): Promise<void> {
  const groups = await pool
    .query<{ pgid: number }>("SELECT DISTINCT pgid FROM runs WHERE pgid > 1")
    .catch(() => ({ rows: [] as { pgid: number }[] }));
  for (const { pgid } of groups.rows) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/** Polls `probe` until it returns something truthy. */
export async function until<T>(
  what: string,
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  options: {
    timeoutMs?: number;
    intervalMs?: number;
    context?: () => string | Promise<string>;
  } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}\n${(await options.context?.()) ?? ""}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 100));
  }
}

export function outputOf(stack: ChaosStack): string {
  return stack.started.map((running) => running.output().slice(-4000)).join("\n---\n");
}

/**
 * A PostgreSQL server of the test's own (the shared test server is never restarted),
 * with a migrated `overseer` database. `restart` stops it and starts it again on the same
 * port, as a managed database's failover or maintenance restart would look to clients.
 */
export interface DedicatedPostgres {
  url: string;
  pool: Pool;
  stopServer(): Promise<void>;
  startServer(): Promise<void>;
  drop(): Promise<void>;
}

export async function startDedicatedPostgres(): Promise<DedicatedPostgres> {
  const home = await mkdtemp(path.join(os.tmpdir(), "overseer-chaos-pg-"));
  let server = await startEmbeddedPostgres(home, undefined, { sameProcessGroup: true });
  const port = server.port;
  await ensureDatabaseExists(server.adminUrl, "overseer");
  const url = withDatabase(server.adminUrl, "overseer");
  await migrate(url);
  const pool = createPool(url);
  let running = true;
  return {
    url,
    pool,
    async stopServer() {
      await server.stop();
      running = false;
    },
    async startServer() {
      server = await startEmbeddedPostgres(home, undefined, { sameProcessGroup: true, port });
      running = true;
    },
    async drop() {
      await pool.end().catch(() => undefined);
      if (running) await server.stop();
      await rm(home, { recursive: true, force: true });
    },
  };
}
