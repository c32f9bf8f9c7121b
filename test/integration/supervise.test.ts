import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { isProcessGroupAlive, killProcessGroup } from "../../src/runner/process-group.js";
import { writePromptFile } from "../../src/runner/prompt.js";
import { REDACTED, Redactor, redactText } from "../../src/runner/redact.js";
import {
  readLogTail,
  startWorker,
  type WorkerHandle,
  type WorkerSpec,
} from "../../src/runner/supervise.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/workers/", import.meta.url));
const fixture = (name: string) => path.join(FIXTURES, name);

let dir: string;
let counter = 0;
const started: number[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "overseer-supervise-"));
});

afterEach(() => {
  // A failed assertion must not leave workers running on the host.
  for (const pgid of started.splice(0)) {
    if (pgid > 1 && isProcessGroupAlive(pgid)) {
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {
        // Gone in between.
      }
    }
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function start(overrides: Partial<WorkerSpec> & Pick<WorkerSpec, "argv">): {
  handle: WorkerHandle;
  logPath: string;
} {
  counter++;
  const logPath = path.join(dir, `run-${counter}`, "logs", "worker.log");
  const handle = startWorker({
    cwd: dir,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir },
    logPath,
    logLimitBytes: 1024 * 1024,
    timeoutMs: 10_000,
    idleTimeoutMs: 10_000,
    graceMs: 300,
    secrets: [],
    ...overrides,
  });
  started.push(handle.pgid);
  return { handle, logPath };
}

interface ProcStat {
  pid: number;
  state: string;
  pgid: number;
}

/** Independent of the code under test: a plain scan of /proc. */
function procStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { pid, state: fields[0] ?? "?", pgid: Number(fields[2]) };
  } catch {
    return undefined;
  }
}

/**
 * Members of the group that still run. Zombies are left out: orphans belong to PID 1,
 * which in a bare container may never reap them, and a zombie runs nothing.
 */
function liveMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const info = procStat(pid);
    if (info && info.pgid === pgid && info.state !== "Z" && info.state !== "X") pids.push(pid);
  }
  return pids;
}

function isRunning(pid: number): boolean {
  const info = procStat(pid);
  return info !== undefined && info.state !== "Z" && info.state !== "X";
}

async function waitForLog(logPath: string, text: string, timeoutMs = 3_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const content = existsSync(logPath) ? await readFile(logPath, "utf8") : "";
    if (content.includes(text)) return content;
    if (Date.now() > deadline) throw new Error(`log never showed ${text}; it has:\n${content}`);
    await sleep(20);
  }
}

function childPids(log: string): number[] {
  return [...log.matchAll(/(?:child|grandchild) (\d+)/g)].map((m) => Number(m[1]));
}

describe("startWorker", () => {
  it("runs a worker that exits 0 and logs both streams", async () => {
    const { handle, logPath } = start({ argv: ["sh", fixture("print-and-exit.sh"), "0"] });
    expect(handle.pid).toBeGreaterThan(1);
    expect(handle.pgid).toBe(handle.pid);
    const exit = await handle.done;
    expect(exit).toMatchObject({ outcome: "exited", exitCode: 0, signal: null });
    expect(exit.reason).toBeUndefined();
    const log = await readFile(logPath, "utf8");
    expect(log).toContain("hello from stdout\n");
    expect(log).toContain("hello from stderr\n");
    expect(exit.logBytes).toBe(Buffer.byteLength(log));
    // Our own child is reaped: no zombie left in the process table.
    expect(procStat(handle.pid)).toBeUndefined();
    expect((await stat(logPath)).mode & 0o777).toBe(0o600);
  });

  it("reports a non-zero exit", async () => {
    const { handle } = start({ argv: ["sh", fixture("print-and-exit.sh"), "3"] });
    const exit = await handle.done;
    expect(exit).toMatchObject({ outcome: "exited", exitCode: 3, reason: "exited with code 3" });
  });

  it("appends to an existing log", async () => {
    const logPath = path.join(dir, "append", "worker.log");
    await start({ argv: ["sh", fixture("print-and-exit.sh")], logPath }).handle.done;
    await start({ argv: ["sh", fixture("print-and-exit.sh")], logPath }).handle.done;
    const log = await readFile(logPath, "utf8");
    expect(log.match(/hello from stdout/g)).toHaveLength(2);
  });

  it("stop() kills a family that ignores SIGTERM, grandchildren included, after the grace", async () => {
    const graceMs = 300;
    const { handle, logPath } = start({ argv: ["sh", fixture("stubborn-family.sh")], graceMs });
    await waitForLog(logPath, "ready");
    const log = await waitForLog(logPath, "grandchild");
    const family = [handle.pid, ...childPids(log)];
    expect(family.length).toBe(4);
    for (const pid of family) expect(procStat(pid)?.pgid).toBe(handle.pgid);
    expect(liveMembers(handle.pgid).length).toBeGreaterThanOrEqual(4);

    const stoppedAt = performance.now();
    await handle.stop("stopped");
    const elapsed = performance.now() - stoppedAt;
    const exit = await handle.done;

    // SIGKILL came only once the grace period was over.
    expect(elapsed).toBeGreaterThanOrEqual(graceMs - 10);
    expect(exit).toMatchObject({ outcome: "stopped", signal: "SIGKILL", exitCode: null });
    expect(liveMembers(handle.pgid)).toEqual([]);
    for (const pid of family) expect(isRunning(pid)).toBe(false);
    expect(procStat(handle.pid)).toBeUndefined();
    expect(await readFile(logPath, "utf8")).toContain("[overseer] stopped on request");
  });

  it("stop('shutdown') ends a worker that honours SIGTERM without waiting for the grace", async () => {
    const { handle, logPath } = start({
      argv: [process.execPath, fixture("node-term.mjs")],
      graceMs: 5_000,
    });
    await waitForLog(logPath, "ready");
    await handle.stop("shutdown");
    const exit = await handle.done;
    // Ended by its own SIGTERM handler (exit 143), not by a SIGKILL after the 5 s grace.
    expect(exit).toMatchObject({ outcome: "shutdown", exitCode: 143, signal: null });
    expect(await readFile(logPath, "utf8")).toContain("terminating");
  });

  it("stop() after the worker ended is harmless", async () => {
    const { handle } = start({ argv: ["sh", fixture("print-and-exit.sh")] });
    const exit = await handle.done;
    await handle.stop("stopped");
    expect(await handle.done).toBe(exit);
    expect(exit.outcome).toBe("exited");
  });

  it("cleans up a background process the leader left behind", async () => {
    const { handle, logPath } = start({ argv: ["sh", fixture("background-child.sh")] });
    const exit = await handle.done;
    expect(exit).toMatchObject({ outcome: "exited", exitCode: 0 });
    const [child] = childPids(await readFile(logPath, "utf8"));
    expect(child).toBeGreaterThan(1);
    expect(isRunning(child ?? 0)).toBe(false);
    expect(liveMembers(handle.pgid)).toEqual([]);
  });

  it("SIGKILLs a leftover that ignores SIGTERM once the grace is over", async () => {
    const graceMs = 200;
    const { handle } = start({ argv: ["sh", fixture("background-child.sh"), "stubborn"], graceMs });
    const startedAt = performance.now();
    const exit = await handle.done;
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(graceMs - 10);
    expect(exit).toMatchObject({ outcome: "exited", exitCode: 0 });
    expect(liveMembers(handle.pgid)).toEqual([]);
  });

  it("ends a worker that runs past its wall-clock timeout", async () => {
    const { handle, logPath } = start({
      argv: ["sh", fixture("chatty.sh")],
      timeoutMs: 400,
      idleTimeoutMs: 5_000,
    });
    const exit = await handle.done;
    expect(exit.outcome).toBe("timed_out");
    expect(exit.reason).toMatch(/timeout/);
    expect(exit.durationMs).toBeGreaterThanOrEqual(400);
    expect(liveMembers(handle.pgid)).toEqual([]);
    expect(await readFile(logPath, "utf8")).toContain("tick\n");
  });

  it("ends a worker that goes quiet for longer than the idle timeout", async () => {
    const { handle } = start({ argv: ["sh", fixture("quiet.sh")], idleTimeoutMs: 300 });
    const exit = await handle.done;
    expect(exit.outcome).toBe("idle_timeout");
    expect(exit.reason).toMatch(/no output for 300ms/);
    expect(exit.durationMs).toBeGreaterThanOrEqual(300);
    expect(liveMembers(handle.pgid)).toEqual([]);
  });

  it("caps the log, keeps draining the pipe, and counts discarded output as activity", async () => {
    const limit = 10_000;
    const { handle, logPath } = start({
      argv: ["sh", fixture("flood.sh"), "2000000"],
      logLimitBytes: limit,
      // The script prints a line every 100 ms after the cap; that must keep it alive.
      idleTimeoutMs: 400,
    });
    const exit = await handle.done;
    expect(exit).toMatchObject({ outcome: "exited", exitCode: 0 });
    const log = await readFile(logPath, "utf8");
    const marker = `[log truncated at ${limit} bytes]\n`;
    expect(log.endsWith(`\n${marker}`)).toBe(true);
    expect(Buffer.byteLength(log)).toBe(limit + 1 + marker.length);
    expect(exit.logBytes).toBe(Buffer.byteLength(log));
    expect(log).not.toContain("done");
  });

  it("redacts secrets, including one split across two chunks", async () => {
    const secret = "s3cr3t-TOKEN-value-1234";
    const { handle, logPath } = start({
      argv: ["sh", fixture("split-secret.sh"), secret.slice(0, 9), secret.slice(9)],
      secrets: [secret, ""],
    });
    await handle.done;
    const log = await readFile(logPath, "utf8");
    expect(log).not.toContain(secret);
    expect(log).toContain(`before ${REDACTED} after\n`);
    expect(log).toContain(`err ${REDACTED}\n`);
    // A prefix that never became the secret is released at the end of the stream. The
    // stderr line may land anywhere relative to stdout: two pipes have no common order.
    expect(log.replace(`err ${REDACTED}\n`, "")).toContain(`tail ${secret.slice(0, 9)}`);
  });

  it("gives the worker exactly the environment it was handed", async () => {
    const env = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: dir,
      OVERSEER_SUMMARY_FILE: path.join(dir, "summary.md"),
      ANTHROPIC_API_KEY: "passed-through",
    };
    const { handle, logPath } = start({ argv: [process.execPath, fixture("print-env.mjs")], env });
    expect((await handle.done).exitCode).toBe(0);
    expect(JSON.parse(await readFile(logPath, "utf8"))).toEqual(env);
  });

  it("pipes the prompt file to stdin when asked, and /dev/null otherwise", async () => {
    const text = "# Task\n\n$(rm -rf /) `whoami` ; exit 1\n";
    const promptFile = await writePromptFile(path.join(dir, "prompt"), text);
    const piped = start({ argv: ["cat"], stdinFile: promptFile });
    expect((await piped.handle.done).exitCode).toBe(0);
    expect(await readFile(piped.logPath, "utf8")).toBe(text);

    const closed = start({ argv: ["cat"] });
    expect(await closed.handle.done).toMatchObject({ outcome: "exited", exitCode: 0, logBytes: 0 });
  });

  it("reports a missing program as spawn_failed, naming it", async () => {
    const { handle, logPath } = start({ argv: ["overseer-no-such-agent", "-p"] });
    expect(handle.pid).toBe(0);
    const exit = await handle.done;
    expect(exit.outcome).toBe("spawn_failed");
    expect(exit.reason).toMatch(/^command not found: overseer-no-such-agent/);
    await handle.stop("stopped");
    expect(await readFile(logPath, "utf8")).toContain("overseer-no-such-agent");
  });

  it("reports a missing working directory and an empty command as spawn_failed", async () => {
    const noCwd = start({ argv: ["true"], cwd: path.join(dir, "missing") });
    expect(await noCwd.handle.done).toMatchObject({
      outcome: "spawn_failed",
      reason: `working directory does not exist: ${path.join(dir, "missing")}`,
    });
    const empty = start({ argv: [] });
    expect((await empty.handle.done).outcome).toBe("spawn_failed");
  });
});

describe("readLogTail", () => {
  it("returns the end of the log on a character boundary, or nothing", async () => {
    const file = path.join(dir, "tail.log");
    await writeFile(file, `${"a".repeat(5000)}é-end`);
    const tail = await readLogTail(file, 5);
    expect(tail).toBe("-end"); // the cut fell inside "é"
    expect(await readLogTail(file)).toHaveLength(4095);
    expect(await readLogTail(path.join(dir, "none.log"))).toBe("");
  });
});

describe("process groups", () => {
  it("killProcessGroup ends a group that is not our child's (recovery)", async () => {
    // Leader exits at once; its stubborn leftover stands in for an orphan after a crash.
    const { handle, logPath } = start({
      argv: ["sh", "-c", "sh -c \"trap '' TERM; echo up; while :; do sleep 1; done\" & wait"],
    });
    await waitForLog(logPath, "up");
    const pgid = handle.pgid;
    expect(isProcessGroupAlive(pgid)).toBe(true);
    await killProcessGroup(pgid, 100);
    expect(isProcessGroupAlive(pgid)).toBe(false);
    expect(liveMembers(pgid)).toEqual([]);
    await handle.done;
  });

  it("refuses pgids that would signal our own group or everyone", () => {
    expect(() => isProcessGroupAlive(0)).toThrow(/refusing/);
    expect(() => isProcessGroupAlive(1)).toThrow(/refusing/);
    expect(() => isProcessGroupAlive(-5)).toThrow(/refusing/);
  });
});

describe("Redactor", () => {
  const secrets = ["sk-live-abcdef", "abc", "ghs_0123456789"];
  // Ends with a short secret inside the start of a longer one, so the end of the stream
  // has to redact what it had been holding back.
  const text = "key=sk-live-abcdef; short=abc; token ghs_0123456789 ghs_01 end sk-live-abc";

  it("redacts every occurrence however the stream is chunked", () => {
    const expected = redactText(text, secrets);
    expect(expected).toBe(
      `key=${REDACTED}; short=${REDACTED}; token ${REDACTED} ghs_01 end sk-live-${REDACTED}`,
    );
    const bytes = Buffer.from(text);
    for (let a = 0; a <= bytes.length; a++) {
      for (let b = a; b <= bytes.length; b += 7) {
        const r = new Redactor(secrets);
        const out = Buffer.concat([
          r.push(bytes.subarray(0, a)),
          r.push(bytes.subarray(a, b)),
          r.push(bytes.subarray(b)),
          r.flush(),
        ]).toString();
        expect(out).toBe(expected);
      }
    }
  });

  it("holds back only a tail that could still become a secret", () => {
    const r = new Redactor(["password123"]);
    expect(r.push(Buffer.from("hello pass")).toString()).toBe("hello ");
    expect(r.holding).toBe(4);
    expect(r.push(Buffer.from("port\n")).toString()).toBe("passport\n");
    expect(r.holding).toBe(0);
  });

  it("handles multi-byte secrets split inside a character", () => {
    const secret = "clé-secrète";
    const bytes = Buffer.from(`x ${secret} y`);
    const r = new Redactor([secret]);
    const out = Buffer.concat([
      r.push(bytes.subarray(0, 5)),
      r.push(bytes.subarray(5)),
      r.flush(),
    ]).toString();
    expect(out).toBe(`x ${REDACTED} y`);
  });
});
