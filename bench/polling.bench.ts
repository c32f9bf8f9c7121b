/**
 * Polling cost of the watchdog's missed-webhook reconciliation: TASKS tasks awaiting merge
 * whose PRs did not change, on the GitHub stand-in (ETag / 304 and rate-limit accounting
 * as GitHub's). One priming pass reads everything once; each measured pass then runs every
 * GitHub detector (src/watchdog/reconcile) and must make only conditional requests that
 * answer 304, costing no rate limit. Exits non-zero otherwise. Uses DATABASE_URL (a fresh
 * database in it) or an embedded server.
 *
 *   npx tsx bench/polling.bench.ts [tasks]
 *
 * The stand-in runs a synchronous `git rev-parse` for every PR it is asked about, which
 * blocks the process both share. The passes are measured twice: as is, and with those
 * answers remembered (no branch moves during the passes), which leaves Overseer's side.
 */
import { pino } from "pino";
import { createPool } from "../src/db/pool.js";
import { githubDetectors } from "../src/watchdog/reconcile/index.js";
import { startGithubStandIn } from "../test/support/github-stand-in.js";
import { detectAndRepair, knownRepo, watchdogContext } from "../test/support/watchdog.js";
import { checkInterrupted, openDatabase } from "./app-harness.js";

const TASKS = Number(process.argv[2] ?? 500);
const MEASURED_PASSES = 3;

if (!Number.isInteger(TASKS) || TASKS < 1) {
  console.error(`usage: npx tsx bench/polling.bench.ts [tasks]   (got ${process.argv[2]})`);
  process.exit(2);
}

const database = await openDatabase();
const pool = createPool(database.url);
const github = await startGithubStandIn();
let failed = false;
try {
  const repo = await github.createRepo("octo", "polled");
  const known = await knownRepo(pool, github, repo);
  const seeded: { issue: number; branch: string; pr: number; sha: string }[] = [];
  for (let i = 0; i < TASKS; i++) {
    checkInterrupted();
    const issue = github.openIssue(repo, `Task ${i}`, { labels: ["overseer"] });
    const branch = `overseer/${issue.number}-task-${i}`;
    github.git.git(repo.owner, repo.name, "branch", branch, "main");
    const pull = github.openPull(repo, { head: branch });
    seeded.push({ issue: issue.number, branch, pr: pull.number, sha: pull.headSha });
  }
  await pool.query(
    `INSERT INTO tasks (repo_id, issue_number, title, state, attempts, branch, pr_number,
                        pr_url, pr_head_sha, config, state_label, started_at)
     SELECT $1, s.issue, 'Task', 'awaiting_merge', 1, s.branch, s.pr, 'https://example/pr',
            s.sha, '{"label":"overseer"}', 'overseer:awaiting-merge', now()
       FROM jsonb_to_recordset($2::jsonb) AS s(issue int, branch text, pr int, sha text)`,
    [known.id, JSON.stringify(seeded)],
  );
  const ctx = watchdogContext(pool, {
    github,
    databaseUrl: database.url,
    log: pino({ level: "silent" }),
  });

  const primingStart = performance.now();
  const priming = await detectAndRepair(ctx, githubDetectors);
  const primingMs = performance.now() - primingStart;
  console.log(
    `priming pass: ${github.calls.length} calls, ${github.rateLimitUsed()} counted, ${primingMs.toFixed(0)} ms, ${priming.findings.length} findings`,
  );
  console.log(`${TASKS} tasks awaiting merge, PRs unchanged; one pass of every GitHub detector:`);
  console.log("pass   calls    304   other   rate-limit cost   findings   wall (ms)");
  for (let pass = 1; pass <= 2 * MEASURED_PASSES; pass++) {
    if (pass === MEASURED_PASSES + 1) {
      console.log("the stand-in's git rev-parse answers remembered from here on:");
      rememberRevParse(github.git);
    }
    checkInterrupted();
    const callsBefore = github.calls.length;
    const usedBefore = github.rateLimitUsed();
    const start = performance.now();
    const result = await detectAndRepair(ctx, githubDetectors);
    const wallMs = performance.now() - start;
    const calls = github.calls.slice(callsBefore);
    const notModified = calls.filter((call) => call.status === 304).length;
    const cost = github.rateLimitUsed() - usedBefore;
    console.log(
      `${String(pass).padStart(4)}${String(calls.length).padStart(8)}${String(notModified).padStart(7)}${String(calls.length - notModified).padStart(8)}${String(cost).padStart(18)}${String(result.findings.length).padStart(11)}${wallMs.toFixed(0).padStart(12)}`,
    );
    if (cost !== 0 || notModified !== calls.length || result.findings.length > 0) failed = true;
  }
  if (github.unknownCalls.length > 0) {
    console.error(`undocumented routes requested: ${github.unknownCalls.join(", ")}`);
    failed = true;
  }
} finally {
  await github.stop();
  await pool.end();
  await database.close();
}
/** Memoises the stand-in's `rev-parse` calls: branches do not move during the passes. */
function rememberRevParse(git: { git(owner: string, name: string, ...args: string[]): string }) {
  const run = git.git.bind(git);
  const answers = new Map<string, string>();
  git.git = (owner, name, ...args) => {
    if (args[0] !== "rev-parse") return run(owner, name, ...args);
    const key = [owner, name, ...args].join(" ");
    let answer = answers.get(key);
    if (answer === undefined) {
      answer = run(owner, name, ...args);
      answers.set(key, answer);
    }
    return answer;
  };
}

if (failed) {
  console.error("FAILED: a pass with nothing changed must answer 304 to every call and cost 0");
  process.exit(1);
}
