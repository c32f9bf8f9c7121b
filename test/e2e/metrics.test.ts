import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import nock from "nock";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../../src/db/pool.js";
import { UNAVAILABLE_WATCHDOG } from "../../src/web/findings.js";
import { OverseerMetrics } from "../../src/web/metrics.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, startGitServer } from "../support/git-http.js";
import {
  API,
  examplePayload,
  INSTALLATION_ID,
  startTestApp,
  type TestApp,
  useGithubHost,
} from "../support/github-app.js";

/**
 * /metrics in Prometheus's text format, parsed with a Prometheus text-format parser, before
 * and after a whole lifecycle (label → worker → PR → merge → done): the counters move by
 * what happened, the database gauges say where things stand.
 */

const OWNER = "Codertocat";
const REPO = "Hello-World";
const REPO_PATH = `/repos/${OWNER}/${REPO}`;
const ISSUE = 23;
const PR = 88;
const MERGE_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const WORKER = [
  "echo quicker >> widget.txt",
  "git add -A",
  "git -c user.name=agent -c user.email=agent@example.com commit -qm 'Quicker'",
].join(" && ");

let db: TestDatabase;
let app: TestApp;
let server: GitServer;
let origin: { cloneUrl: string; gitDir: string };
let home: string;

type Sample = {
  value?: string;
  labels?: Record<string, string>;
  count?: string;
  buckets?: Record<string, string>;
};
type Family = { name: string; type: string; help: string; metrics: Sample[] };

async function scrape(): Promise<Map<string, Family>> {
  const response = await fetch(`${app.url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  const families = parsePrometheusTextFormat(await response.text()) as Family[];
  return new Map(families.map((family) => [family.name, family]));
}

function value(
  metrics: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const family = metrics.get(name);
  const sample = family?.metrics.find((m) =>
    Object.entries(labels).every(([key, wanted]) => m.labels?.[key] === wanted),
  );
  if (!sample) return 0;
  return Number(sample.value ?? sample.count ?? 0);
}

/**
 * Observations in a histogram: its +Inf bucket, over every series (the parser keeps no
 * labels on histogram samples; this test has one profile).
 */
function observations(metrics: Map<string, Family>, name: string): number {
  const family = metrics.get(name);
  expect(family?.type).toBe("HISTOGRAM");
  return (family?.metrics ?? []).reduce((sum, m) => sum + Number(m.buckets?.["+Inf"] ?? 0), 0);
}

function total(metrics: Map<string, Family>, name: string): number {
  return (metrics.get(name)?.metrics ?? []).reduce((sum, m) => sum + Number(m.value ?? 0), 0);
}

let remaining = 5_000;
/** Every mocked GitHub answer reports the rate limit, one request less each time. */
const rateLimited = () => ({
  "x-ratelimit-limit": "5000",
  "x-ratelimit-remaining": () => {
    remaining -= 1;
    return String(remaining);
  },
  "x-ratelimit-resource": "core",
});

/**
 * Status-comment edits and state-label swaps: how many depends on how the outbox coalesced
 * the task's moves (this test counts them as they come rather than predicting them).
 */
function stateWrites() {
  nock(API)
    .patch(`${REPO_PATH}/issues/comments/6001`)
    .optionally()
    .times(10)
    .reply(200, {}, rateLimited())
    .post(`${REPO_PATH}/issues/${ISSUE}/labels`)
    .optionally()
    .times(10)
    .reply(200, [], rateLimited())
    .delete(new RegExp(`^(/api/v3)?${REPO_PATH}/issues/${ISSUE}/labels/overseer%3A`))
    .optionally()
    .times(10)
    .reply(200, [], rateLimited());
}

async function waitForState(state: string) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const row = (await db.pool.query("SELECT * FROM tasks WHERE issue_number = $1", [ISSUE]))
      .rows[0];
    if (row?.state === state) return row;
    if (Date.now() > deadline) throw new Error(`task is ${row?.state}, not ${state}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startGitServer({ tokens: ["ghs_metrics", "ghs_testinstallationtoken"] });
  // Git goes only to the configured GitHub host: the stand-in, API mocks included.
  origin = await server.createRepo(OWNER, REPO);
  useGithubHost(server);
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-metrics-"));
  const workers = path.join(home, "workers.yml");
  await writeFile(
    workers,
    `default: script\nprofiles:\n  script:\n    command: [sh, -c, ${JSON.stringify(WORKER)}]\n    timeout: 1m\n    grace: 1s\n`,
  );
  app = await startTestApp(
    db.url,
    { OVERSEER_HOME: home, OVERSEER_WORKERS: workers, OVERSEER_HEARTBEAT_INTERVAL: "500ms" },
    "all",
  );
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await db?.drop();
  await server?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

describe("/metrics", () => {
  it("counters move across a driven lifecycle; gauges say where things stand", async () => {
    const before = await scrape();
    for (const name of [
      "overseer_webhook_deliveries_total",
      "overseer_tasks",
      "overseer_runs_total",
      "overseer_run_duration_seconds",
      "overseer_label_to_start_seconds",
      "overseer_claim_duration_seconds",
      "overseer_outbox_pending",
      "overseer_outbox_oldest_pending_age_seconds",
      "overseer_deliveries_pending",
      "overseer_deliveries_oldest_pending_age_seconds",
      "overseer_deliveries_dead",
      "overseer_watchdog_findings_total",
      "overseer_github_requests_total",
      "overseer_github_rate_limit_remaining",
      "process_cpu_user_seconds_total",
      "nodejs_heap_size_used_bytes",
    ]) {
      expect(before.has(name), name).toBe(true);
    }
    expect(before.get("overseer_run_duration_seconds")?.type).toBe("HISTOGRAM");
    expect(value(before, "overseer_database_up")).toBe(1);
    expect(value(before, "overseer_tasks", { state: "done" })).toBe(0);

    nock(API)
      .post(`/app/installations/${INSTALLATION_ID}/access_tokens`)
      .reply(
        201,
        { token: "ghs_metrics", expires_at: new Date(Date.now() + 3_600_000).toISOString() },
        rateLimited(),
      )
      .get(/\/contents\/\.github(%2F|\/)overseer\.yml/)
      .times(2)
      .reply(404, { message: "Not Found" }, rateLimited())
      .get(`${REPO_PATH}/issues/${ISSUE}`)
      .reply(200, { number: ISSUE, title: "Quicker widget", body: "", comments: 0 }, rateLimited())
      .post(`${REPO_PATH}/pulls`)
      .reply(
        201,
        {
          number: PR,
          html_url: `https://github.com/${OWNER}/${REPO}/pull/${PR}`,
          head: { sha: "x" },
        },
        rateLimited(),
      )
      .post(`${REPO_PATH}/issues/${ISSUE}/comments`)
      .reply(201, { id: 6001 }, rateLimited())
      // The `overseer` check run on the PR's commit.
      .post(`${REPO_PATH}/check-runs`, (body) => body.name === "overseer")
      .reply(201, { id: 6101 }, rateLimited());
    stateWrites();

    const labeled = examplePayload("issues", "labeled");
    labeled.issue.number = ISSUE;
    labeled.issue.title = "Quicker widget";
    labeled.label = { ...labeled.label, name: "overseer" };
    labeled.issue.labels = [labeled.label];
    labeled.repository.clone_url = origin.cloneUrl;
    labeled.repository.default_branch = "main";
    const first = await app.send("issues", labeled);
    expect(first.status).toBe(202);
    // GitHub redelivers with the same id: counted as a duplicate, nothing happens.
    expect((await app.send("issues", labeled, { id: first.id })).status).toBe(200);
    // Signed but not the shape of an issues event: rejected.
    const malformed = await app.send("issues", {
      action: "labeled",
      installation: { id: INSTALLATION_ID },
    });
    expect(malformed.status).toBeGreaterThanOrEqual(400);

    const awaiting = await waitForState("awaiting_merge");
    await app.settleOutbox();
    nock(API)
      .get(`${REPO_PATH}/pulls/${PR}`)
      .reply(
        200,
        {
          number: PR,
          html_url: `https://github.com/${OWNER}/${REPO}/pull/${PR}`,
          state: "closed",
          merged: true,
          merge_commit_sha: MERGE_SHA,
          merged_at: new Date().toISOString(),
          merged_by: { login: "octocat" },
          head: {
            ref: awaiting.branch,
            sha: awaiting.pr_head_sha,
            repo: { id: labeled.repository.id },
          },
        },
        rateLimited(),
      )
      .post(`${REPO_PATH}/issues/${ISSUE}/comments`)
      .reply(201, { id: 6002 }, rateLimited());
    stateWrites();
    const closed = examplePayload("pull_request", "closed");
    closed.pull_request.number = PR;
    closed.pull_request.merged = true;
    closed.pull_request.head.ref = awaiting.branch;
    closed.repository.clone_url = origin.cloneUrl;
    expect((await app.send("pull_request", closed)).status).toBe(202);
    await waitForState("done");
    await app.settleOutbox();

    const after = await scrape();
    const moved = (name: string, labels: Record<string, string> = {}) =>
      value(after, name, labels) - value(before, name, labels);
    expect(moved("overseer_webhook_deliveries_total", { outcome: "processed" })).toBe(2);
    expect(moved("overseer_webhook_deliveries_total", { outcome: "duplicate" })).toBe(1);
    expect(moved("overseer_webhook_deliveries_total", { outcome: "rejected" })).toBe(1);
    expect(moved("overseer_runs_total", { outcome: "succeeded", profile: "script" })).toBe(1);
    const observed = (name: string) => observations(after, name) - observations(before, name);
    expect(observed("overseer_run_duration_seconds")).toBe(1);
    expect(observed("overseer_label_to_start_seconds")).toBe(1);
    expect(observed("overseer_claim_duration_seconds")).toBe(1);
    // Every GitHub call was counted by its status; the last one said how many are left.
    const calls = 5_000 - remaining;
    expect(
      total(after, "overseer_github_requests_total") -
        total(before, "overseer_github_requests_total"),
    ).toBe(calls);
    expect(moved("overseer_github_requests_total", { status: "404" })).toBe(2);
    // The token, the PR, the check run, the status comment and the completion comment were created.
    expect(moved("overseer_github_requests_total", { status: "201" })).toBe(5);
    expect(value(after, "overseer_github_rate_limit_remaining", { resource: "core" })).toBe(
      remaining,
    );
    expect(value(after, "overseer_github_rate_limit_limit", { resource: "core" })).toBe(5_000);
    expect(value(after, "overseer_tasks", { state: "done" })).toBe(1);
    expect(value(after, "overseer_tasks", { state: "queued" })).toBe(0);
    expect(value(after, "overseer_outbox_pending")).toBe(0);
    expect(value(after, "overseer_outbox_oldest_pending_age_seconds")).toBe(0);
    // Every delivery was processed: none waits, none was given up on.
    expect(value(after, "overseer_deliveries_pending")).toBe(0);
    expect(value(after, "overseer_deliveries_dead")).toBe(0);
    expect(value(after, "overseer_runners", { status: "alive" })).toBe(1);
    expect(value(after, "overseer_runs_active")).toBe(0);
  }, 90_000);

  it("a scrape while the database is unreachable still answers: database_up 0, no stale task figures", async () => {
    const unreachable = createPool("postgres://overseer:x@127.0.0.1:1/overseer");
    try {
      const metrics = new OverseerMetrics({
        pool: unreachable,
        findings: UNAVAILABLE_WATCHDOG,
        runnerStaleAfterMs: 60_000,
        log: pino({ level: "silent" }),
      });
      const families = new Map(
        (parsePrometheusTextFormat(await metrics.text()) as Family[]).map((f) => [f.name, f]),
      );
      expect(value(families, "overseer_database_up")).toBe(0);
      expect(families.get("overseer_tasks")?.metrics ?? []).toEqual([]);
      expect(families.has("process_cpu_user_seconds_total")).toBe(true);
    } finally {
      await unreachable.end();
    }
  });

  it("a scrape right after a change shows it, and one scrape reads the database once", async () => {
    let queries = 0;
    const counting = new Proxy(db.pool, {
      get(target, key, receiver) {
        if (key !== "query") return Reflect.get(target, key, receiver);
        return (...args: Parameters<typeof db.pool.query>) => {
          queries += 1;
          return (target.query as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const metrics = new OverseerMetrics({
      pool: counting,
      findings: UNAVAILABLE_WATCHDOG,
      runnerStaleAfterMs: 60_000,
      log: pino({ level: "silent" }),
    });
    const read = async () =>
      new Map(
        (parsePrometheusTextFormat(await metrics.text()) as Family[]).map((f) => [f.name, f]),
      );
    const pendingBefore = value(await read(), "overseer_outbox_pending");
    // The five views (tasks, queue, outbox, deliveries, runners) behind twelve gauges, read once.
    expect(queries).toBe(5);
    // Due in an hour, so the app's dispatcher leaves it alone.
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO outbox (installation_id, repo_full_name, kind, payload, next_attempt_at)
       VALUES ($1, $2, 'reply', '{}', now() + interval '1 hour') RETURNING id`,
      [INSTALLATION_ID, `${OWNER}/${REPO}`],
    );
    try {
      expect(value(await read(), "overseer_outbox_pending")).toBe(pendingBefore + 1);
      expect(queries).toBe(10);
    } finally {
      await db.pool.query("DELETE FROM outbox WHERE id = $1", [rows[0]?.id]);
    }
  });

  it("watchdog findings by kind, as the findings source counts them", async () => {
    let counts: Record<string, number> = { expired_lease: 2 };
    const metrics = new OverseerMetrics({
      pool: db.pool,
      findings: { ...UNAVAILABLE_WATCHDOG, countsByKind: () => counts },
      runnerStaleAfterMs: 60_000,
      log: pino({ level: "silent" }),
    });
    const read = async () =>
      new Map(
        (parsePrometheusTextFormat(await metrics.text()) as Family[]).map((f) => [f.name, f]),
      );
    const first = await read();
    expect(first.get("overseer_watchdog_findings_total")?.type).toBe("COUNTER");
    expect(value(first, "overseer_watchdog_findings_total", { kind: "expired_lease" })).toBe(2);
    counts = { expired_lease: 3, stale_runner: 1 };
    const second = await read();
    expect(value(second, "overseer_watchdog_findings_total", { kind: "expired_lease" })).toBe(3);
    expect(value(second, "overseer_watchdog_findings_total", { kind: "stale_runner" })).toBe(1);
  });
});
