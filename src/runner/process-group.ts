import { readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Process-group primitives shared by the supervisor and crash recovery.
 *
 * A worker leads its own group (pgid = its pid), so one signal reaches everything it
 * forked unless something called setsid() to leave; escaping that needs cgroups, which
 * Overseer does not manage.
 *
 * Zombies: kill(-pgid, 0) succeeds while any member exists, zombies included. Orphaned
 * grandchildren are reparented to PID 1, and a container's PID 1 that is not an init
 * (no `--init`/tini) never reaps them, so their zombies would make a group look alive
 * forever. A zombie has run its last instruction, so on Linux a group whose remaining
 * members are all zombies counts as gone. Run Overseer under an init that reaps, or
 * those zombies accumulate in the process table (they cost a pid each, nothing else).
 */

export interface GroupMember {
  pid: number;
  ppid: number;
  pgid: number;
  /** One letter from /proc/<pid>/stat: R, S, D, Z, T, ... */
  state: string;
  comm: string;
}

export class ProcessGroupError extends Error {
  override name = "ProcessGroupError";
}

export const POLL_INTERVAL_MS = 25;
/** After SIGKILL, only uninterruptible sleep (D state) delays the end; do not wait forever. */
export const KILL_WAIT_MS = 5_000;

/**
 * Signalling pgid 0 means "my own group" and -1 means "every process I may signal": a
 * missing pid must never turn into either.
 */
function assertPgid(pgid: number): void {
  if (!Number.isSafeInteger(pgid) || pgid <= 1) {
    throw new ProcessGroupError(`refusing to signal process group ${pgid}: not a worker's group`);
  }
}

let procUsable: boolean | undefined;
function hasProc(): boolean {
  if (procUsable === undefined) {
    try {
      readFileSync(`/proc/${process.pid}/stat`, "utf8");
      procUsable = true;
    } catch {
      procUsable = false;
    }
  }
  return procUsable;
}

function readStat(pid: number): GroupMember | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // comm may itself contain spaces and parentheses; it ends at the last ")".
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  const fields = text.slice(close + 2).split(" ");
  return {
    pid,
    comm: text.slice(open + 1, close),
    state: fields[0] ?? "?",
    ppid: Number(fields[1]),
    pgid: Number(fields[2]),
  };
}

function isDead(member: GroupMember): boolean {
  return member.state === "Z" || member.state === "X";
}

/** Every process in the group, zombies included (Linux; empty elsewhere). */
export function listProcessGroup(pgid: number): GroupMember[] {
  if (!hasProc()) return [];
  const members: GroupMember[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const member = readStat(pid);
    if (member?.pgid === pgid) members.push(member);
  }
  return members;
}

/** True while the process exists (a zombie included); EPERM means it exists, not ours. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ESRCH") return false;
    // EPERM: it exists, it just is not ours to signal.
    return true;
  }
}

/** True while some process of the group exists and is not a zombie. */
export function isProcessGroupAlive(pgid: number): boolean {
  assertPgid(pgid);
  if (!groupExists(pgid)) return false;
  if (!hasProc()) return true;
  return listProcessGroup(pgid).some((member) => !isDead(member));
}

/**
 * Sends signal to the group. Returns false when the group no longer exists; throws when
 * it exists but belongs to someone else (recovery must not guess about such a group).
 */
export function signalProcessGroup(pgid: number, signal: NodeJS.Signals): boolean {
  assertPgid(pgid);
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ESRCH") return false;
    if (code === "EPERM") {
      throw new ProcessGroupError(`not permitted to signal process group ${pgid}`);
    }
    throw error;
  }
}

/**
 * Polls until the group is gone. Rescanning all of /proc every 25 ms would cost more than
 * the wait, so members seen alive are re-checked one by one and the full scan runs only
 * when none of them is left, which is also the only moment it can say "gone".
 */
export async function waitForProcessGroupExit(
  pgid: number,
  timeoutMs: number,
  extraCondition: () => boolean = () => true,
  /** Settles when a re-check is worth doing before the next poll (the leader's exit). */
  wake?: Promise<unknown>,
): Promise<boolean> {
  assertPgid(pgid);
  const deadline = performance.now() + timeoutMs;
  let known: number[] = [];
  let early = wake?.then(() => {
    early = undefined;
  });
  for (;;) {
    if (extraCondition() && !groupAliveCached()) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    const pause = sleep(Math.min(POLL_INTERVAL_MS, left));
    await (early ? Promise.race([pause, early]) : pause);
  }

  function groupAliveCached(): boolean {
    if (!groupExists(pgid)) return false;
    if (!hasProc()) return true;
    if (known.some((pid) => isLiveMember(readStat(pid)))) return true;
    known = listProcessGroup(pgid)
      .filter((m) => !isDead(m))
      .map((m) => m.pid);
    return known.length > 0;
  }

  function isLiveMember(member: GroupMember | undefined): boolean {
    return member !== undefined && member.pgid === pgid && !isDead(member);
  }
}

/**
 * SIGTERM to the group, then SIGKILL once graceMs pass with anything left. Safe on a
 * group whose leader is not our child (recovery after a runner crash). Throws when
 * processes remain KILL_WAIT_MS after SIGKILL, naming them.
 */
export async function killProcessGroup(pgid: number, graceMs: number): Promise<void> {
  if (!isProcessGroupAlive(pgid)) return;
  signalProcessGroup(pgid, "SIGTERM");
  if (await waitForProcessGroupExit(pgid, graceMs)) return;
  signalProcessGroup(pgid, "SIGKILL");
  if (await waitForProcessGroupExit(pgid, KILL_WAIT_MS)) return;
  throw new ProcessGroupError(survivorsMessage(pgid));
}

export function survivorsMessage(pgid: number): string {
  const left = listProcessGroup(pgid)
    .filter((m) => !isDead(m))
    .map((m) => `${m.pid} (${m.comm}, state ${m.state})`);
  return `process group ${pgid} still has processes ${KILL_WAIT_MS} ms after SIGKILL${left.length > 0 ? `: ${left.join(", ")}` : ""}`;
}

/** Linux reports process start times in clock ticks; USER_HZ is 100 on every Linux ABI. */
const CLOCK_TICKS_PER_SECOND = 100;

function bootTimeMs(): number | null {
  try {
    const line = readFileSync("/proc/stat", "utf8")
      .split("\n")
      .find((row) => row.startsWith("btime "));
    return line ? Number(line.slice(6)) * 1_000 : null;
  } catch {
    return null;
  }
}

/**
 * When each living member of the group started (Linux; empty elsewhere). A recorded pgid
 * is only trusted to be the same group when a member started inside the run's lifetime:
 * pids are reused, and killing a stranger's group is the one mistake recovery must not make.
 */
export function processGroupStartTimes(pgid: number): Date[] {
  assertPgid(pgid);
  const boot = hasProc() ? bootTimeMs() : null;
  if (boot === null) return [];
  const times: Date[] = [];
  for (const member of listProcessGroup(pgid)) {
    if (isDead(member)) continue;
    const started = startTicks(member.pid);
    if (started !== null) times.push(new Date(boot + (started / CLOCK_TICKS_PER_SECOND) * 1_000));
  }
  return times;
}

function startTicks(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 22 (starttime), counted from the state field (3) after the comm's ")".
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}
