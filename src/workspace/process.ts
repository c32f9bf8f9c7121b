import { readdir, readFile, readlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

/**
 * Who is alive on this host. Linux answers precisely through /proc; elsewhere we fall back
 * to `kill(pid, 0)` and callers must accept less certainty.
 */

export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else, which still makes it alive.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function procStat(pid: number): Promise<string[] | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses; fields resume after the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** Alive and not a zombie: a zombie still answers kill(0) but will never release anything. */
export async function processRunning(pid: number): Promise<boolean> {
  if (!pidAlive(pid)) return false;
  const fields = await procStat(pid);
  return fields?.[0] !== "Z";
}

/** Clock ticks since boot when the process started: tells a reused pid from the original. */
export async function processStartTime(pid: number): Promise<string | null> {
  const fields = await procStat(pid);
  return fields?.[19] ?? null;
}

let bootIdCache: Promise<string | null> | undefined;

/** Changes on every reboot, after which every recorded pid means someone else. */
export function bootId(): Promise<string | null> {
  bootIdCache ??= readFile("/proc/sys/kernel/random/boot_id", "utf8").then(
    (text) => text.trim(),
    () => null,
  );
  return bootIdCache;
}

export function hostName(): string {
  return os.hostname();
}

function isInside(child: string, parent: string): boolean {
  const relative = path.relative(parent, child);
  return relative === "" || (!relative.startsWith("..") && !path.isAbsolute(relative));
}

/**
 * Pids (other than ours) whose working directory is inside one of `dirs`: the processes
 * that could own a lock git left there. Null when the platform cannot tell.
 */
export async function processesWorkingIn(dirs: readonly string[]): Promise<number[] | null> {
  let entries: string[];
  try {
    entries = await readdir("/proc");
  } catch {
    return null;
  }
  const pids = entries.filter((name) => /^\d+$/.test(name)).map(Number);
  const found: number[] = [];
  await Promise.all(
    pids.map(async (pid) => {
      if (pid === process.pid) return;
      try {
        const cwd = await readlink(`/proc/${pid}/cwd`);
        if (dirs.some((dir) => isInside(cwd, dir)) && (await processRunning(pid))) found.push(pid);
      } catch {
        // Gone meanwhile, or another user's: neither can be one of our workers.
      }
    }),
  );
  return found.sort((a, b) => a - b);
}
