import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { SERVER_NODE_FLAGS } from "../../src/cli/node-flags.js";
import { findFreePort } from "../../src/db/embedded.js";

export const REPO_ROOT = path.resolve(import.meta.dirname, "../..");

export interface OverseerProcess {
  child: ChildProcess;
  port: number;
  output(): string;
  waitForHealth(timeoutMs?: number): Promise<{ status: number; body: Record<string, unknown> }>;
  exited: Promise<number | null>;
}

/** Runs the CLI as its own process, exactly as `npm start` / `overseer …` would. */
export async function spawnOverseer(
  args: string[],
  env: Record<string, string | undefined>,
  options: { cwd?: string } = {},
): Promise<OverseerProcess> {
  const port = env.PORT ? Number(env.PORT) : await findFreePort();
  const nodeArgs = [...SERVER_NODE_FLAGS, "--import", "tsx", "src/cli/main.ts", ...args];
  const child = spawn(process.execPath, nodeArgs, {
    cwd: options.cwd ?? REPO_ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      LOG_LEVEL: "info",
      PORT: String(port),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    output += chunk;
  });
  const exited = once(child, "exit").then(([code]) => code as number | null);
  return {
    child,
    port,
    exited,
    output: () => output,
    async waitForHealth(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      let last: unknown;
      while (Date.now() < deadline) {
        if (child.exitCode !== null) throw new Error(`overseer exited early:\n${output}`);
        try {
          const response = await fetch(`http://127.0.0.1:${port}/healthz`);
          const body = (await response.json()) as Record<string, unknown>;
          if (response.status === 200) return { status: response.status, body };
          last = body;
        } catch (error) {
          last = error;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error(`no healthy /healthz within ${timeoutMs} ms (${String(last)}):\n${output}`);
    },
  };
}

/** Runs the CLI to completion and returns its exit code and output. */
export async function runOverseer(
  args: string[],
  env: Record<string, string | undefined>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => {
    stdout += chunk;
  });
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const [code] = await once(child, "exit");
  return { code: code as number | null, stdout, stderr };
}

/** Pids of live processes whose command line mentions `needle` (read from /proc). */
export async function processesMentioning(needle: string): Promise<number[]> {
  const { readdir, readFile } = await import("node:fs/promises");
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, "utf8")).replace(/\0/g, " ");
      if (cmdline.includes(needle)) pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}
