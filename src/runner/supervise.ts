import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { open } from "node:fs/promises";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { formatDuration } from "../config/durations.js";
import { LogSink } from "./log-sink.js";
import {
  isProcessGroupAlive,
  KILL_WAIT_MS,
  signalProcessGroup,
  survivorsMessage,
  waitForProcessGroupExit,
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
  /** Sees every byte appended to the log, redacted and in order (say, to copy it elsewhere). */
  onLog?: (bytes: Buffer) => void;
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
    log = new LogSink(spec.logPath, spec.logLimitBytes, spec.secrets, spec.onLog);
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
  const supervision = new Supervision(child, pid, spec, log);
  const done = supervision.finished(startedAt);
  return {
    pid,
    pgid: pid,
    stop: async (why) => {
      supervision.end(why, why === "stopped" ? "stopped on request" : "runner shutting down");
      await done;
    },
    done,
  };
}

/**
 * One worker's life after spawn: its output into the log, its timeouts, and the single
 * ending sequence (SIGTERM to the group, SIGKILL after the grace period) whatever asked
 * for it.
 */
class Supervision {
  readonly #pgid: number;
  #outcome: WorkerOutcome | undefined;
  #reason: string | undefined;
  #leader: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  #killing: Promise<void> | undefined;
  #survivors: string | undefined;
  #lastActivity = performance.now();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #leaderExited: Promise<void>;
  readonly #pipesClosed: Promise<unknown>;

  constructor(
    private readonly child: ChildProcess,
    private readonly pid: number,
    private readonly spec: WorkerSpec,
    private readonly log: LogSink,
  ) {
    this.#pgid = pid;
    // Errors after a successful spawn come from signalling, which we check ourselves.
    child.on("error", () => {});
    this.#leaderExited = new Promise<void>((resolve) => {
      child.once("exit", (code, signal) => {
        this.#leader = { code, signal };
        this.#outcome ??= "exited";
        this.#clearTimers();
        resolve();
      });
    });
    this.#pipesClosed = this.#pipeOutput();
    this.#armTimeouts();
  }

  #pipeOutput(): Promise<unknown> {
    for (const [source, stream] of [
      ["stdout", this.child.stdout],
      ["stderr", this.child.stderr],
    ] as const) {
      stream?.on("data", (chunk: Buffer) => {
        this.#lastActivity = performance.now();
        this.log.output(source, chunk);
      });
      stream?.on("end", () => this.log.endOf(source));
      stream?.on("error", () => {});
    }
    return Promise.all([streamEnded(this.child.stdout), streamEnded(this.child.stderr)]);
  }

  #after(ms: number, fn: () => void): void {
    const timer = setTimeout(
      () => {
        this.#timers.delete(timer);
        if (ms > MAX_TIMER_MS) this.#after(ms - MAX_TIMER_MS, fn);
        else fn();
      },
      Math.min(ms, MAX_TIMER_MS),
    );
    this.#timers.add(timer);
  }

  #clearTimers(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  #armTimeouts(): void {
    const { timeoutMs, idleTimeoutMs } = this.spec;
    if (limitEnabled(timeoutMs)) {
      this.#after(timeoutMs, () =>
        this.end("timed_out", `still running after ${formatDuration(timeoutMs)} (timeout)`),
      );
    }
    if (limitEnabled(idleTimeoutMs)) {
      // Re-armed lazily from the last output instead of on every chunk of output.
      const checkIdle = (): void => {
        const quietFor = performance.now() - this.#lastActivity;
        if (quietFor >= idleTimeoutMs) {
          this.end("idle_timeout", `no output for ${formatDuration(idleTimeoutMs)} (idle_timeout)`);
        } else {
          this.#after(Math.ceil(idleTimeoutMs - quietFor), checkIdle);
        }
      };
      this.#after(idleTimeoutMs, checkIdle);
    }
  }

  #signal(sig: NodeJS.Signals): void {
    try {
      if (signalProcessGroup(this.#pgid, sig) || this.#leader) return;
      // The group is not there yet the leader is: it has not reached setsid().
      process.kill(this.pid, sig);
    } catch {
      // EPERM (a setuid member) or a leader that just went: the polling decides.
    }
  }

  #killGroup(): Promise<void> {
    this.#killing ??= (async () => {
      this.#clearTimers();
      const leaderGone = () => this.#leader !== undefined;
      this.#signal("SIGTERM");
      const { graceMs } = this.spec;
      if (await waitForProcessGroupExit(this.#pgid, graceMs, leaderGone, this.#leaderExited)) {
        return;
      }
      this.#signal("SIGKILL");
      if (await waitForProcessGroupExit(this.#pgid, KILL_WAIT_MS, leaderGone)) return;
      // Only a process stuck in uninterruptible sleep gets here; report it rather than hang.
      this.#survivors = survivorsMessage(this.#pgid);
    })();
    return this.#killing;
  }

  /** Ends the run for `cause` unless it already ended. */
  end(cause: WorkerOutcome, why: string): void {
    // Once the leader has exited, `finished` owns the cleanup; signalling from here could
    // hit a recycled pgid after the group is gone.
    if (this.#leader !== undefined || this.#outcome !== undefined) return;
    this.#outcome = cause;
    this.#reason = why;
    this.log.note(
      `${why}: sending SIGTERM to process group ${this.#pgid}, SIGKILL after ${formatDuration(this.spec.graceMs)}`,
    );
    void this.#killGroup();
  }

  /** Resolves once the leader has exited and no process of its group remains. */
  async finished(startedAt: number): Promise<WorkerExit> {
    await this.#leaderExited;
    if (!this.#killing && isProcessGroupAlive(this.#pgid)) {
      this.log.note(`worker exited but left processes in group ${this.#pgid}; stopping them`);
      void this.#killGroup();
    }
    await this.#killing;
    await this.#drainPipes();
    if (this.#survivors) this.log.note(this.#survivors);
    this.log.close();
    return this.#exit(startedAt);
  }

  /** Once the group is gone the pipes close at once, unless a process that left it holds them. */
  async #drainPipes(): Promise<void> {
    // Cancelled once the pipes close, so a finished run holds no timer that keeps a CLI alive.
    const drainTimer = new AbortController();
    const drained = await Promise.race([
      this.#pipesClosed.then(() => true),
      sleep(PIPE_DRAIN_MS, false, { signal: drainTimer.signal }).catch(() => false),
    ]);
    drainTimer.abort();
    if (drained) return;
    this.child.stdout?.destroy();
    this.child.stderr?.destroy();
    this.log.note(
      "output pipes still open after the process group ended (a process left the group?)",
    );
  }

  #exit(startedAt: number): WorkerExit {
    const exitCode = this.#leader?.code ?? null;
    const exitSignal = this.#leader?.signal ?? null;
    const final = this.#outcome ?? "exited";
    let why = this.#reason;
    if (final === "exited") {
      if (exitSignal) why = `killed by ${exitSignal}`;
      else if (exitCode !== 0) why = `exited with code ${exitCode}`;
    }
    if (this.#survivors) why = why ? `${why}; ${this.#survivors}` : this.#survivors;
    return {
      exitCode,
      signal: exitSignal,
      outcome: final,
      ...(why === undefined ? {} : { reason: why }),
      durationMs: Math.round(performance.now() - startedAt),
      logBytes: this.log.bytes,
    };
  }
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
