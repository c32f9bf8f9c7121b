import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import nock from "nock";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseWorkerProfiles } from "../../src/config/workers.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { branchName } from "../../src/domain/branch.js";
import type { RunnerGithub } from "../../src/runner/github.js";
import { Runner } from "../../src/runner/runner.js";
import { LATEST_MIGRATION } from "../support/constants.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, startGitServer } from "../support/git-http.js";
import {
  API,
  INSTALLATION_ID,
  mockInstallationToken,
  startTestApp,
} from "../support/github-app.js";
import { REPO_ROOT, runOverseer } from "../support/process.js";

/**
 * The operator CLI as its own process (`overseer …`), against a database that a runner in
 * this test process fills with real runs of real workers. Every command's table and --json
 * output; `logs -f` following a live run to its end; retry, stop and cancel through the
 * write path as operator:<user>.
 */

const OWNER = "octo";
const NAME = "widgets";
const FULL_NAME = `${OWNER}/${NAME}`;
const FIXTURES = path.resolve(import.meta.dirname, "../fixtures/transcripts");
const OPERATOR = os.userInfo().username;
/** The slow worker ends only once this file exists. */
let RELEASE: string;
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

let db: TestDatabase;
let server: GitServer;
let origin: { cloneUrl: string; gitDir: string };
let home: string;
let repo: RepoRow;
let runner: Runner | undefined;
const children: ChildProcess[] = [];

class FakeGithub implements RunnerGithub {
  async pullRequestFeedback(): Promise<never> {
    throw new Error("this test runs no revision");
  }
  async pullRequest(): Promise<never> {
    throw new Error("this test runs no revision");
  }
  async issueForPrompt(_repo: string, issueNumber: number) {
    return { title: `Issue ${issueNumber}`, body: "Make it so.", comments: [] };
  }
  async findOrOpenPullRequest() {
    return {
      number: 301,
      url: `https://github.com/${FULL_NAME}/pull/301`,
      headSha: "0".repeat(40),
      created: true,
    };
  }
  async installationToken() {
    return "ghs_clitesttoken";
  }
}

const COMMIT = [
  "echo change >> file-{issue}.txt",
  "git add -A",
  "git -c user.name=agent -c user.email=agent@example.com commit -qm 'Do the work'",
].join(" && ");

function profiles(): string {
  const profile = (command: string, format = "text", extra = "") =>
    `    command: ${JSON.stringify(["sh", "-c", command])}\n    log_format: ${format}\n    timeout: 1m\n    grace: 1s\n    sandbox:\n      readable: ${JSON.stringify([FIXTURES, path.dirname(RELEASE)])}\n${extra}`;
  return [
    "default: claude-fails",
    "profiles:",
    "  claude-fails:",
    profile(`cat ${FIXTURES}/claude-stream-failure.jsonl; exit 1`, "claude-stream-json"),
    "  codex-commits:",
    profile(`cat ${FIXTURES}/codex-exec.jsonl && ${COMMIT}`, "codex-json"),
    // Writes the successful Claude session a line at a time, so a follower sees it grow,
    // then keeps running until the test releases it.
    "  claude-slow:",
    profile(
      `while IFS= read -r line; do printf '%s\\n' "$line"; sleep 0.2; done < ${FIXTURES}/claude-stream-success.jsonl; while [ ! -e ${RELEASE} ]; do sleep 0.1; done; exit 3`,
      "claude-stream-json",
    ),
    "  sleeper:",
    profile("echo started; exec sleep 1000"),
  ].join("\n");
}

function env(): Record<string, string> {
  return { DATABASE_URL: db.url, OVERSEER_HOME: home, LOG_LEVEL: "warn" };
}

function cli(...args: string[]) {
  return runOverseer(args, env());
}

let nextIssue = 40;
async function seed(profile: string): Promise<number> {
  const issue = nextIssue++;
  const task = await insertTaskIfAbsent(db.pool, {
    repoId: repo.id,
    issueNumber: issue,
    title: `Issue ${issue}: make the ${profile} work`,
    state: "queued",
    priority: 2,
    maxAttempts: 3,
    riskLabelled: false,
    workerProfile: profile,
    baseBranch: null,
    branch: branchName(issue, `Issue ${issue}`),
    config: { concurrency: 4 },
    labels: ["overseer"],
  });
  if (!task) throw new Error("task exists");
  runner?.wake();
  return task.id;
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false>,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function taskRow(id: number) {
  return (await db.pool.query("SELECT * FROM tasks WHERE id = $1", [id])).rows[0];
}

function waitForState(id: number, states: string[]) {
  return waitFor(`task ${id} in ${states.join("/")}`, async () => {
    const row = await taskRow(id);
    return states.includes(row?.state) ? row : null;
  });
}

let failed: number;
let awaiting: number;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startGitServer({ tokens: ["ghs_clitesttoken"] });
  origin = await server.createRepo(OWNER, NAME);
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-cli-"));
  // Outside OVERSEER_HOME, which no sandboxed worker sees; the profiles make it readable.
  RELEASE = path.join(await mkdtemp(path.join(os.tmpdir(), "overseer-cli-gate-")), "release");
  repo = await upsertRepo(db.pool, {
    githubId: 8001,
    fullName: FULL_NAME,
    installationId: INSTALLATION_ID,
    cloneUrl: origin.cloneUrl,
    defaultBranch: "main",
  });
  runner = new Runner({
    pool: db.pool,
    databaseUrl: db.url,
    env: {
      home,
      githubUrl: server.url,
      heartbeatIntervalMs: 200,
      leaseMs: 5_000,
      maxRunMs: 60_000,
      pollIntervalMs: 500,
      runnerCapacity: 4,
      requeueBackoffMs: 200,
    },
    log,
    workers: parseWorkerProfiles(profiles(), "cli-test"),
    github: async () => new FakeGithub(),
    runnerId: "cli-test-runner",
  });
  await runner.start();
  failed = await seed("claude-fails");
  awaiting = await seed("codex-commits");
  await Promise.all([waitForState(failed, ["failed"]), waitForState(awaiting, ["awaiting_merge"])]);
}, 120_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  await runner?.stop();
  await db?.drop();
  await server?.stop();
  if (home) await rm(home, { recursive: true, force: true });
  if (RELEASE) await rm(path.dirname(RELEASE), { recursive: true, force: true });
});

describe("overseer tasks", () => {
  it("a table for people, --json with the contract's fields for scripts, no colour when piped", async () => {
    const table = await cli("tasks");
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+TASK\s+STATE\s+ATTEMPTS\s+PR\s+PROFILE\s+UPDATED\s+TITLE$/);
    expect(table.stdout).toMatch(
      new RegExp(`${failed}\\s+${FULL_NAME}#\\d+\\s+failed\\s+1/3\\s+—\\s+claude-fails`),
    );
    expect(table.stdout).toMatch(
      new RegExp(
        `${awaiting}\\s+${FULL_NAME}#\\d+\\s+awaiting_merge\\s+1/3\\s+#301\\s+codex-commits`,
      ),
    );
    expect(table.stdout).not.toContain("\u001b[");

    const json = await cli("tasks", "--json");
    const tasks = JSON.parse(json.stdout) as Record<string, unknown>[];
    const row = tasks.find((task) => task.id === awaiting);
    expect(row).toEqual({
      id: awaiting,
      repo: FULL_NAME,
      issue: expect.any(Number),
      title: expect.stringContaining("codex-commits"),
      state: "awaiting_merge",
      attempts: 1,
      maxAttempts: 3,
      branch: expect.stringMatching(/^overseer\//),
      pr: 301,
      profile: "codex-commits",
      updatedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
  });

  it("paints states only on a terminal (a pseudo-terminal from script(1)), and never with NO_COLOR", async () => {
    const command = `${process.execPath} --import tsx src/cli/main.ts tasks --state failed`;
    const onTerminal = async (extra: Record<string, string>) => {
      const child = spawn("script", ["-qec", command, "/dev/null"], {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: "xterm", ...env(), ...extra },
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.push(child);
      let out = "";
      child.stdout?.on("data", (chunk) => {
        out += chunk;
      });
      const [code] = await once(child, "exit");
      expect(code).toBe(0);
      return out;
    };
    expect(await onTerminal({})).toContain("\u001b[31mfailed\u001b[0m");
    expect(await onTerminal({ NO_COLOR: "1" })).not.toContain("\u001b[");
  }, 60_000);

  it("filters by --state and --repo (GitHub's names are case-insensitive); a bad state is one line, exit 1", async () => {
    const onlyFailed = JSON.parse((await cli("tasks", "--state", "failed", "--json")).stdout);
    expect(onlyFailed.map((task: { state: string }) => task.state)).toEqual(
      expect.arrayContaining(["failed"]),
    );
    expect(onlyFailed.every((task: { state: string }) => task.state === "failed")).toBe(true);
    expect(
      JSON.parse((await cli("tasks", "--repo", "OCTO/Widgets", "--json")).stdout).length,
    ).toBeGreaterThanOrEqual(2);
    expect(JSON.parse((await cli("tasks", "--repo", "octo/other", "--json")).stdout)).toEqual([]);
    const bad = await cli("tasks", "--state", "finished");
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split("\n")).toEqual([
      expect.stringMatching(
        /^overseer: --state: expected one of queued, .*cancelled, got "finished"$/,
      ),
    ]);
  });
});

describe("overseer show", () => {
  it("the task, its runs with outcome, duration, turns and cost, its events with actor and cause", async () => {
    const shown = await cli("show", String(failed));
    expect(shown.code).toBe(0);
    const out = shown.stdout;
    expect(out).toMatch(new RegExp(`^Task ${failed} · ${FULL_NAME}#\\d+ · failed`));
    expect(out).toContain("attempts 1 of 3 · profile claude-fails");
    expect(out).toContain("evidence: none (no merged pull request on record)");
    // The failure reason shows the agent's last message, not its JSON.
    expect(out).toContain("last error: worker exited with code 1");
    expect(out).toContain("The build fails because `fastFormat` is not exported");
    expect(out).toMatch(
      /RUN\s+ATTEMPT\s+OUTCOME\s+STARTED\s+DURATION\s+HOST\s+PROFILE\s+TURNS\s+COST\s+REASON/,
    );
    expect(out).toMatch(
      /\d+\s+1\s+failed\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+\S+.*claude-fails\s+3\s+\$0\.0519/,
    );
    expect(out).toContain("agent reported");
    expect(out).toMatch(/AT\s+EVENT\s+ACTOR\s+CAUSE\s+CHANGE\s+DETAIL/);
    expect(out).toMatch(/claimed\s+runner:cli-test-runner\s+run:\d+\s+queued → running/);
    expect(out).toMatch(/run_failed\s+runner:cli-test-runner\s+run:\d+\s+running → failed/);
  });

  it("--json: runs {id, attempt, outcome, reason, startedAt, endedAt, host, …}, events {at, type, actor, detail, …}, evidence", async () => {
    const detail = JSON.parse((await cli("show", String(failed), "--json")).stdout);
    expect(detail).toMatchObject({ id: failed, state: "failed", repo: FULL_NAME, evidence: null });
    expect(detail.runs).toEqual([
      expect.objectContaining({
        id: expect.any(Number),
        attempt: 1,
        outcome: "failed",
        reason: expect.stringContaining("I need a maintainer to decide"),
        startedAt: expect.any(String),
        endedAt: expect.any(String),
        host: os.hostname(),
        profile: "claude-fails",
        turns: 3,
        costUsd: 0.0519,
        lastMessage: expect.stringContaining("The build fails because"),
      }),
    ]);
    expect(detail.runs[0].reason).not.toContain('{"type"');
    expect(detail.events.map((event: { type: string }) => event.type)).toEqual([
      "claimed",
      "run_failed",
    ]);
    expect(detail.events[0]).toEqual({
      at: expect.any(String),
      type: "claimed",
      actor: "runner:cli-test-runner",
      cause: expect.stringMatching(/^run:\d+$/),
      from: "queued",
      to: "running",
      detail: {},
    });
  });

  it("finds a task by owner/name#N; an unknown task is one line and exit 1", async () => {
    const row = await taskRow(awaiting);
    const byName = JSON.parse(
      (await cli("show", `${FULL_NAME}#${row.issue_number}`, "--json")).stdout,
    );
    expect(byName.id).toBe(awaiting);
    for (const [name, message] of [
      ["99999", "overseer: no task 99999"],
      ["octo/nothing#1", "overseer: no task for octo/nothing#1"],
      ["not-a-task", expect.stringMatching(/^overseer: "not-a-task" is not a task: give its id/)],
    ] as const) {
      const result = await cli("show", name);
      expect(result.code).toBe(1);
      expect(result.stdout).toBe("");
      expect(result.stderr.trim().split("\n")).toEqual([message]);
    }
  });
});

describe("overseer logs", () => {
  it("renders the latest run's log as a transcript; --raw prints it as written", async () => {
    const transcript = await cli("logs", String(awaiting));
    expect(transcript.code).toBe(0);
    expect(transcript.stdout).toContain("── Codex session 0199a213");
    expect(transcript.stdout).toContain("→ shell $ npm test");
    expect(transcript.stdout).toContain("✗ shell failed: exit 1");
    expect(transcript.stdout).toContain("» I cached the formatter");
    expect(transcript.stdout).not.toContain('"type":"item.completed"');
    const raw = await cli("logs", String(awaiting), "--raw");
    expect(raw.stdout).toContain(
      '{"type":"item.completed","item":{"id":"item_6","type":"agent_message"',
    );
  });

  it("reads the database's copy when the log file is not on this host", async () => {
    const detail = JSON.parse((await cli("show", String(failed), "--json")).stdout);
    const run = (
      await db.pool.query("SELECT log_path FROM runs WHERE id = $1", [detail.runs[0].id])
    ).rows[0];
    await rm(run.log_path);
    const fromDatabase = await cli("logs", String(failed));
    expect(fromDatabase.code).toBe(0);
    expect(fromDatabase.stdout).toContain("» The build fails because");
    expect(fromDatabase.stdout).toContain("■ finished with an error · 3 turns");
  });

  it("-f follows a live run to its end, then exits 0", async () => {
    const id = await seed("claude-slow");
    await waitFor("the slow run to start", async () => {
      const run = await db.pool.query(
        "SELECT 1 FROM runs WHERE task_id = $1 AND state = 'running' AND pid IS NOT NULL",
        [id],
      );
      return run.rowCount === 1;
    });
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", "logs", String(id), "-f"],
      {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env() },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    children.push(child);
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr?.on("data", (chunk) => {
      stderr += chunk;
    });
    const exited = once(child, "exit");
    // The whole session reaches the follower while the worker is still running.
    await waitFor("the transcript's last line", async () => stdout.includes("■ finished"), 60_000);
    expect((await taskRow(id)).state).toBe("running");
    expect(child.exitCode).toBeNull();
    expect(stdout).toContain("» I'll start by looking at how the widget renders.");
    expect(stdout).toContain("→ MultiEdit src/widget.ts (2 edits)");
    expect(stdout.trimEnd().split("\n").at(-1)).toBe(
      "■ finished · 7 turns · 48s · $0.1342 · 95,361 tokens in / 1,734 out",
    );
    // Then the run ends, and so does the follower.
    await writeFile(RELEASE, "");
    const [code] = await exited;
    expect(code).toBe(0);
    expect((await taskRow(id)).state).toBe("failed");
    expect(stderr).toMatch(/following run \d+ on /);
    expect(stderr).toMatch(/run \d+ ended: failed \(worker exited with code 3\)/);
  }, 120_000);
});

describe("overseer stop, retry, cancel", () => {
  it("stop reaches a live worker through the write path, as operator:<user>", async () => {
    const id = await seed("sleeper");
    await waitFor("the sleeper to run", async () => {
      const run = await db.pool.query(
        "SELECT 1 FROM runs WHERE task_id = $1 AND state = 'running' AND pid IS NOT NULL",
        [id],
      );
      return run.rowCount === 1;
    });
    const stopped = await cli("stop", String(id));
    expect(stopped.code).toBe(0);
    expect(stopped.stdout).toBe(
      `task ${id}: /stop by operator:${OPERATOR}: still running (stop sent to its runner: SIGTERM to the worker's group, SIGKILL after its grace)\n`,
    );
    await waitForState(id, ["stopped"]);
    const events = await db.pool.query(
      "SELECT event, actor, cause, detail FROM task_events WHERE task_id = $1 AND event LIKE 'command:%'",
      [id],
    );
    expect(events.rows).toEqual([
      {
        event: "command:stop",
        actor: `operator:${OPERATOR}`,
        cause: "command:/stop",
        detail: { command: "/stop", via: "cli" },
      },
    ]);
    const run = await db.pool.query(
      "SELECT state, stop_requested_by FROM runs WHERE task_id = $1",
      [id],
    );
    expect(run.rows).toEqual([{ state: "stopped", stop_requested_by: `operator:${OPERATOR}` }]);
  }, 60_000);

  it("retry and cancel: JSON for scripts, the same status comment and label entries as the slash-command, a refusal is one line and exit 1", async () => {
    await runner?.stop();
    runner = undefined;
    const before = await db.pool.query("SELECT count(*)::int AS n FROM outbox WHERE task_id = $1", [
      failed,
    ]);
    const retried = await cli("retry", String(failed), "--json");
    expect(retried.code).toBe(0);
    expect(JSON.parse(retried.stdout)).toEqual({
      id: failed,
      command: "retry",
      actor: `operator:${OPERATOR}`,
      from: "failed",
      state: "queued",
      stopRequested: false,
    });
    const entries = await db.pool.query(
      "SELECT kind, coalesce_key FROM outbox WHERE task_id = $1 AND delivered_at IS NULL ORDER BY kind",
      [failed],
    );
    expect(entries.rows).toEqual([
      { kind: "state_label", coalesce_key: `label:${failed}` },
      { kind: "status_comment", coalesce_key: `status:${failed}` },
    ]);
    expect(before.rows[0].n).toBeGreaterThan(0);
    expect((await taskRow(failed)).last_error).toBeNull();

    const again = await cli("retry", String(failed));
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      `overseer: task ${failed}: cannot /retry: task is queued, not failed or stopped\n`,
    );
    const cancelled = await cli("cancel", String(failed));
    expect(cancelled.stdout).toBe(
      `task ${failed}: /cancel by operator:${OPERATOR}: queued → cancelled\n`,
    );
    expect((await taskRow(failed)).state).toBe("cancelled");
  });

  it("the dispatcher delivers the CLI's change to GitHub like any other: sticky comment edited, state label swapped", async () => {
    const id = awaiting;
    await db.pool.query("UPDATE outbox SET delivered_at = now() WHERE delivered_at IS NULL");
    await db.pool.query(
      "UPDATE tasks SET status_comment_id = 9911, state_label = 'overseer:awaiting-merge' WHERE id = $1",
      [id],
    );
    const issue = (await taskRow(id)).issue_number;
    expect((await cli("cancel", String(id))).code).toBe(0);
    const bodies: string[] = [];
    mockInstallationToken();
    const scope = nock(API)
      .patch(`/repos/${FULL_NAME}/issues/comments/9911`, (body) => {
        bodies.push(body.body);
        return true;
      })
      .reply(200, { id: 9911 })
      .post(`/repos/${FULL_NAME}/issues/${issue}/labels`, { labels: ["overseer:cancelled"] })
      .reply(200, [])
      .delete(`/repos/${FULL_NAME}/issues/${issue}/labels/overseer%3Aawaiting-merge`)
      .reply(200, []);
    const app = await startTestApp(db.url, { OVERSEER_HOME: home });
    try {
      await app.settleOutbox();
    } finally {
      await app.stop();
    }
    expect(scope.pendingMocks()).toEqual([]);
    expect(bodies[0]).toContain(`Overseer task ${id}: cancelled`);
  });
});

describe("overseer status", () => {
  it("database, queue, tasks by state, outbox, runners with heartbeat age, watchdog health", async () => {
    const table = await cli("status");
    expect(table.code).toBe(0);
    const out = table.stdout;
    expect(out.startsWith(`database  up\nschema    ${LATEST_MIGRATION}\n`)).toBe(true);
    expect(out).toMatch(
      /queue {5}\d+ queued \(\d+ claimable.*\) · \d+ awaiting approval · \d+ running/,
    );
    expect(out).toMatch(
      /tasks {5}queued \d+ · awaiting_approval \d+ · running \d+ · awaiting_merge \d+ · done \d+ · failed \d+ · stopped \d+ · cancelled \d+/,
    );
    expect(out).toMatch(/outbox {4}\d+ pending.* · \d+ given up/);
    // No process of this test holds the watchdog's lock: the report says when it last ticked.
    expect(out).toMatch(/watchdog {2}(ok|late) · (last tick \S+ on \S+|no tick yet)/);
    expect(out).toMatch(/ID\s+HOST\s+PID\s+CAPACITY\s+ACTIVE\s+HEARTBEAT\s+STATUS/);
    expect(out).toMatch(/cli-test-runner\s+\S+\s+\d+\s+4\s+0\s+.+ ago\s+stopped/);

    const json = JSON.parse((await cli("status", "--json")).stdout);
    expect(json).toMatchObject({
      database: "up",
      schema: LATEST_MIGRATION,
      tasks: { cancelled: 2, stopped: 1 },
      queue: { depth: 0, claimable: 0, running: 0 },
      outbox: { pending: expect.any(Number), dead: 0 },
      watchdog: { available: true, status: expect.stringMatching(/^(ok|late)$/) },
    });
    expect(json.runners).toEqual([
      expect.objectContaining({
        id: "cli-test-runner",
        status: "stopped",
        activeRuns: 0,
        heartbeatAgeSeconds: expect.any(Number),
      }),
    ]);
  });
});
