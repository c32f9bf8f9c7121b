/**
 * How long stop() takes from the call to "no process of the group remains", for workers
 * that honour SIGTERM. The grace period is set far above the expected latency, so a
 * figure near it would mean SIGTERM was not enough and SIGKILL did the work.
 *
 *   npx tsx bench/stop-latency.bench.ts [runs]
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { isProcessGroupAlive } from "../src/runner/process-group.js";
import { startWorker } from "../src/runner/supervise.js";

const RUNS = Number(process.argv[2] ?? 30);
const GRACE_MS = 5_000;
const TARGET_P50_MS = 500;
const FIXTURES = fileURLToPath(new URL("../test/fixtures/workers/", import.meta.url));

const SCENARIOS: { name: string; argv: string[]; ready: string }[] = [
  {
    name: "sh, exec sleep (honours SIGTERM)",
    argv: ["sh", "-c", "echo ready; exec sleep 1000"],
    ready: "ready",
  },
  {
    name: "sh with a child (sleep & wait)",
    argv: ["sh", "-c", "sleep 1000 & echo ready; wait"],
    ready: "ready",
  },
  {
    name: "node with a SIGTERM handler",
    argv: [process.execPath, path.join(FIXTURES, "node-term.mjs")],
    ready: "ready",
  },
];

function percentile(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? Number.NaN;
}

async function waitForReady(logPath: string, text: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(existsSync(logPath) && readFileSync(logPath, "utf8").includes(text))) {
    if (Date.now() > deadline) throw new Error(`worker never printed ${text}`);
    await sleep(5);
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), "overseer-bench-"));
  let worstP50 = 0;
  try {
    console.log(`stop() → group gone, ${RUNS} runs each, grace ${GRACE_MS} ms`);
    for (const scenario of SCENARIOS) {
      const latencies: number[] = [];
      for (let run = 0; run < RUNS; run++) {
        const logPath = path.join(dir, `${latencies.length}-${scenario.name.length}-${run}.log`);
        const handle = startWorker({
          argv: scenario.argv,
          cwd: dir,
          env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir },
          logPath,
          logLimitBytes: 1024 * 1024,
          timeoutMs: 60_000,
          idleTimeoutMs: 60_000,
          graceMs: GRACE_MS,
          secrets: [],
        });
        await waitForReady(logPath, scenario.ready);
        const stoppedAt = performance.now();
        await handle.stop("stopped");
        latencies.push(performance.now() - stoppedAt);
        if (isProcessGroupAlive(handle.pgid)) {
          throw new Error(`group ${handle.pgid} still alive after stop()`);
        }
      }
      latencies.sort((a, b) => a - b);
      const p50 = percentile(latencies, 50);
      worstP50 = Math.max(worstP50, p50);
      console.log(
        `${scenario.name.padEnd(36)} p50 ${p50.toFixed(1).padStart(6)} ms   p99 ${percentile(latencies, 99).toFixed(1).padStart(6)} ms   max ${(latencies.at(-1) ?? 0).toFixed(1).padStart(6)} ms`,
      );
    }
    console.log(
      `target p50 < ${TARGET_P50_MS} ms: ${worstP50 < TARGET_P50_MS ? "met" : "MISSED"} (worst p50 ${worstP50.toFixed(1)} ms)`,
    );
    if (worstP50 >= TARGET_P50_MS) process.exitCode = 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
