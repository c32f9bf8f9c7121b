/**
 * What the bubblewrap sandbox adds to starting a worker: the time from startWorker() to
 * the worker's first line of output, and to a whole trivial run (`true`, start to group
 * gone), with and without the sandbox, in the same real worktree (a mirror fetched from
 * the git stand-in). The sandbox's share also includes preparing the worker's view of the
 * mirror (its private ref directory), measured on its own. Runs alternate, so load on the
 * host hits both alike.
 *
 *   npx tsx bench/sandbox.bench.ts [runs]
 */
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DEFAULT_SANDBOX } from "../src/config/workers.js";
import { BWRAP, hostFacts, sandboxArgs, sandboxHome } from "../src/runner/sandbox.js";
import { startWorker } from "../src/runner/supervise.js";
import {
  type EnsuredWorktree,
  ensureWorktree,
  prepareWorkerView,
  repositoryUrl,
} from "../src/workspace/index.js";
import { startGitServer } from "../test/support/git-http.js";
import { reportFigure } from "./figures.js";

const RUNS = Number(process.argv[2] ?? 20);
const TOKEN = "ghs_benchtoken";

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? Number.NaN)
    : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

async function firstOutput(logPath: string): Promise<void> {
  for (;;) {
    const text = await readFile(logPath, "utf8").catch(() => "");
    if (text.includes("started")) return;
    await sleep(1);
  }
}

interface Sample {
  firstLineMs: number;
  wholeRunMs: number;
}

async function sample(
  home: string,
  worktree: EnsuredWorktree,
  run: number,
  sandboxed: boolean,
): Promise<Sample & { viewMs: number }> {
  const runDir = path.join(home, "runs", `${run}-${sandboxed ? "s" : "u"}`);
  const runFiles = path.join(runDir, "worker");
  await mkdir(runFiles, { recursive: true });
  const options = { home, token: TOKEN };
  const measure = async (argv: string[], logPath: string, waitForFirstLine: boolean) => {
    let command = argv;
    let viewMs = 0;
    if (sandboxed) {
      const viewAt = performance.now();
      const view = await prepareWorkerView(worktree, path.join(runDir, "sandbox"), options);
      viewMs = performance.now() - viewAt;
      const layout = {
        policy: DEFAULT_SANDBOX,
        home: process.env.HOME,
        worktree: worktree.path,
        git: view,
        runFiles,
        overseerHome: home,
        secretFiles: [],
        argv,
      };
      command = [BWRAP, ...sandboxArgs(layout, hostFacts()), ...argv];
    }
    const startedAt = performance.now();
    const handle = startWorker({
      argv: command,
      cwd: worktree.path,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: sandboxHome(process.env.HOME) },
      logPath,
      logLimitBytes: 1024 * 1024,
      timeoutMs: 60_000,
      idleTimeoutMs: 60_000,
      graceMs: 1_000,
      secrets: [],
      sandboxed,
    });
    if (waitForFirstLine) await firstOutput(logPath);
    const firstAt = performance.now();
    const exit = await handle.done;
    if (exit.exitCode !== 0) throw new Error(`worker failed: ${exit.reason ?? exit.outcome}`);
    return { firstLineMs: firstAt - startedAt, wholeRunMs: performance.now() - startedAt, viewMs };
  };
  const first = await measure(["sh", "-c", "echo started"], path.join(runDir, "first.log"), true);
  const whole = await measure(["true"], path.join(runDir, "whole.log"), false);
  return { firstLineMs: first.firstLineMs, wholeRunMs: whole.wholeRunMs, viewMs: whole.viewMs };
}

async function main(): Promise<void> {
  const server = await startGitServer({ tokens: [TOKEN] });
  const home = await mkdtemp(path.join(tmpdir(), "overseer-bench-sandbox-"));
  try {
    await server.createRepo("bench", "sandbox");
    const task = {
      repoFullName: "bench/sandbox",
      cloneUrl: repositoryUrl(server.url, "bench/sandbox"),
      issueNumber: 1,
      title: "Sandbox overhead",
      base: "main",
    };
    const worktree = await ensureWorktree(task, { home, token: TOKEN });
    // One of each first, so neither pays for cold caches alone.
    await sample(home, worktree, -1, true);
    await sample(home, worktree, -2, false);
    const plain: Sample[] = [];
    const boxed: (Sample & { viewMs: number })[] = [];
    for (let run = 0; run < RUNS; run++) {
      boxed.push(await sample(home, worktree, run, true));
      plain.push(await sample(home, worktree, run, false));
    }
    const row = (name: string, without: number, within: number) =>
      `${name.padEnd(44)} ${without.toFixed(1).padStart(7)} ms ${within.toFixed(1).padStart(9)} ms ${(within - without).toFixed(1).padStart(9)} ms`;
    console.log(`worker start with and without the sandbox, median of ${RUNS}`);
    console.log(
      `${"".padEnd(44)} ${"without".padStart(10)} ${"sandboxed".padStart(12)} ${"overhead".padStart(12)}`,
    );
    const firstPlain = median(plain.map((s) => s.firstLineMs));
    const firstBoxed = median(boxed.map((s) => s.firstLineMs));
    console.log(row("startWorker() → first line of output", firstPlain, firstBoxed));
    reportFigure({
      figure: "sandboxed worker start → first line",
      value: firstBoxed,
      unit: "ms",
      reference: firstPlain,
      referenceName: "same worker unsandboxed",
    });
    console.log(
      row(
        "whole run of `true` (start → group gone)",
        median(plain.map((s) => s.wholeRunMs)),
        median(boxed.map((s) => s.wholeRunMs)),
      ),
    );
    const viewMs = median(boxed.map((s) => s.viewMs));
    console.log(
      `${"preparing the worker's view of the mirror".padEnd(44)} ${"".padStart(10)} ${viewMs.toFixed(1).padStart(9)} ms`,
    );
    console.log(
      `sandbox start overhead (first line, plus the view): ${(firstBoxed - firstPlain + viewMs).toFixed(1)} ms`,
    );
  } finally {
    await rm(home, { recursive: true, force: true });
    await server.stop();
  }
}

await main();
