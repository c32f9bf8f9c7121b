/**
 * ensureWorktree against raw git on a repository with 5,000 files and 200 commits, origin
 * served over smart HTTP, the mirror warm. Two references, measured interleaved in the same
 * run: raw `git worktree add` alone, and raw `git fetch` (the same URL and refspec, nothing
 * new to fetch) then `git worktree add`, which is the work a fresh worktree has to do
 * (it starts from origin's latest base). Run with `npx tsx bench/worktree.bench.ts`.
 * Targets: fresh worktree ≤ 1.1× raw git, reuse ≤ 50 ms (medians). Prints figures.
 */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { ensureMirror, ensureWorktree, type WorkspaceTask } from "../src/workspace/index.js";
import { authorizationHeader } from "../src/workspace/secrets.js";
import { startGitServer } from "../test/support/git-http.js";
import { reportFigure } from "./figures.js";

const FILES = 5_000;
const COMMITS = 200;
const RUNS = 9;
const REUSE_RUNS = 25;
const TOKEN = "ghs_benchtoken";

const run = promisify(execFile);

/** fast-import builds the history in one process, in well under a second. */
function fastImportStream(): string {
  const parts: string[] = [];
  const data = (text: string) => `data ${Buffer.byteLength(text)}\n${text}\n`;
  const file = (i: number, version: number) =>
    `// file ${i}, version ${version}\n${"export const value = 0;\n".repeat(4)}`;
  const filePath = (i: number) => `src/module${i % 50}/file${i}.ts`;
  for (let c = 1; c <= COMMITS; c++) {
    parts.push("commit refs/heads/main\n", `mark :${c}\n`);
    parts.push(`committer Bench <bench@example.com> ${1_700_000_000 + c * 60} +0000\n`);
    parts.push(data(`commit ${c}`));
    if (c > 1) parts.push(`from :${c - 1}\n`);
    const touched =
      c === 1 ? [...Array(FILES).keys()] : [0, 1, 2, 3, 4].map((k) => (c * 5 + k) % FILES);
    for (const i of touched) parts.push(`M 100644 inline ${filePath(i)}\n`, data(file(i, c)));
  }
  parts.push("done\n");
  return parts.join("");
}

async function buildOrigin(dir: string) {
  await run("git", ["init", "--quiet", "--bare", "-b", "main", dir]);
  const child = spawn("git", ["fast-import", "--quiet", "--done"], {
    cwd: dir,
    stdio: ["pipe", "ignore", "inherit"],
  });
  child.stdin.end(fastImportStream());
  const [code] = await once(child, "exit");
  if (code !== 0) throw new Error(`git fast-import exited with ${code}`);
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

async function main() {
  const root = await mkdtemp(path.join(os.tmpdir(), "overseer-bench-"));
  // origin as GitHub serves it: smart HTTP behind the installation token.
  const server = await startGitServer({ tokens: [TOKEN] });
  try {
    const home = path.join(root, "home");
    await buildOrigin(path.join(server.root, "bench", "repo.git"));
    const opts = { home, token: TOKEN };
    const task = (issueNumber: number): WorkspaceTask => ({
      repoFullName: "bench/repo",
      cloneUrl: `${server.url}/bench/repo.git`,
      issueNumber,
      title: "Benchmark task",
      base: "main",
    });
    const mirror = await ensureMirror(task(1), opts);
    // `--no-track`: starting from origin/main, git would otherwise write a [branch] section
    // into the shared mirror's config on every add, which Overseer (starting from a SHA, so
    // writing none) would then find changed and restore, paying for the reference's write.
    const raw = (n: number) =>
      run(
        "git",
        [
          "worktree",
          "add",
          "--quiet",
          "--no-track",
          "-b",
          `raw-${n}`,
          path.join(root, "raw", String(n)),
          "origin/main",
        ],
        {
          cwd: mirror,
        },
      );

    const auth = authorizationHeader(TOKEN);
    const rawFetchAndAdd = async (n: number) => {
      await run(
        "git",
        [
          "-c",
          `http.extraHeader=${auth}`,
          "fetch",
          "--quiet",
          "--prune",
          "--no-tags",
          "--no-write-fetch-head",
          `${server.url}/bench/repo.git`,
          "+refs/heads/*:refs/remotes/origin/*",
        ],
        { cwd: mirror },
      );
      await raw(n);
    };

    // Warm the page cache and git's own start-up before measuring either side.
    await raw(0);
    await rawFetchAndAdd(1_000);
    await ensureWorktree(task(1), opts);

    const rawTimes: number[] = [];
    const rawFetchTimes: number[] = [];
    const freshTimes: number[] = [];
    for (let n = 1; n <= RUNS; n++) {
      // Interleaved, so drift in machine load hits every side alike.
      rawTimes.push(await timed(() => raw(n)));
      rawFetchTimes.push(await timed(() => rawFetchAndAdd(1_000 + n)));
      freshTimes.push(await timed(() => ensureWorktree(task(100 + n), opts)));
    }
    const reuseTimes: number[] = [];
    for (let n = 0; n < REUSE_RUNS; n++) {
      reuseTimes.push(await timed(() => ensureWorktree(task(101), opts)));
    }

    const rawMs = median(rawTimes);
    const rawFetchMs = median(rawFetchTimes);
    const freshMs = median(freshTimes);
    const reuseMs = median(reuseTimes);
    const ratio = freshMs / rawFetchMs;
    const ms = (value: number) => `${value.toFixed(1)} ms`;
    const row = (name: string, value: string, target = "") =>
      `| ${name.padEnd(44)} | ${value.padStart(10)} | ${target.padEnd(13)} |`;
    console.log(
      `${FILES} files, ${COMMITS} commits; medians of ${RUNS} runs (reuse: ${REUSE_RUNS})`,
    );
    console.log(row("measurement", "median", "target"));
    console.log(`|${"-".repeat(46)}|${"-".repeat(12)}|${"-".repeat(15)}|`);
    console.log(row("raw `git worktree add --no-track -b x <p> origin/main`", ms(rawMs)));
    console.log(row("raw `git fetch` (nothing new), then the same add", ms(rawFetchMs)));
    console.log(row("ensureWorktree, fresh worktree", ms(freshMs)));
    // The ratio swings with disk load on a shared machine; the absolute overhead does not.
    console.log(row("overhead (fresh - raw fetch + add)", ms(freshMs - rawFetchMs)));
    console.log(row("ratio fresh / raw add alone", (freshMs / rawMs).toFixed(2)));
    console.log(
      row(
        "ratio fresh / raw fetch + add",
        ratio.toFixed(2),
        `≤ 1.10 ${ratio <= 1.1 ? "ok" : "MISSED"}`,
      ),
    );
    console.log(
      row("ensureWorktree, reuse", ms(reuseMs), `≤ 50 ms ${reuseMs <= 50 ? "ok" : "MISSED"}`),
    );
    reportFigure({
      figure: "ensureWorktree, fresh (warm mirror)",
      value: freshMs,
      unit: "ms",
      reference: rawFetchMs,
      referenceName: "raw git fetch + worktree add",
      target: "≤ 1.1× raw",
      met: ratio <= 1.1,
    });
    reportFigure({
      figure: "ensureWorktree, fresh, against `worktree add` alone",
      value: freshMs,
      unit: "ms",
      reference: rawMs,
      referenceName: "raw git worktree add",
    });
    reportFigure({
      figure: "ensureWorktree, reuse",
      value: reuseMs,
      unit: "ms",
      target: "≤ 50 ms",
      met: reuseMs <= 50,
    });
  } finally {
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
