import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseWorkerProfiles } from "../../src/config/workers.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import type { RunnerGithub } from "../../src/runner/github.js";
import { isProcessGroupAlive } from "../../src/runner/process-group.js";
import { Runner } from "../../src/runner/runner.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, startGitServer } from "../support/git-http.js";
import { INSTALLATION_ID, startTestApp, type TestApp } from "../support/github-app.js";
import { REPO_ROOT } from "../support/process.js";

/**
 * The dashboard in a real browser (Debian's chromium, driven by playwright-core), with a
 * real worker writing a Claude Code transcript on a runner that shares only PostgreSQL
 * with the dashboard's process. Screenshots go to artifacts/screenshots (gitignored).
 */

const CHROMIUM = "/usr/bin/chromium";
const SCREENSHOTS = path.join(REPO_ROOT, "artifacts", "screenshots");
const TITLE = "Make the widget render 1000 items in under 5 ms";
const FIXTURES = path.join(REPO_ROOT, "test", "fixtures", "transcripts");
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

// One assistant message every 250 ms until stopped: a transcript that visibly grows.
const CHATTY = [
  `printf '%s\\n' '{"type":"system","subtype":"init","model":"claude-sonnet-4-5","cwd":"/w","tools":["Bash","Edit"]}'`,
  "i=1",
  `while true; do printf '{"type":"assistant","message":{"content":[{"type":"text","text":"Step %s: profiling render()"},{"type":"tool_use","id":"t%s","name":"Bash","input":{"command":"npm test -- widget --run %s"}}]}}\\n' $i $i $i; i=$((i+1)); sleep 0.25; done`,
].join("; ");

let db: TestDatabase;
let app: TestApp;
let server: GitServer;
let origin: { cloneUrl: string; gitDir: string };
let home: string;
let repo: RepoRow;
let runner: Runner;
let browser: Browser;
let proxy: net.Server | undefined;

class FakeGithub implements RunnerGithub {
  async pullRequestFeedback(): Promise<never> {
    throw new Error("this test runs no revision");
  }
  async pullRequest(): Promise<never> {
    throw new Error("this test runs no revision");
  }
  async issueForPrompt(_repo: string, issueNumber: number) {
    return { title: TITLE, body: `Issue ${issueNumber}`, comments: [] };
  }
  async findOrOpenPullRequest(): Promise<never> {
    throw new Error("this worker never finishes");
  }
  async installationToken() {
    return "ghs_browsertest";
  }
}

/**
 * A stand-in for a client elsewhere: a TCP relay on 127.0.0.1 whose upstream connections
 * leave from 127.0.0.2, so the dashboard sees a peer that is not this host's loopback.
 */
async function startRelay(targetPort: number): Promise<number> {
  const server = net.createServer((client) => {
    const upstream = net.connect({
      host: "127.0.0.1",
      port: targetPort,
      localAddress: "127.0.0.2",
    });
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end);
    upstream.on("error", end);
  });
  proxy = server;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as net.AddressInfo).port;
}

async function shoot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false>,
  ms = 30_000,
) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no browser at ${CHROMIUM}: apt-get install -y chromium (.ci/run does)`);
  }
  await mkdir(SCREENSHOTS, { recursive: true });
  db = await createTestDatabase();
  server = await startGitServer({ tokens: ["ghs_browsertest"] });
  origin = await server.createRepo("octo", "widgets");
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-browser-"));
  repo = await upsertRepo(db.pool, {
    githubId: 9301,
    fullName: "octo/widgets",
    installationId: INSTALLATION_ID,
    cloneUrl: origin.cloneUrl,
    defaultBranch: "main",
  });
  // The dashboard's process: webhooks and HTTP only. The outbox stays quiet (GitHub is not
  // under test here).
  app = await startTestApp(db.url, { OVERSEER_HOME: home, OVERSEER_OUTBOX_SETTLE: "1h" });
  runner = new Runner({
    pool: db.pool,
    databaseUrl: db.url,
    env: {
      home,
      githubUrl: server.url,
      heartbeatIntervalMs: 200,
      leaseMs: 5_000,
      maxRunMs: 120_000,
      pollIntervalMs: 300,
      runnerCapacity: 2,
      requeueBackoffMs: 200,
    },
    log,
    workers: parseWorkerProfiles(
      [
        "default: claude",
        "profiles:",
        "  claude:",
        `    command: ${JSON.stringify(["sh", "-c", CHATTY])}`,
        "    log_format: claude-stream-json",
        "    grace: 1s",
        // A recorded session replayed, then a failing exit: a finished transcript to read.
        "  replay:",
        `    command: ${JSON.stringify(["sh", "-c", `cat ${FIXTURES}/claude-stream-success.jsonl; exit 1`])}`,
        "    log_format: claude-stream-json",
        // The sandbox shows the recording only when it is named.
        `    sandbox: {readable: [${JSON.stringify(FIXTURES)}]}`,
      ].join("\n"),
      "browser-test",
    ),
    github: async () => new FakeGithub(),
    runnerId: "runner-on-another-host",
  });
  await runner.start();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await runner?.stop();
  await app?.stop();
  await new Promise((resolve) => (proxy ? proxy.close(resolve) : resolve(undefined)));
  await db?.drop();
  await server?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

describe("the dashboard in a browser", () => {
  it("lists the task; its page shows runs and events; the log tail grows live; Stop stops the worker", async () => {
    const task = await insertTaskIfAbsent(db.pool, {
      repoId: repo.id,
      issueNumber: 17,
      title: TITLE,
      state: "queued",
      priority: 2,
      maxAttempts: 3,
      riskLabelled: false,
      workerProfile: "claude",
      baseBranch: null,
      branch: "overseer/17-make-the-widget-render",
      config: { concurrency: 2 },
      labels: ["overseer"],
    });
    if (!task) throw new Error("task exists");
    runner.wake();
    const run = await waitFor("the worker to run and write", async () => {
      const row = (
        await db.pool.query(
          `SELECT runs.id, runs.pgid FROM runs JOIN run_log_chunks c ON c.run_id = runs.id
            WHERE runs.task_id = $1 AND runs.state = 'running' AND runs.pgid IS NOT NULL LIMIT 1`,
          [task.id],
        )
      ).rows[0];
      return row as { id: number; pgid: number } | undefined;
    });

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(app.url);
    const row = page.locator("tbody tr", { hasText: TITLE });
    await expect.poll(() => row.count()).toBe(1);
    expect(await row.locator(".state").innerText()).toBe("running");
    await shoot(page, "1-task-list");

    await row.locator("a").first().click();
    await page.waitForURL(`${app.url}/tasks/${task.id}`);
    const runs = page.locator("h2:text('Runs') + table tbody tr");
    expect(await runs.count()).toBe(1);
    expect(await runs.first().innerText()).toContain("running");
    const events = await page.locator("h2:text('Events') + table").innerText();
    expect(events).toContain("claimed");
    expect(events).toContain("runner:runner-on-another-host");

    const entries = page.locator("#log .entry");
    const atFirst = await entries.count();
    // No reload: new entries arrive over server-sent events while the worker writes.
    await expect.poll(() => entries.count(), { timeout: 20_000 }).toBeGreaterThan(atFirst + 6);
    expect(await page.locator("[data-log-status]").innerText()).toMatch(/^live: \d+ entries$/);
    expect(await page.locator("#log").innerText()).toMatch(/»\s+Step \d+: profiling render\(\)/);
    expect(await page.locator("#log .entry-tool").first().innerText()).toMatch(
      /→\s+Bash \$ npm test -- widget --run \d+/,
    );
    await shoot(page, "2-task-live-log");

    await page.getByRole("button", { name: "Stop" }).click();
    await page.waitForURL(`${app.url}/tasks/${task.id}?done=stop`);
    expect(await page.locator(".banner.notice").innerText()).toBe("Stop accepted.");
    await waitFor("the run to be stopped", async () => {
      const state = (await db.pool.query("SELECT state FROM runs WHERE id = $1", [run.id])).rows[0]
        ?.state;
      return state === "stopped";
    });
    expect(isProcessGroupAlive(run.pgid)).toBe(false);
    // The stream ends with the run and the page reloads itself showing the outcome.
    await expect
      .poll(() => page.locator("h1 .state").innerText(), { timeout: 20_000 })
      .toBe("stopped");
    expect(await page.locator("h2:text('Events') + table").innerText()).toContain(
      "operator:dashboard",
    );
    await shoot(page, "3-task-stopped");

    await page.goto(`${app.url}/runners`);
    expect(await page.locator("tbody").first().innerText()).toContain("runner-on-another-host");
    await shoot(page, "4-runners");
    await page.goto(`${app.url}/charts`);
    expect(await page.locator("svg.chart").count()).toBe(4);
    await shoot(page, "5-charts");
    await page.close();
  }, 120_000);

  it("a finished run reads as a conversation: messages, tool calls, the tool error, the result with turns and cost", async () => {
    const task = await insertTaskIfAbsent(db.pool, {
      repoId: repo.id,
      issueNumber: 18,
      title: "Cache the formatter",
      state: "queued",
      priority: 2,
      maxAttempts: 3,
      riskLabelled: false,
      workerProfile: "replay",
      baseBranch: null,
      branch: "overseer/18-cache-the-formatter",
      config: { concurrency: 2 },
      labels: ["overseer"],
    });
    if (!task) throw new Error("task exists");
    runner.wake();
    await waitFor("the replay to fail", async () => {
      const row = (await db.pool.query("SELECT state FROM tasks WHERE id = $1", [task.id])).rows[0];
      return row?.state === "failed";
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${app.url}/tasks/${task.id}`);
    const run = await page.locator("h2:text('Runs') + table tbody tr").first().innerText();
    expect(run).toMatch(/failed/);
    expect(run).toContain("7");
    expect(run).toContain("$0.1342");
    const transcript = await page.locator("#log").innerText();
    expect(transcript).toContain(
      "Edit failed: <tool_use_error>String to replace not found in file.",
    );
    expect(transcript).toMatch(/finished · 7 turns · 48s · \$0\.1342/);
    expect(await page.locator("pre.error").innerText()).toContain(
      "The widget now formats with `fastFormat`",
    );
    await shoot(page, "7-finished-transcript");
    await page.goto(`${app.url}/findings`);
    const findings = await page.locator("main").innerText();
    expect(findings).toContain("Watchdog findings");
    expect(findings).not.toContain("watchdog not available");
    await shoot(page, "8-findings");
    await page.close();
  }, 60_000);

  it("refuses a browser that is not on this host's loopback, with a line saying how to enable access", async () => {
    const port = await startRelay(app.overseer.port);
    const page = await browser.newPage();
    const response = await page.goto(`http://127.0.0.1:${port}/`);
    expect(response?.status()).toBe(403);
    const text = await page.locator("body").innerText();
    expect(text).toContain("came from 127.0.0.2");
    expect(text).toContain("Set OVERSEER_ADMIN_TOKEN");
    await shoot(page, "6-refused-from-elsewhere");
    await page.close();
  });
});
