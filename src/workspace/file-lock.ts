import { randomBytes } from "node:crypto";
import { link, mkdir, open, readFile, stat, unlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { LockTimeoutError } from "./errors.js";
import { bootId, hostName, processRunning, processStartTime } from "./process.js";
import type { WorkspaceLog } from "./types.js";

/**
 * A lock that works within one process (a promise queue, so waiters do not poll) and across
 * processes (a file created atomically, naming its owner). A holder that died is detected
 * from the file, so a crash never leaves a task blocked.
 */

export interface FileLockOptions {
  /** Give up waiting after this long. */
  timeoutMs?: number;
  /** A holder on another host (or before a reboot) that has not touched the file for this long is dead. */
  staleAfterMs?: number;
  log?: WorkspaceLog;
}

export const DEFAULT_LOCK_TIMEOUT_MS = 15 * 60_000;
const DEFAULT_STALE_AFTER_MS = 60_000;
/** Longer than any takeover takes (a read and an unlink), so only a crashed one is older. */
const TAKEOVER_STALE_MS = 30_000;

interface LockOwner {
  pid: number;
  host: string;
  bootId: string | null;
  startTime: string | null;
  nonce: string;
  acquiredAt: string;
}

/** Nonces of file locks this process holds right now. */
const held = new Set<string>();
/** Tail of the in-process queue, per lock file. */
const queues = new Map<string, Promise<void>>();

export async function withFileLock<T>(
  lockPath: string,
  fn: () => Promise<T>,
  opts: FileLockOptions = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
  const previous = queues.get(lockPath) ?? Promise.resolve();
  let leave = () => {};
  const mine = new Promise<void>((resolve) => {
    leave = resolve;
  });
  const tail = previous.then(() => mine);
  queues.set(lockPath, tail);
  try {
    await waitInProcess(previous, deadline, lockPath);
    const release = await acquire(lockPath, deadline, opts);
    try {
      return await fn();
    } finally {
      await release();
    }
  } finally {
    leave();
    if (queues.get(lockPath) === tail) queues.delete(lockPath);
  }
}

async function waitInProcess(previous: Promise<void>, deadline: number, lockPath: string) {
  const controller = new AbortController();
  const timeout = sleep(Math.max(0, deadline - Date.now()), "timeout", {
    signal: controller.signal,
  }).catch(() => "aborted");
  try {
    const outcome = await Promise.race([previous.then(() => "ready"), timeout]);
    if (outcome === "timeout") throw new LockTimeoutError(lockPath, "this process");
  } finally {
    controller.abort();
  }
}

async function describeSelf(): Promise<LockOwner> {
  return {
    pid: process.pid,
    host: hostName(),
    bootId: await bootId(),
    startTime: await processStartTime(process.pid),
    nonce: randomBytes(12).toString("hex"),
    acquiredAt: new Date().toISOString(),
  };
}

async function acquire(lockPath: string, deadline: number, opts: FileLockOptions) {
  await mkdir(path.dirname(lockPath), { recursive: true });
  const me = await describeSelf();
  const staleAfterMs = opts.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  // Written in full first, then linked into place: readers never see a half-written owner.
  const draft = `${lockPath}.${me.nonce}.tmp`;
  await writeFile(draft, JSON.stringify(me));
  try {
    let pause = 10;
    for (;;) {
      if (await claim(draft, lockPath)) break;
      const current = await readOwner(lockPath);
      if (current === "gone") continue;
      if (await isStale(current, staleAfterMs)) {
        opts.log?.warn({ lock: lockPath, holder: current.owner }, "taking over a stale lock");
        await takeOver(lockPath, current);
        continue;
      }
      if (Date.now() >= deadline) throw new LockTimeoutError(lockPath, current.owner);
      await sleep(pause);
      pause = Math.min(pause * 2, 250);
    }
  } finally {
    await unlink(draft).catch(() => {});
  }
  held.add(me.nonce);
  const heartbeat = setInterval(() => {
    const now = new Date();
    utimes(lockPath, now, now).catch(() => {});
  }, staleAfterMs / 4);
  heartbeat.unref();
  return async () => {
    clearInterval(heartbeat);
    held.delete(me.nonce);
    const current = await readOwner(lockPath);
    if (current !== "gone" && current.owner?.nonce === me.nonce) {
      await unlink(lockPath).catch(() => {});
    }
  };
}

/** link(2) fails if the name exists, which makes it an atomic create-with-content. */
async function claim(draft: string, lockPath: string): Promise<boolean> {
  try {
    await link(draft, lockPath);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS") throw error;
  }
  // File systems without hard links: exclusive create, then write (readers tolerate a gap).
  try {
    const handle = await open(lockPath, "wx");
    try {
      await handle.writeFile(await readFile(draft));
    } finally {
      await handle.close();
    }
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
}

type Observed = { owner: LockOwner | null; mtimeMs: number };

async function readOwner(lockPath: string): Promise<Observed | "gone"> {
  try {
    const [text, info] = await Promise.all([readFile(lockPath, "utf8"), stat(lockPath)]);
    let owner: LockOwner | null = null;
    try {
      owner = JSON.parse(text) as LockOwner;
    } catch {
      // Half-written (no-hard-link fallback) or foreign: judged by age alone.
    }
    return { owner, mtimeMs: info.mtimeMs };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "gone";
    throw error;
  }
}

async function isStale({ owner, mtimeMs }: Observed, staleAfterMs: number): Promise<boolean> {
  const sameBoot = owner !== null && owner.host === hostName() && owner.bootId === (await bootId());
  if (!owner || !sameBoot) return Date.now() - mtimeMs > staleAfterMs;
  // Our own pid with a nonce we do not hold: a previous life of this pid (containers reuse them).
  if (owner.pid === process.pid) return !held.has(owner.nonce);
  if (!(await processRunning(owner.pid))) return true;
  const startTime = await processStartTime(owner.pid);
  return owner.startTime !== null && startTime !== null && startTime !== owner.startTime;
}

function sameHolder(a: Observed, b: Observed): boolean {
  if (a.owner && b.owner) return a.owner.nonce === b.owner.nonce;
  return !a.owner && !b.owner && a.mtimeMs === b.mtimeMs;
}

/**
 * Two waiters may both find the same dead owner; only one may remove the file, or the
 * second would delete the lock the first has just taken. A short-lived guard file makes
 * the check-and-remove atomic.
 */
async function takeOver(lockPath: string, stale: Observed) {
  const guard = `${lockPath}.takeover`;
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(guard, "wx");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    const info = await stat(guard).catch(() => null);
    if (info && Date.now() - info.mtimeMs > TAKEOVER_STALE_MS) await unlink(guard).catch(() => {});
    await sleep(10);
    return;
  }
  try {
    const current = await readOwner(lockPath);
    if (current !== "gone" && sameHolder(current, stale)) await unlink(lockPath);
  } finally {
    await handle.close();
    await unlink(guard).catch(() => {});
  }
}
