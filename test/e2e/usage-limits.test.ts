import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { formatClock } from "../../src/github/status-comment.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, startGitServer } from "../support/git-http.js";
import {
  examplePayload,
  startTestApp,
  type TestApp,
  useGithubHost,
} from "../support/github-app.js";
import { GithubFake } from "../support/github-fake.js";
import { runOverseer } from "../support/process.js";

/**
 * An agent that stops at its usage limit (or cannot log in) costs no attempt: its profile
 * is paused until the reset it reported (or a backoff), every task of the profile waits,
 * the status comment says until when, and `overseer status` shows the pause.
 */

const OWNER = "Codertocat";
const REPO = "Hello-World";

let db: TestDatabase;
let app: TestApp;
let origin: GitServer;
let cloneUrl: string;
let home: string;
let controlDir: string;
let github: GithubFake;
let modeFile: string;
let resetAt: Date;

beforeAll(async () => {
  db = await createTestDatabase();
  origin = await startGitServer({ tokens: ["ghs_fake"] });
  ({ cloneUrl } = await origin.createRepo(OWNER, REPO));
  // Overseer's git goes only to the configured GitHub host: the stand-in is it.
  useGithubHost(origin);
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-limits-"));
  // Outside OVERSEER_HOME, which a sandboxed worker never sees; named in its profile.
  controlDir = await mkdtemp(path.join(os.tmpdir(), "overseer-limits-control-"));
  modeFile = path.join(controlDir, "mode");
  // Claude Code's own words, with the reset an hour from now (as a Unix time, as it prints it).
  resetAt = new Date(Math.floor(Date.now() / 1000 + 3_600) * 1000);
  const script = [
    `mode=$(cat ${modeFile})`,
    `if [ "$mode" = limit ]; then echo "Claude AI usage limit reached|${resetAt.getTime() / 1000}"; exit 1; fi`,
    `if [ "$mode" = auth ]; then echo "Invalid API key · Please run /login" >&2; exit 1; fi`,
    "echo done >> widget.txt && git add -A && git -c user.name=a -c user.email=a@example.com commit -qm work",
  ].join("\n");
  const workers = path.join(home, "workers.yml");
  await writeFile(
    workers,
    [
      "default: claude",
      "profiles:",
      "  claude:",
      `    command: [sh, -c, ${JSON.stringify(script)}]`,
      "    timeout: 1m",
      "    grace: 1s",
      // A wrapper script: the built-in Claude Code rules are named, not guessed from `sh`.
      "    usage_limits: { builtin: claude }",
      `    sandbox: { readable: [${controlDir}] }`,
    ].join("\n"),
  );
  github = new GithubFake(OWNER, REPO);
  github.install();
  app = await startTestApp(
    db.url,
    {
      OVERSEER_HOME: home,
      OVERSEER_WORKERS: workers,
      OVERSEER_OUTBOX_SETTLE: "0",
      OVERSEER_HEARTBEAT_INTERVAL: "500ms",
      OVERSEER_USAGE_LIMIT_BACKOFF: "10m",
    },
    "all",
  );
});

afterAll(async () => {
  await app?.stop();
  await db?.drop();
  await origin?.stop();
  if (home) await rm(home, { recursive: true, force: true });
  if (controlDir) await rm(controlDir, { recursive: true, force: true });
});

beforeEach(() => github.install());

async function taskRow(issue: number) {
  return (await db.pool.query("SELECT * FROM tasks WHERE issue_number = $1", [issue])).rows[0];
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function label(issue: number) {
  const payload = examplePayload("issues", "labeled");
  payload.issue.number = issue;
  payload.issue.title = `Widget ${issue}`;
  payload.label = { ...payload.label, name: "overseer" };
  payload.issue.labels = [payload.label];
  payload.repository = { ...payload.repository, clone_url: cloneUrl, default_branch: "main" };
  expect((await app.send("issues", payload)).status).toBe(202);
}

async function runsOf(issue: number) {
  const result = await db.pool.query(
    `SELECT runs.* FROM runs JOIN tasks ON tasks.id = runs.task_id
      WHERE tasks.issue_number = $1 ORDER BY runs.id`,
    [issue],
  );
  return result.rows;
}

function statusComment(issue: number): string {
  return (
    [...github.comments.values()].find(
      (comment) => comment.issue === issue && comment.body.startsWith("<!-- overseer:status"),
    )?.body ?? ""
  );
}

describe("an agent at its usage limit", () => {
  it("pauses the profile until the reset it reported, requeues without charging, and holds the profile's other tasks", async () => {
    await writeFile(modeFile, "limit");
    await label(41);
    const [limited] = await waitFor("a limited run", async () => {
      const runs = await runsOf(41);
      return runs[0]?.state === "limited" ? runs : null;
    });
    expect(limited).toMatchObject({
      state: "limited",
      charged: false,
      profile: "claude",
      exit_code: 1,
    });
    const task = await waitFor("the task back in the queue", async () => {
      const row = await taskRow(41);
      return row?.state === "queued" ? row : null;
    });
    expect(task).toMatchObject({ attempts: 0, state: "queued" });
    expect(task.last_error).toContain("the agent hit its usage limit");
    expect(task.last_error).toContain("not counted as an attempt");

    const profile = (await db.pool.query("SELECT * FROM worker_profiles WHERE name = 'claude'"))
      .rows[0];
    expect(profile).toMatchObject({ pause_kind: "usage_limit", paused_by_run: limited.id });
    expect(profile.paused_until.getTime()).toBe(resetAt.getTime());

    // Another task of the same profile waits too.
    await label(42);
    await app.settleOutbox();
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(await runsOf(42)).toEqual([]);
    expect(await runsOf(41)).toHaveLength(1);

    expect(statusComment(41)).toContain(
      `waiting for the agent's usage limit to reset at ${formatClock(resetAt, new Date())}`,
    );

    const status = await runOverseer(["status"], { DATABASE_URL: db.url, LOG_LEVEL: "silent" });
    expect(status.code).toBe(0);
    expect(status.stdout).toContain("paused profiles\n");
    expect(status.stdout).toContain(`claude  usage limit until ${resetAt.toISOString()}`);
    const json = await runOverseer(["status", "--json"], {
      DATABASE_URL: db.url,
      LOG_LEVEL: "silent",
    });
    expect(JSON.parse(json.stdout).paused).toMatchObject([
      { profile: "claude", kind: "usage_limit", until: resetAt.toISOString() },
    ]);

    // The limit resets: both tasks run, and the first one's attempt is its first.
    await writeFile(modeFile, "commit");
    await db.pool.query("UPDATE worker_profiles SET paused_until = now() WHERE name = 'claude'");
    for (const issue of [41, 42]) {
      const done = await waitFor(`task ${issue} to run`, async () => {
        const row = await taskRow(issue);
        return row?.state === "awaiting_merge" ? row : null;
      });
      expect(done.attempts).toBe(1);
    }
    expect(github.unexpected).toEqual([]);
  }, 90_000);

  it("an authentication failure pauses with a backoff when no reset time is given", async () => {
    await writeFile(modeFile, "auth");
    const before = Date.now();
    await label(43);
    await waitFor("a limited run", async () => (await runsOf(43))[0]?.state === "limited");
    const profile = (await db.pool.query("SELECT * FROM worker_profiles WHERE name = 'claude'"))
      .rows[0];
    expect(profile.pause_kind).toBe("auth");
    expect(profile.pause_reason).toContain("Invalid API key");
    // OVERSEER_USAGE_LIMIT_BACKOFF (10m), the streak having been reset by the runs that worked.
    const wait = profile.paused_until.getTime() - before;
    expect(wait).toBeGreaterThan(9 * 60_000);
    expect(wait).toBeLessThan(11 * 60_000);
    await app.settleOutbox();
    expect(statusComment(43)).toContain("the agent could not authenticate");
    expect((await taskRow(43)).attempts).toBe(0);
    await db.pool.query("UPDATE worker_profiles SET paused_until = NULL");
    expect(github.unexpected).toEqual([]);
  }, 60_000);
});
