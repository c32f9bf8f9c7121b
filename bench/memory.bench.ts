/**
 * Memory of `overseer start` as its own process (what `npm start` runs), against the GitHub
 * stand-in: resident set size idle with 10,000 finished tasks in the database (and their
 * events), then after many lifecycles (label → worker → PR → merge → done; the worker
 * commits at once). The references are measured in the same run: a bare Probot app idle
 * (bench/bare-probot-app.ts), and the same Overseer process after its warm-up lifecycles,
 * so growth shows as a ratio.
 *
 *   npx tsx bench/memory.bench.ts [lifecycles]   (default 1,000, as the target says: about 6–10 minutes)
 *
 * Targets: idle < 150 MB; after the lifecycles no growth beyond noise. Prints figures.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { findFreePort } from "../src/db/embedded.js";
import { median, reportFigure } from "./figures.js";
import { startLifecycleRig } from "./lifecycle-harness.js";

const LIFECYCLES = Number(process.argv[2] ?? 1_000);
const SEEDED_TASKS = 10_000;
const WARMUP = Math.min(50, Math.max(1, Math.floor(LIFECYCLES / 10)));
const IN_FLIGHT = 8;
const IDLE_TARGET_MB = 150;
const MB = 1024 * 1024;
const root = path.resolve(import.meta.dirname, "..");

async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) * 1024;
}

/** The median of a few samples a second apart, after `quietMs` of nothing happening. */
async function settledRss(read: () => Promise<number>, quietMs: number): Promise<number> {
  await sleep(quietMs);
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(await read());
    await sleep(1_000);
  }
  return median(samples);
}

async function seed(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const repo = await client.query<{ id: number }>(
      `INSERT INTO repos (github_id, full_name, installation_id, clone_url, default_branch)
       VALUES (77000001, 'octo/history', 4242, 'https://github.com/octo/history.git', 'main')
       RETURNING id`,
    );
    // Finished work, as a year of use leaves it: cancelled and failed tasks with events.
    await client.query(
      `INSERT INTO tasks (repo_id, issue_number, title, state, attempts, branch, last_error,
                          finished_at, labels)
       SELECT $1, g, 'Historic task ' || g, CASE WHEN g % 2 = 0 THEN 'cancelled' ELSE 'failed' END::task_state,
              1, 'overseer/' || g || '-historic-task', CASE WHEN g % 2 = 1 THEN 'worker exited 1' END,
              now() - (g || ' minutes')::interval, '{overseer}'
         FROM generate_series(1, $2::int) AS g`,
      [repo.rows[0]?.id, SEEDED_TASKS],
    );
    await client.query(
      `INSERT INTO task_events (task_id, event, from_state, to_state, actor)
       SELECT id, e.event, e.from_state::task_state, e.to_state::task_state, 'runner:history'
         FROM tasks, (VALUES ('labeled', NULL, 'queued'), ('claimed', 'queued', 'running'),
                             ('run_failed', 'running', 'failed')) AS e (event, from_state, to_state)`,
    );
    await client.query("ANALYZE");
  } finally {
    await client.end();
  }
}

async function bareProbotRss(): Promise<number> {
  const { privateKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  });
  const port = await findFreePort();
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", "bench/bare-probot-app.ts"],
    {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? "",
        PORT: String(port),
        APP_ID: "1",
        PRIVATE_KEY: privateKey,
        WEBHOOK_SECRET: "bench",
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  try {
    const [chunk] = (await once(child.stdout as NodeJS.ReadableStream, "data")) as [Buffer];
    if (!chunk.toString().startsWith("listening")) throw new Error(`bare Probot: ${chunk}`);
    return await settledRss(() => rssOf(child.pid as number), 3_000);
  } finally {
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    await exited;
  }
}

const bare = await bareProbotRss();
const rig = await startLifecycleRig({ capacity: IN_FLIGHT, seed });
try {
  const idle = await settledRss(() => rig.rss(), 5_000);
  console.log(
    `idle with ${SEEDED_TASKS} tasks (${3 * SEEDED_TASKS} events): RSS ${(idle / MB).toFixed(1)} MB; a bare Probot app idle: ${(bare / MB).toFixed(1)} MB`,
  );
  reportFigure({
    figure: `RSS idle, ${SEEDED_TASKS} tasks in the database`,
    value: idle / MB,
    unit: "MB",
    reference: bare / MB,
    referenceName: "bare Probot idle",
    target: `< ${IDLE_TARGET_MB} MB`,
    met: idle / MB < IDLE_TARGET_MB,
  });

  const repos = await Promise.all(
    ["alpha", "beta", "gamma", "delta"].map((name) => rig.github.createRepo("octo", name)),
  );
  let started = 0;
  let finished = 0;
  const t0 = performance.now();
  const drive = async (count: number) => {
    const goal = finished + count;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async (_, lane) => {
        const repo = repos[lane % repos.length];
        if (!repo) throw new Error("no repository");
        while (started < goal) {
          started += 1;
          await rig.lifecycle(repo, `Lifecycle ${started}`);
          finished += 1;
        }
      }),
    );
    await rig.settled();
  };
  await drive(WARMUP);
  const warm = await settledRss(() => rig.rss(), 3_000);
  const samples: { at: number; rss: number }[] = [];
  const step = Math.max(1, Math.floor((LIFECYCLES - WARMUP) / 4));
  while (finished < LIFECYCLES) {
    await drive(Math.min(step, LIFECYCLES - finished));
    samples.push({ at: finished, rss: await rig.rss() });
  }
  const seconds = (performance.now() - t0) / 1000;
  const after = await settledRss(() => rig.rss(), 3_000);
  console.log(
    `${finished} lifecycles in ${seconds.toFixed(0)} s (${(finished / seconds).toFixed(1)}/s, ${IN_FLIGHT} in flight); RSS after ${WARMUP} warm-up: ${(warm / MB).toFixed(1)} MB, ${samples.map((s) => `after ${s.at}: ${(s.rss / MB).toFixed(1)} MB`).join(", ")}, settled at the end: ${(after / MB).toFixed(1)} MB`,
  );
  reportFigure({
    figure: `RSS after ${finished} lifecycles`,
    value: after / MB,
    unit: "MB",
    reference: warm / MB,
    referenceName: `after ${WARMUP} warm-up`,
    target: "no growth beyond noise (≈ 1×)",
    met: after / warm < 1.1,
  });
  if (rig.github.unknownCalls.length > 0) {
    console.log(`undocumented calls: ${rig.github.unknownCalls.join(", ")}`);
  }
} finally {
  await rig.stop();
}
