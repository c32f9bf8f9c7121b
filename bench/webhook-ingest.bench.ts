/**
 * Webhook ingest: signed deliveries over real HTTP to `overseer serve` running as its own
 * process, at fixed rates, open loop (each send is scheduled on a fixed clock and never
 * waits for an earlier reply; latency counts from the scheduled moment, so a server that
 * falls behind shows it). Half are GitHub's `issues.labeled` example relabelled with the
 * trigger label on a fresh issue (a task is created: config read, sender permission,
 * one transaction), half its `issue_comment.created` example (a conversation comment,
 * no command). GitHub's API is the stand-in (test/support/github-stand-in.ts) in a process
 * of its own (bench/stand-in-process.ts), reached over loopback HTTP as GitHub Enterprise
 * would be; PostgreSQL is real.
 *
 * Reference, same machine, same run, interleaved rate by rate: a bare Probot app with empty
 * handlers (bench/bare-probot-app.ts), also its own process. Overseer answers once a
 * delivery is stored and processes it afterwards, so each rate also reports when the last
 * stored delivery was processed (and that each made its task). Prints figures; never fails
 * on a time.
 *
 *   npx tsx bench/webhook-ingest.bench.ts [seconds per rate]
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHmac, generateKeyPairSync, randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { findFreePort } from "../src/db/embedded.js";
import { createPool, type Pool } from "../src/db/pool.js";
import { figures, openDatabase } from "./app-harness.js";
import { reportFigure } from "./figures.js";

const SECONDS = Number(process.argv[2] ?? 5);
// BENCH_INGEST_RATES=500 (comma-separated) measures only those rates.
const RATES = (process.env.BENCH_INGEST_RATES ?? "100,200,500").split(",").map(Number);
const P99_LIMIT_MS = 50;
const TARGET_RATIO = 1.5;
const SECRET = "bench-webhook-secret";
const INSTALLATION_ID = 4242;
const root = path.resolve(import.meta.dirname, "..");

// GitHub's example payloads, reshaped freely; their full types would only get in the way.
// biome-ignore lint/suspicious/noExplicitAny: see above
type Payload = Record<string, any>;

const examples = createRequire(import.meta.url)(
  "@octokit/webhooks-examples/api.github.com/index.json",
) as { name: string; examples: Payload[] }[];

function example(event: string, action: string): Payload {
  const found = examples
    .find((entry) => entry.name === event)
    ?.examples.find((entry) => entry.action === action);
  if (!found) throw new Error(`no webhook example for ${event}.${action}`);
  const payload = structuredClone(found);
  payload.installation = {
    id: INSTALLATION_ID,
    node_id: "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==",
  };
  return payload;
}

interface Delivery {
  headers: Record<string, string>;
  body: string;
}

let issueCounter = 1_000;

/** Signed deliveries, alternating a trigger label on a fresh issue and a plain comment. */
function deliveries(count: number): Delivery[] {
  const labeled = example("issues", "labeled");
  const commented = example("issue_comment", "created");
  const out: Delivery[] = [];
  for (let i = 0; i < count; i++) {
    const only = process.env.BENCH_INGEST_ONLY;
    const event = only ?? (i % 2 === 0 ? "issues" : "issue_comment");
    const payload = structuredClone(event === "issues" ? labeled : commented);
    if (event === "issues") {
      payload.label = { ...payload.label, name: "overseer" };
      payload.issue.number = ++issueCounter;
    }
    const body = JSON.stringify(payload);
    out.push({
      body,
      headers: {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": randomUUID(),
        "user-agent": "GitHub-Hookshot/bench",
        "x-hub-signature-256": `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`,
      },
    });
  }
  return out;
}

interface Load {
  latencies: number[];
  /** The same latencies by event (issues, issue_comment). */
  byEvent: Map<string, number[]>;
  statuses: Map<number | string, number>;
  /** How late, at worst, the generator sent relative to its own clock. */
  maxSendLagMs: number;
  /** performance.now() of the first scheduled send and of the last answer. */
  startedAt: number;
  answeredAt: number;
}

/** Sends `items` at `rate` per second on a fixed clock, without waiting for replies. */
async function openLoop(port: number, rate: number, items: Delivery[]): Promise<Load> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  const byEvent = new Map<string, number[]>();
  const latencies: number[] = [];
  const statuses = new Map<number | string, number>();
  const count = (key: number | string) => statuses.set(key, (statuses.get(key) ?? 0) + 1);
  const pending: Promise<void>[] = [];
  const interval = 1000 / rate;
  const start = performance.now() + 20;
  let maxSendLagMs = 0;
  for (let i = 0; i < items.length; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    maxSendLagMs = Math.max(maxSendLagMs, performance.now() - due);
    const item = items[i] as Delivery;
    pending.push(
      new Promise<void>((resolve) => {
        const req = http.request(
          {
            host: "127.0.0.1",
            port,
            method: "POST",
            path: "/api/github/webhooks",
            headers: { ...item.headers, "content-length": Buffer.byteLength(item.body) },
            agent,
          },
          (res) => {
            res.resume();
            res.on("end", () => {
              const latency = performance.now() - due;
              latencies.push(latency);
              const event = item.headers["x-github-event"] ?? "";
              byEvent.set(event, [...(byEvent.get(event) ?? []), latency]);
              count(res.statusCode ?? 0);
              resolve();
            });
          },
        );
        req.on("error", (error) => {
          count(error.message);
          resolve();
        });
        req.end(item.body);
      }),
    );
  }
  await Promise.all(pending);
  const answeredAt = performance.now();
  agent.destroy();
  return { latencies, byEvent, statuses, maxSendLagMs, startedAt: start, answeredAt };
}

interface Server {
  name: string;
  port: number;
  child: ChildProcess;
  output(): string;
}

async function startProcess(
  name: string,
  args: string[],
  env: Record<string, string>,
  ready: (port: number) => Promise<boolean>,
  started?: (server: Server) => void,
): Promise<Server> {
  const port = await findFreePort();
  const child = spawn(process.execPath, ["--import", "tsx", ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", PORT: String(port), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    output += chunk;
  });
  const server = { name, port, child, output: () => output };
  started?.(server);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited early:\n${output}`);
    if (await ready(port).catch(() => false)) break;
    if (Date.now() > deadline) throw new Error(`${name} did not come up:\n${output}`);
    await sleep(100);
  }
  return server;
}

/** CPU time (user + system) the process has used so far, in ms (Linux /proc). */
async function cpuMs(server: Server): Promise<number> {
  const stat = await readFile(`/proc/${server.child.pid}/stat`, "utf8").catch(() => "");
  // Fields after the command name: state is field 3; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? ticks * 10 : Number.NaN;
}

async function stopProcess(server: Server | undefined): Promise<void> {
  if (!server || server.child.exitCode !== null) return;
  const exited = once(server.child, "exit");
  server.child.kill("SIGTERM");
  const timer = setTimeout(() => server.child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

/** A POST to the webhook path without a signature: any answer means the server listens. */
async function answers(port: number): Promise<boolean> {
  const response = await fetch(`http://127.0.0.1:${port}/api/github/webhooks`, {
    method: "POST",
    body: "{}",
  });
  await response.text();
  return response.status > 0;
}

let tasksBefore = 0;

/**
 * Waits until no stored delivery is pending: when the last of a rate's deliveries was
 * processed, how many were, and how many tasks they made (one per labeled delivery).
 */
async function processingDrained(
  pool: Pool,
  sent: number,
): Promise<{ at: number; count: number; tasks: number; unprocessed: number }> {
  for (;;) {
    const { rows } = await pool.query<{ pending: number; tasks: number; failed: number }>(
      `SELECT (SELECT count(*) FROM deliveries WHERE outcome = 'pending')::int AS pending,
              (SELECT count(*) FROM deliveries WHERE outcome IN ('rejected', 'dead'))::int AS failed,
              (SELECT count(*) FROM tasks)::int AS tasks`,
    );
    const figures = rows[0] ?? { pending: 0, tasks: 0, failed: 0 };
    if (figures.pending === 0) {
      const at = performance.now();
      const tasks = figures.tasks - tasksBefore;
      tasksBefore = figures.tasks;
      const labeled = process.env.BENCH_INGEST_ONLY
        ? process.env.BENCH_INGEST_ONLY === "issues"
          ? sent
          : 0
        : Math.ceil(sent / 2);
      return { at, count: labeled, tasks, unprocessed: figures.failed };
    }
    await sleep(20);
  }
}

async function main(): Promise<void> {
  const { privateKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  });
  const credentials = { APP_ID: "123", PRIVATE_KEY: privateKey, WEBHOOK_SECRET: SECRET };
  const home = await mkdtemp(path.join(tmpdir(), "overseer-bench-ingest-"));
  const db = await openDatabase();
  const observer = createPool(db.url, undefined, 2);
  let overseer: Server | undefined;
  let bare: Server | undefined;
  let github: Server | undefined;
  try {
    const repository = example("issues", "labeled").repository.full_name as string;
    let standIn: { host: string; appId: number } | undefined;
    github = await startProcess(
      "GitHub stand-in",
      ["bench/stand-in-process.ts", repository],
      { WEBHOOK_SECRET: SECRET },
      async () => {
        const line = github?.output().split("\n")[0] ?? "";
        if (!line.startsWith("{")) return false;
        standIn = JSON.parse(line);
        return true;
      },
      (server) => {
        github = server;
      },
    );
    if (!standIn) throw new Error("the stand-in did not say where it listens");
    overseer = await startProcess(
      "overseer serve",
      [
        ...(process.env.BENCH_CPU_PROF
          ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`]
          : []),
        "src/cli/main.ts",
        "serve",
      ],
      {
        ...credentials,
        APP_ID: String(standIn.appId),
        GHE_HOST: standIn.host,
        GHE_PROTOCOL: "http",
        DATABASE_URL: db.url,
        OVERSEER_HOME: home,
        HOST: "127.0.0.1",
        LOG_LEVEL: "warn",
        // The default pacing of status comments and labels, as in production.
        OVERSEER_OUTBOX_SETTLE: "2s",
      },
      async (port) => (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200,
    );
    bare = await startProcess("bare Probot", ["bench/bare-probot-app.ts"], credentials, answers);

    // Warm-up at a low rate: connections, JIT, the installation token, prepared plans.
    for (const server of [overseer, bare]) await openLoop(server.port, 50, deliveries(100));
    await processingDrained(observer, 0);

    console.log(
      `webhook ack latency, open loop, ${SECONDS} s per rate, half issues.labeled (trigger label, new issue), half issue_comment.created (no command)`,
    );
    console.log(
      `${"rate".padStart(6)} ${"server".padEnd(16)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"max ms".padStart(8)}  statuses`,
    );
    const held = { overseer: 0, bare: 0 };
    for (const rate of RATES) {
      const results: Record<string, number[]> = {};
      for (const server of [bare, overseer]) {
        const cpuBefore = await cpuMs(server);
        const load = await openLoop(server.port, rate, deliveries(rate * SECONDS));
        const answeringCpu = (await cpuMs(server)) - cpuBefore;
        const f = figures(load.latencies);
        results[server.name] = load.latencies;
        const ok = [...load.statuses].every(
          ([status]) => typeof status === "number" && status >= 200 && status < 300,
        );
        if (ok && f.p99 < P99_LIMIT_MS) held[server === bare ? "bare" : "overseer"] = rate;
        console.log(
          `${String(rate).padStart(6)} ${server.name.padEnd(16)} ${f.p50.toFixed(1).padStart(8)} ${f.p99.toFixed(1).padStart(8)} ${f.max.toFixed(1).padStart(8)}  ${[...load.statuses].map(([s, n]) => `${n}× ${s}`).join(", ")}; generator lag ≤ ${load.maxSendLagMs.toFixed(1)} ms`,
        );
        for (const [event, latencies] of load.byEvent) {
          const e = figures(latencies);
          console.log(
            `${"".padStart(6)} ${`  ${event}`.padEnd(16)} ${e.p50.toFixed(1).padStart(8)} ${e.p99.toFixed(1).padStart(8)} ${e.max.toFixed(1).padStart(8)}`,
          );
        }
        console.log(
          `${"".padStart(6)} ${"  CPU".padEnd(16)} ${(answeringCpu / (rate * SECONDS)).toFixed(2)} ms of this process per delivery while the load ran`,
        );
        if (server.name === overseer.name) {
          const drained = await processingDrained(observer, rate * SECONDS);
          const totalCpu = (await cpuMs(server)) - cpuBefore;
          const processedIn = drained.at - load.startedAt;
          console.log(
            `${"".padStart(6)} ${"  processed".padEnd(16)} last stored delivery processed ${((drained.at - load.answeredAt) / 1000).toFixed(1)} s after the last answer; ${(drained.count / (processedIn / 1000)).toFixed(0)} deliveries/s over the run; ${drained.tasks} tasks, ${drained.unprocessed} not processed; ${(totalCpu / Math.max(1, drained.count)).toFixed(1)} ms CPU per stored delivery, answer to processed`,
          );
          reportFigure({
            figure: `webhook processing throughput at ${rate}/s offered`,
            value: drained.count / (processedIn / 1000),
            unit: "/s",
          });
        }
        // Let the outbox drain what this rate queued, so the next rate starts level.
        await sleep(3_000);
      }
      const ours = figures(results[overseer.name] ?? []);
      const ref = figures(results[bare.name] ?? []);
      reportFigure({
        figure: `webhook ack p50 at ${rate}/s`,
        value: ours.p50,
        unit: "ms",
        reference: ref.p50,
        referenceName: "bare Probot",
      });
      reportFigure({
        figure: `webhook ack p99 at ${rate}/s`,
        value: ours.p99,
        unit: "ms",
        reference: ref.p99,
        referenceName: "bare Probot",
        target: `≤ ${TARGET_RATIO}× bare`,
        met: ours.p99 <= TARGET_RATIO * ref.p99,
      });
    }
    reportFigure({
      figure: `highest rate held with p99 < ${P99_LIMIT_MS} ms (of ${RATES.join("/")})`,
      value: held.overseer,
      unit: "/s",
      reference: held.bare,
      referenceName: "bare Probot",
    });
    console.log(
      `highest rate held with p99 < ${P99_LIMIT_MS} ms: overseer ${held.overseer}/s, bare Probot ${held.bare}/s`,
    );
    const health = await fetch(`http://127.0.0.1:${overseer.port}/healthz`);
    console.log(`overseer /healthz after the load: ${health.status} ${await health.text()}`);
  } finally {
    await stopProcess(overseer);
    await stopProcess(bare);
    await stopProcess(github);
    const summary = github?.output().trim().split("\n").at(-1);
    if (summary) console.log(`GitHub stand-in: ${summary}`);
    await observer.end();
    await db.close();
    await rm(home, { recursive: true, force: true });
  }
}

await main();
