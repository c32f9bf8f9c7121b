/**
 * Runs the benchmarks in this directory one after another (they compete for the same cores
 * otherwise), prints one table of their headline figures, each against the reference it
 * measured in the same run, and writes BENCHMARKS.md at the repository root with the
 * machine it ran on and every benchmark's detail. A subset runs by name, for development:
 *
 *   npm run bench                     # all of them, writes BENCHMARKS.md
 *   npm run bench -- claim worktree   # only claim.bench.ts and worktree.bench.ts
 *
 * Figures never fail the run; a benchmark that exits non-zero (a double claim, a crash)
 * does, after the table.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { startEmbeddedPostgres } from "../src/db/embedded.js";
import { FIGURES_FILE_ENV, type Figure } from "./figures.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const root = path.resolve(here, "..");
const wanted = process.argv.slice(2);
const benches = readdirSync(here)
  .filter((name) => name.endsWith(".bench.ts"))
  .filter((name) => wanted.length === 0 || wanted.some((w) => name.startsWith(w)))
  .sort();
if (benches.length === 0) {
  console.error(`no benchmark matches ${wanted.join(", ")}`);
  process.exit(2);
}

interface BenchResult {
  name: string;
  status: string;
  seconds: number;
  output: string;
  figures: Figure[];
}

const scratch = mkdtempSync(path.join(os.tmpdir(), "overseer-bench-run-"));
let child: ReturnType<typeof spawn> | undefined;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    // The benchmark cleans up on the signal it also gets from the terminal; pass it on.
    if (child?.pid) child.kill(signal);
  });
}

function runBench(name: string): Promise<BenchResult> {
  const figuresFile = path.join(scratch, `${name}.jsonl`);
  writeFileSync(figuresFile, "");
  const started = performance.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    child = spawn(process.execPath, ["--import", "tsx", path.join(here, name)], {
      cwd: root,
      env: { ...process.env, [FIGURES_FILE_ENV]: figuresFile },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.on("close", (code, signal) => {
      const figures = readFileSync(figuresFile, "utf8")
        .split("\n")
        .filter((line) => line.trim() !== "")
        .map((line) => JSON.parse(line) as Figure);
      resolve({
        name,
        status: code === 0 ? "ok" : `failed (${code ?? signal})`,
        seconds: (performance.now() - started) / 1000,
        output: Buffer.concat(chunks).toString("utf8"),
        figures,
      });
    });
  });
}

function formatNumber(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  if (abs >= 1000) return value.toFixed(0);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function tableRows(results: BenchResult[]): string[][] {
  const rows: string[][] = [];
  for (const result of results) {
    for (const f of result.figures) {
      const reference =
        f.reference === undefined
          ? "–"
          : `${formatNumber(f.reference)} ${f.unit}${f.referenceName ? ` (${f.referenceName})` : ""}`;
      const target = f.target
        ? `${f.target}${f.met === undefined ? "" : f.met ? " ✓" : " ✗"}`
        : "–";
      rows.push([
        f.figure,
        `${formatNumber(f.value)} ${f.unit}`,
        reference,
        f.ratio === undefined ? "–" : `${formatNumber(f.ratio)}×`,
        target,
      ]);
    }
  }
  return rows;
}

const HEAD = ["figure", "value", "reference", "ratio", "target"];

function plainTable(rows: string[][]): string {
  const widths = HEAD.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ");
  return [line(HEAD), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

function markdownTable(rows: string[][]): string {
  const escapePipes = (cell: string) => cell.replaceAll("|", "\\|");
  return [
    `| ${HEAD.join(" | ")} |`,
    `|${HEAD.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`,
    ...rows.map((r) => `| ${r.map(escapePipes).join(" | ")} |`),
  ].join("\n");
}

async function postgresVersion(): Promise<string> {
  const url = process.env.DATABASE_URL;
  const ask = async (connectionString: string) => {
    const client = new pg.Client({ connectionString });
    await client.connect();
    try {
      const result = await client.query<{ server_version: string }>("SHOW server_version");
      return result.rows[0]?.server_version ?? "unknown";
    } finally {
      await client.end();
    }
  };
  if (url) return `${await ask(url)} (DATABASE_URL)`;
  const home = mkdtempSync(path.join(os.tmpdir(), "overseer-bench-pgversion-"));
  try {
    const server = await startEmbeddedPostgres(home);
    try {
      return `${await ask(server.adminUrl)} (embedded)`;
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

function machine(pgVersion: string): string[] {
  const cpus = os.cpus();
  const git = spawnSync("git", ["--version"], { encoding: "utf8" }).stdout.trim();
  const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], {
    cwd: root,
    encoding: "utf8",
  }).stdout.trim();
  return [
    `- CPU: ${cpus[0]?.model.trim() ?? "unknown"}, ${cpus.length} cores`,
    `- RAM: ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    `- OS: ${os.type()} ${os.release()} (${os.arch()})`,
    `- Node: ${process.version}`,
    `- PostgreSQL: ${pgVersion}`,
    `- ${git}`,
    `- Commit: ${commit}`,
    `- Date: ${new Date().toISOString()}`,
  ];
}

const results: BenchResult[] = [];
const startedAll = performance.now();
for (const name of benches) {
  process.stdout.write(`${name} … `);
  const result = await runBench(name);
  results.push(result);
  console.log(
    `${result.status} in ${result.seconds.toFixed(0)} s, ${result.figures.length} figures`,
  );
  if (result.status !== "ok") console.log(result.output.split("\n").slice(-30).join("\n"));
}
child = undefined;
const rows = tableRows(results);
console.log(`\n${plainTable(rows)}`);

const pgVersion = await postgresVersion().catch((error: unknown) => `unknown (${error})`);
const info = machine(pgVersion);
console.log(`\n${info.join("\n")}`);
const failed = results.filter((r) => r.status !== "ok");

if (wanted.length === 0) {
  const markdown = [
    "# Benchmarks",
    "",
    "Written by `npm run bench` (bench/run-all.ts); every ratio is a figure over its reference",
    "measured in the same run on the same machine. Figures are never a pass/fail gate.",
    "",
    "## Machine",
    "",
    ...info,
    `- Whole run: ${((performance.now() - startedAll) / 1000).toFixed(0)} s`,
    "",
    "## Figures",
    "",
    markdownTable(rows),
    "",
    "## Detail",
    "",
    ...results.flatMap((r) => [
      `### ${r.name} (${r.status}, ${r.seconds.toFixed(0)} s)`,
      "",
      "```text",
      r.output.trimEnd(),
      "```",
      "",
    ]),
  ].join("\n");
  writeFileSync(path.join(root, "BENCHMARKS.md"), markdown);
  console.log("\nwrote BENCHMARKS.md");
}
rmSync(scratch, { recursive: true, force: true });
if (failed.length > 0) {
  console.error(`\nfailed: ${failed.map((r) => `${r.name} ${r.status}`).join(", ")}`);
  process.exit(1);
}
