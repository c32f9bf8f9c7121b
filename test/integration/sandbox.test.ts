import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SANDBOX, type SandboxPolicy } from "../../src/config/workers.js";
import { isProcessGroupAlive, listProcessGroup } from "../../src/runner/process-group.js";
import { BWRAP, hostFacts, sandboxArgs, sandboxHome } from "../../src/runner/sandbox.js";
import { startWorker, type WorkerHandle } from "../../src/runner/supervise.js";
import { processesMentioning } from "../support/process.js";

/**
 * Real bubblewrap sandboxes around real processes, supervised as the runner supervises
 * them: signals and the grace period, what outlives the worker, network and paths.
 */

let root: string;
let counter = 0;
const started: WorkerHandle[] = [];

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "overseer-sandbox-"));
});

afterEach(async () => {
  for (const handle of started.splice(0)) {
    if (handle.pgid > 1 && isProcessGroupAlive(handle.pgid)) process.kill(-handle.pgid, "SIGKILL");
  }
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** The directories a run has (OVERSEER_HOME with a mirror, a worktree, run files), empty. */
async function layoutOnDisk() {
  counter += 1;
  const home = path.join(root, `home-${counter}`);
  const mirror = path.join(home, "mirrors", "acme", "web.git");
  const adminDir = path.join(mirror, "worktrees", "1");
  const worktree = path.join(home, "worktrees", "acme", "web", "1");
  const runFiles = path.join(home, "runs", "1", "worker");
  const scratch = path.join(home, "runs", "1", "sandbox");
  for (const dir of [
    adminDir,
    path.join(mirror, "objects"),
    path.join(mirror, "refs", "heads", "overseer"),
    path.join(mirror, "logs", "refs", "heads", "overseer"),
    worktree,
    runFiles,
    path.join(scratch, "refs"),
    path.join(scratch, "logs"),
  ]) {
    await mkdir(dir, { recursive: true });
  }
  await writeFile(path.join(adminDir, "commondir"), "../..\n");
  await writeFile(path.join(adminDir, "gitdir"), `${worktree}/.git\n`);
  return { home, mirror, adminDir, worktree, runFiles, scratch };
}

async function sandboxed(
  script: string,
  policy: Partial<SandboxPolicy> = {},
  graceMs = 2_000,
): Promise<{ handle: WorkerHandle; logPath: string; worktree: string }> {
  const disk = await layoutOnDisk();
  const argv = ["sh", "-c", script];
  const args = sandboxArgs(
    {
      policy: { ...DEFAULT_SANDBOX, ...policy },
      home: process.env.HOME,
      worktree: disk.worktree,
      git: {
        mirror: disk.mirror,
        adminDir: disk.adminDir,
        objects: path.join(disk.mirror, "objects"),
        refs: {
          source: path.join(disk.scratch, "refs"),
          target: path.join(disk.mirror, "refs", "heads", "overseer"),
        },
        logs: {
          source: path.join(disk.scratch, "logs"),
          target: path.join(disk.mirror, "logs", "refs", "heads", "overseer"),
        },
        branch: "overseer/1-x",
        startSha: null,
      },
      runFiles: disk.runFiles,
      overseerHome: disk.home,
      secretFiles: [],
      argv,
    },
    hostFacts(),
  );
  const logPath = path.join(disk.home, "runs", "1", "worker.log");
  const handle = startWorker({
    argv: [BWRAP, ...args, ...argv],
    cwd: disk.worktree,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: sandboxHome(process.env.HOME) },
    logPath,
    logLimitBytes: 1024 * 1024,
    timeoutMs: 60_000,
    idleTimeoutMs: 60_000,
    graceMs,
    secrets: [],
    sandboxed: true,
  });
  started.push(handle);
  return { handle, logPath, worktree: disk.worktree };
}

async function waitForLog(logPath: string, text: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const log = await readFile(logPath, "utf8").catch(() => "");
    if (log.includes(text)) return;
    await sleep(25);
  }
  throw new Error(`the log never said ${JSON.stringify(text)}`);
}

function alive(pgid: number) {
  return listProcessGroup(pgid).filter((member) => member.state !== "Z" && member.state !== "X");
}

describe("a sandboxed worker's signals", () => {
  it("SIGTERM reaches the worker inside, which gets its grace period; bubblewrap waits for it", async () => {
    const { handle, logPath } = await sandboxed(
      'trap "echo got TERM; exit 0" TERM; echo ready; while :; do sleep 0.1; done',
    );
    await waitForLog(logPath, "ready");
    await handle.stop("stopped");
    const exit = await handle.done;
    expect(exit.outcome).toBe("stopped");
    // Ended by its own exit after the trap, not by SIGKILL at the end of the grace period.
    expect(exit.signal).toBeNull();
    expect(exit.exitCode).toBe(0);
    expect(await readFile(logPath, "utf8")).toContain("got TERM");
    expect(alive(handle.pgid)).toEqual([]);
  });

  it("a worker ignoring SIGTERM is killed after the grace period, everything in the sandbox with it", async () => {
    const mark = `stubborn-${randomBytes(4).toString("hex")}`;
    const { handle, logPath } = await sandboxed(
      `trap '' TERM; setsid sh -c 'trap "" TERM; while :; do sleep 1; done; : ${mark}' & echo ready; while :; do sleep 1; done`,
      {},
      500,
    );
    await waitForLog(logPath, "ready");
    expect((await processesMentioning(mark)).length).toBeGreaterThan(0);
    await handle.stop("stopped");
    const exit = await handle.done;
    expect(exit.signal).toBe("SIGKILL");
    expect(alive(handle.pgid)).toEqual([]);
    expect(await processesMentioning(mark)).toEqual([]);
  });

  it("a worker that exits leaving children: they end with its namespace", async () => {
    const mark = `leftover-${randomBytes(4).toString("hex")}`;
    const { handle } = await sandboxed(
      `sh -c 'while :; do sleep 1; done; : ${mark}' & setsid sh -c 'while :; do sleep 1; done; : ${mark}' & sleep 0.3; exit 3`,
    );
    const exit = await handle.done;
    expect(exit).toMatchObject({ outcome: "exited", exitCode: 3 });
    expect(alive(handle.pgid)).toEqual([]);
    expect(await processesMentioning(mark)).toEqual([]);
  });
});

describe("what a sandboxed worker reaches", () => {
  let server: net.Server;
  let port: number;

  beforeAll(async () => {
    server = net.createServer((socket) => socket.end("hello from the host\n"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const connect = () =>
    `node -e "require('net').connect(${port}, '127.0.0.1').on('data', (d) => { process.stdout.write(d); process.exit(0); }).on('error', (e) => { console.log('no network:', e.code); process.exit(7); })"`;

  it("the network by default", async () => {
    const { handle, logPath } = await sandboxed(connect());
    expect((await handle.done).exitCode).toBe(0);
    expect(await readFile(logPath, "utf8")).toContain("hello from the host");
  });

  it("no network with network: false, not even the host's loopback", async () => {
    const { handle, logPath } = await sandboxed(connect(), { network: false });
    expect((await handle.done).exitCode).toBe(7);
    expect(await readFile(logPath, "utf8")).toMatch(/no network: E(CONNREFUSED|NETUNREACH)/);
  });

  it("writable paths to change, readable paths to read, nothing else of the host", async () => {
    const writable = path.join(root, `writable-${counter}`);
    const readable = path.join(root, `readable-${counter}`);
    const unlisted = path.join(root, `unlisted-${counter}`);
    for (const dir of [writable, readable, unlisted]) await mkdir(dir, { recursive: true });
    await writeFile(path.join(readable, "in.txt"), "readable\n");
    await writeFile(path.join(unlisted, "secret.txt"), "unlisted\n");
    await writeFile(path.join(os.tmpdir(), `host-tmp-${counter}.txt`), "host tmp\n");
    const script = [
      `echo changed > ${writable}/out.txt && echo wrote-writable`,
      `cat ${readable}/in.txt`,
      `echo nope > ${readable}/in.txt 2>/dev/null || echo readable-is-read-only`,
      `cat ${unlisted}/secret.txt 2>/dev/null || echo unlisted-is-absent`,
      `ls ${os.tmpdir()} | grep -q host-tmp || echo tmp-is-private`,
      `touch "$HOME/x" && ls -A "$HOME"`,
      "echo in-worktree > here.txt && echo wrote-worktree",
    ].join("; ");
    const { handle, logPath, worktree } = await sandboxed(script, {
      writable: [writable],
      readable: [readable],
    });
    expect((await handle.done).exitCode).toBe(0);
    const log = await readFile(logPath, "utf8");
    for (const line of [
      "wrote-writable",
      "readable",
      "readable-is-read-only",
      "unlisted-is-absent",
      "tmp-is-private",
      "wrote-worktree",
    ]) {
      expect(log).toContain(line);
    }
    // The private HOME held nothing of the runner's before the worker wrote to it.
    expect(log).toMatch(/^x$/m);
    expect(await readFile(path.join(writable, "out.txt"), "utf8")).toBe("changed\n");
    expect(await readFile(path.join(readable, "in.txt"), "utf8")).toBe("readable\n");
    expect(await readFile(path.join(worktree, "here.txt"), "utf8")).toBe("in-worktree\n");
  });
});
