import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, writeSync } from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { formatDuration } from "../config/durations.js";
import {
  isProcessGroupAlive,
  KILL_WAIT_MS,
  signalProcessGroup,
  survivorsMessage,
  waitForProcessGroupExit,
} from "./process-group.js";
import { Redactor } from "./redact.js";

export {
  isProcessGroupAlive,
  killProcessGroup,
  listProcessGroup,
  ProcessGroupError,
} from "./process-group.js";

/**
 * Runs one worker process and answers for everything it starts.
 *
 * The worker leads its own process group (spawned detached, so setsid: pgid = pid), and
 * `done` waits for the whole group, not just the leader: an agent that backgrounds a dev
 * server and exits must not leave it running on the host. Every ending (stop, timeout,
 * idle, a leader that exits leaving children) goes through one sequence: SIGTERM to the
 * group, SIGKILL to the group after graceMs if anything remains.
 */

export interface WorkerSpec {
  argv: string[];
  cwd: string;
  /** The complete environment; the caller has already allow-listed it. */
  env: Record<string, string>;
  /** Becomes the worker's stdin; without it stdin is /dev/null. */
  stdinFile?: string;
  logPath: string;
  logLimitBytes: number;
  /** Wall clock. Zero, negative or non-finite disables it (as for idleTimeoutMs). */
  timeoutMs: number;
  idleTimeoutMs: number;
  graceMs: number;
  /** Values replaced by [REDACTED] in the log. */
  secrets: string[];
}

export type WorkerOutcome =
  | "exited"
  | "timed_out"
  | "idle_timeout"
  | "stopped"
  | "shutdown"
  | "spawn_failed";

export interface WorkerExit {
  /** The leader's exit status; null when a signal ended it or it never started. */
  exitCode: number | null;
  signal: string | null;
  /** What ended the run: the first of its own exit, a timeout, or stop(). */
  outcome: WorkerOutcome;
  /** Human-readable; absent only for a clean exit 0. */
  reason?: string;
  durationMs: number;
  /** Bytes this run appended to the log, Overseer's notes included. */
  logBytes: number;
}

export interface WorkerHandle {
  /** 0 when the worker never started (then `done` reports spawn_failed). */
  pid: number;
  pgid: number;
  /** Ends the run (SIGTERM, grace, SIGKILL) and resolves once the whole group is gone. */
  stop(reason: "stopped" | "shutdown"): Promise<void>;
  /** Resolves (never rejects) once the leader has exited and no process of its group remains. */
  done: Promise<WorkerExit>;
}

/**
 * Once the group is gone the pipes normally close at once; if they stay open, someone
 * outside the group (a process that called setsid) holds them, and we stop reading.
 */
const PIPE_DRAIN_MS = 1_000;

/** setTimeout's limit (~24.8 days); a longer delay would fire immediately. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function limitEnabled(ms: number): boolean {
  return Number.isFinite(ms) && ms > 0;
}

/** Appends redacted, capped output to the log. Never throws: a full disk must not kill the run. */
class LogSink {
  bytes = 0;
  private readonly fd: number;
  private readonly redactors = new Map<string, Redactor>();
  private truncated = false;
  private broken = false;
  private endsWithNewline = true;

  constructor(
    logPath: string,
    private readonly limit: number,
    private readonly secrets: readonly string[],
  ) {
    mkdirSync(path.dirname(logPath), { recursive: true });
    this.fd = openSync(logPath, "a", 0o600);
  }

  output(source: string, chunk: Buffer): void {
    // Drained but not processed: the cap has already been announced.
    if (this.truncated) return;
    let redactor = this.redactors.get(source);
    if (!redactor) {
      redactor = new Redactor(this.secrets);
      this.redactors.set(source, redactor);
    }
    this.capped(redactor.push(chunk));
  }

  endOf(source: string): void {
    const redactor = this.redactors.get(source);
    if (redactor && !this.truncated) this.capped(redactor.flush());
  }

  /** Overseer's own lines bypass the cap: they say why the run ended. */
  note(text: string): void {
    const prefix = this.endsWithNewline ? "" : "\n";
    this.raw(Buffer.from(`${prefix}[overseer] ${text}\n`));
  }

  close(): void {
    for (const source of this.redactors.keys()) this.endOf(source);
    try {
      closeSync(this.fd);
    } catch {
      // Already closed or never usable; nothing is lost either way.
    }
  }

  private capped(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const room = this.limit - this.bytes;
    if (chunk.length <= room) {
      this.raw(chunk);
      return;
    }
    this.raw(chunk.subarray(0, Math.max(0, room)));
    this.truncated = true;
    const prefix = this.endsWithNewline ? "" : "\n";
    this.raw(Buffer.from(`${prefix}[log truncated at ${this.limit} bytes]\n`));
  }

  private raw(chunk: Buffer): void {
    if (this.broken || chunk.length === 0) return;
    try {
      // Synchronous: ordered across stdout and stderr, and complete by the time `done` resolves.
      let offset = 0;
      while (offset < chunk.length) {
        offset += writeSync(this.fd, chunk, offset, chunk.length - offset);
      }
      this.bytes += chunk.length;
      this.endsWithNewline = chunk[chunk.length - 1] === 0x0a;
    } catch {
      this.broken = true;
    }
  }
}

function spawnFailure(error: unknown, spec: WorkerSpec): string {
  const err = error as NodeJS.ErrnoException;
  const program = spec.argv[0] ?? "";
  if (err.code === "ENOENT") {
    if (!existsSync(spec.cwd)) return `working directory does not exist: ${spec.cwd}`;
    const where = program.includes("/") ? "" : ` (searched PATH=${spec.env.PATH ?? ""})`;
    return `command not found: ${program}${where}`;
  }
  if (err.code === "EACCES") return `permission denied: cannot execute ${program}`;
  return `cannot start ${program}: ${err.message}`;
}

function failedHandle(reason: string, startedAt: number, log?: LogSink): WorkerHandle {
  log?.note(`worker did not start: ${reason}`);
  log?.close();
  const exit: WorkerExit = {
    exitCode: null,
    signal: null,
    outcome: "spawn_failed",
    reason,
    durationMs: Math.round(performance.now() - startedAt),
    logBytes: log?.bytes ?? 0,
  };
  return { pid: 0, pgid: 0, stop: async () => {}, done: Promise.resolve(exit) };
}

function streamEnded(stream: Readable | null): Promise<void> {
  if (!stream) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once("close", resolve);
    stream.once("error", () => resolve());
  });
}

export function startWorker(spec: WorkerSpec): WorkerHandle {
  const startedAt = performance.now();
  const program = spec.argv[0];
  if (program === undefined || program === "") {
    return failedHandle("empty command: no program to run", startedAt);
  }

  let log: LogSink;
  try {
    log = new LogSink(spec.logPath, spec.logLimitBytes, spec.secrets);
  } catch (error) {
    return failedHandle(
      `cannot open log file ${spec.logPath}: ${(error as Error).message}`,
      startedAt,
    );
  }

  let stdinFd: number | undefined;
  if (spec.stdinFile !== undefined) {
    try {
      stdinFd = openSync(spec.stdinFile, "r");
    } catch (error) {
      return failedHandle(
        `cannot open stdin file ${spec.stdinFile}: ${(error as Error).message}`,
        startedAt,
        log,
      );
    }
  }

  let child: ChildProcess;
  try {
    child = spawn(program, spec.argv.slice(1), {
      cwd: spec.cwd,
      env: spec.env,
      detached: true,
      stdio: [stdinFd ?? "ignore", "pipe", "pipe"],
    });
  } catch (error) {
    return failedHandle(spawnFailure(error, spec), startedAt, log);
  } finally {
    // The child holds its own copy of the descriptor.
    if (stdinFd !== undefined) closeSync(stdinFd);
  }

  const pid = child.pid;
  if (pid === undefined) {
    // ENOENT and friends arrive as an 'error' event on the next tick, with no 'exit'.
    const failed = new Promise<WorkerHandle>((resolve) => {
      child.once("error", (error) =>
        resolve(failedHandle(spawnFailure(error, spec), startedAt, log)),
      );
    });
    return {
      pid: 0,
      pgid: 0,
      stop: async () => {},
      done: failed.then((handle) => handle.done),
    };
  }
  return supervise(child, pid, spec, log, startedAt);
}

function supervise(
  child: ChildProcess,
  pid: number,
  spec: WorkerSpec,
  log: LogSink,
  startedAt: number,
): WorkerHandle {
  const pgid = pid;
  let outcome: WorkerOutcome | undefined;
  let reason: string | undefined;
  let leader: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let killing: Promise<void> | undefined;
  let survivors: string | undefined;
  let lastActivity = performance.now();
  const timers = new Set<NodeJS.Timeout>();

  // Errors after a successful spawn come from signalling, which we check ourselves.
  child.on("error", () => {});

  const leaderExited = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      leader = { code, signal };
      outcome ??= "exited";
      clearTimers();
      resolve();
    });
  });

  for (const [source, stream] of [
    ["stdout", child.stdout],
    ["stderr", child.stderr],
  ] as const) {
    stream?.on("data", (chunk: Buffer) => {
      lastActivity = performance.now();
      log.output(source, chunk);
    });
    stream?.on("end", () => log.endOf(source));
    stream?.on("error", () => {});
  }
  const pipesClosed = Promise.all([streamEnded(child.stdout), streamEnded(child.stderr)]);

  function after(ms: number, fn: () => void): void {
    const timer = setTimeout(
      () => {
        timers.delete(timer);
        if (ms > MAX_TIMER_MS) after(ms - MAX_TIMER_MS, fn);
        else fn();
      },
      Math.min(ms, MAX_TIMER_MS),
    );
    timers.add(timer);
  }

  function clearTimers(): void {
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
  }

  if (limitEnabled(spec.timeoutMs)) {
    after(spec.timeoutMs, () =>
      end("timed_out", `still running after ${formatDuration(spec.timeoutMs)} (timeout)`),
    );
  }
  if (limitEnabled(spec.idleTimeoutMs)) {
    // Re-armed lazily from lastActivity instead of on every chunk of output.
    const checkIdle = (): void => {
      const quietFor = performance.now() - lastActivity;
      if (quietFor >= spec.idleTimeoutMs) {
        end("idle_timeout", `no output for ${formatDuration(spec.idleTimeoutMs)} (idle_timeout)`);
      } else {
        after(Math.ceil(spec.idleTimeoutMs - quietFor), checkIdle);
      }
    };
    after(spec.idleTimeoutMs, checkIdle);
  }

  function signal(sig: NodeJS.Signals): void {
    try {
      if (signalProcessGroup(pgid, sig) || leader) return;
      // The group is not there yet the leader is: it has not reached setsid().
      process.kill(pid, sig);
    } catch {
      // EPERM (a setuid member) or a leader that just went: the polling decides.
    }
  }

  function killGroup(): Promise<void> {
    killing ??= (async () => {
      clearTimers();
      const leaderGone = () => leader !== undefined;
      signal("SIGTERM");
      if (await waitForProcessGroupExit(pgid, spec.graceMs, leaderGone, leaderExited)) return;
      signal("SIGKILL");
      if (await waitForProcessGroupExit(pgid, KILL_WAIT_MS, leaderGone)) return;
      // Only a process stuck in uninterruptible sleep gets here; report it rather than hang.
      survivors = survivorsMessage(pgid);
    })();
    return killing;
  }

  function end(cause: WorkerOutcome, why: string): void {
    // Once the leader has exited, `done` owns the cleanup; signalling from here could hit
    // a recycled pgid after the group is gone.
    if (leader !== undefined || outcome !== undefined) return;
    outcome = cause;
    reason = why;
    log.note(
      `${why}: sending SIGTERM to process group ${pgid}, SIGKILL after ${formatDuration(spec.graceMs)}`,
    );
    void killGroup();
  }

  const done = (async (): Promise<WorkerExit> => {
    await leaderExited;
    if (!killing && isProcessGroupAlive(pgid)) {
      log.note(`worker exited but left processes in group ${pgid}; stopping them`);
      void killGroup();
    }
    await killing;
    // Cancelled once the pipes close, so a finished run holds no timer that keeps a CLI alive.
    const drainTimer = new AbortController();
    const drained = await Promise.race([
      pipesClosed.then(() => true),
      sleep(PIPE_DRAIN_MS, false, { signal: drainTimer.signal }).catch(() => false),
    ]);
    drainTimer.abort();
    if (!drained) {
      child.stdout?.destroy();
      child.stderr?.destroy();
      log.note("output pipes still open after the process group ended (a process left the group?)");
    }
    if (survivors) log.note(survivors);
    log.close();
    const exitCode = leader?.code ?? null;
    const exitSignal = leader?.signal ?? null;
    const final = outcome ?? "exited";
    let why = reason;
    if (final === "exited") {
      if (exitSignal) why = `killed by ${exitSignal}`;
      else if (exitCode !== 0) why = `exited with code ${exitCode}`;
    }
    if (survivors) why = why ? `${why}; ${survivors}` : survivors;
    return {
      exitCode,
      signal: exitSignal,
      outcome: final,
      ...(why === undefined ? {} : { reason: why }),
      durationMs: Math.round(performance.now() - startedAt),
      logBytes: log.bytes,
    };
  })();

  return {
    pid,
    pgid,
    stop: async (why) => {
      end(why, why === "stopped" ? "stopped on request" : "runner shutting down");
      await done;
    },
    done,
  };
}

/**
 * The last maxBytes of a log (for status comments and the dashboard), starting on a
 * character boundary; "" when there is no log yet.
 */
export async function readLogTail(logPath: string, maxBytes = 4096): Promise<string> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(logPath, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, Math.max(0, maxBytes));
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, size - length);
    let start = 0;
    while (start < bytesRead && ((buffer[start] ?? 0) & 0xc0) === 0x80) start++;
    return buffer.subarray(start, bytesRead).toString("utf8");
  } finally {
    await handle.close();
  }
}
