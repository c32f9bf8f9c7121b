import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { findFreePort } from "../../src/db/embedded.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { branchName } from "../../src/domain/branch.js";
import { listProcessGroup } from "../../src/runner/process-group.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, git, startGitServer } from "../support/git-http.js";
import { processesMentioning, REPO_ROOT } from "../support/process.js";

/**
 * Hostile workers against a real `overseer runner` process: the App's key, webhook secret
 * and database password in its environment, in its app folder (`.env`, the key file) and
 * under OVERSEER_HOME, as a real deployment has them. GitHub is the git stand-in on the
 * configured host (GHE_HOST), its REST API answered by a small handler that records every
 * call; a trap server records anyone who contacts it.
 */

const OWNER = "octo";
const NAME = "fortress";
const INSTALLATION_ID = 4242;
const TOKEN = `ghs_${randomBytes(16).toString("hex")}`;
const WEBHOOK_SECRET = `whsec-${randomBytes(12).toString("hex")}`;
const HOME_CANARY = `runner-home-canary-${randomBytes(8).toString("hex")}`;
const ENV_CANARY = `runner-env-canary-${randomBytes(8).toString("hex")}`;
const ESCAPE_MARK = `escaped-${randomBytes(6).toString("hex")}`;
const SLEEPER_MARK = `sleeper-${randomBytes(6).toString("hex")}`;
const HOSTILE = path.join(REPO_ROOT, "test/fixtures/workers/hostile");
const VICTIM_ISSUE = 40;
const VICTIM_BRANCH = branchName(VICTIM_ISSUE, `Issue ${VICTIM_ISSUE}`);

// Each run is a real runner process fetching over HTTP into a sandbox, on a shared host.
vi.setConfig({ testTimeout: 120_000 });

const { privateKey: PEM } = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  privateKeyEncoding: { type: "pkcs1", format: "pem" },
  publicKeyEncoding: { type: "spki", format: "pem" },
});
const KEY_LINES = PEM.split("\n").filter((line) => line.length > 16 && !line.startsWith("-----"));
const KEY_BASE64 = Buffer.from(PEM).toString("base64");

interface ApiCall {
  method: string;
  path: string;
  body: Record<string, unknown>;
}

let db: TestDatabase;
let server: GitServer;
let origin: { cloneUrl: string; gitDir: string };
let repo: RepoRow;
let base: string;
let home: string;
let appDir: string;
let runnerHome: string;
let marks: string;
let trap: http.Server;
let trapUrl: string;
const trapped: string[] = [];
const api: ApiCall[] = [];
let runner: ChildProcess | undefined;
let runnerOutput = "";
let dbPassword: string;

/** GitHub's REST API for the runner and its outbox, enough for a run from claim to PR. */
function githubApi(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const url = req.url ?? "";
  if (!url.startsWith("/api/v3/")) return false;
  let raw = "";
  req.on("data", (chunk) => {
    raw += chunk;
  });
  req.on("end", () => {
    const method = req.method ?? "GET";
    const route = url.slice("/api/v3".length).split("?")[0] ?? "";
    const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
    api.push({ method, path: route, body });
    const reply = (status: number, data: unknown) => {
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(data));
    };
    const repoPath = `/repos/${OWNER}/${NAME}`;
    if (method === "POST" && route === `/app/installations/${INSTALLATION_ID}/access_tokens`) {
      return reply(201, { token: TOKEN, expires_at: new Date(Date.now() + 3_600_000) });
    }
    const issue = new RegExp(`^${repoPath}/issues/(\\d+)$`).exec(route);
    if (method === "GET" && issue) {
      const number = Number(issue[1]);
      return reply(200, { number, title: `Issue ${number}`, body: "Please.", comments: 0 });
    }
    if (method === "POST" && /\/issues\/\d+\/comments$/.test(route)) {
      return reply(201, { id: 9000 + api.length });
    }
    if (method === "PATCH" && /\/issues\/comments\/\d+$/.test(route)) return reply(200, {});
    if (/\/issues\/\d+\/labels/.test(route)) return reply(200, []);
    if (method === "POST" && route === `${repoPath}/pulls`) {
      const number = 500 + api.filter((call) => call.path === route).length;
      return reply(201, {
        number,
        html_url: `${server.url}/${OWNER}/${NAME}/pull/${number}`,
        head: { sha: "0".repeat(40) },
      });
    }
    return reply(404, { message: "Not Found" });
  });
  return true;
}

function profiles(): string {
  const profile = (name: string, argv: string[], extra = "") =>
    `  ${name}:\n    command: ${JSON.stringify(argv)}\n    timeout: 2m\n    grace: 1s\n${extra}`;
  const script = (name: string) => path.join(HOSTILE, name);
  const unconfined = "    sandbox: false\n";
  return [
    "default: hunt",
    "profiles:",
    profile("hunt", [script("hunt-secrets.sh"), home, appDir, runnerHome]),
    // Everything around OVERSEER_HOME, the app folder and the runner's home made readable:
    // what must stay hidden is masked inside it.
    profile(
      "hunt-wide",
      [script("hunt-secrets.sh"), home, appDir, runnerHome],
      `    sandbox:\n      readable: [${JSON.stringify(base)}]\n`,
    ),
    profile("rewire", [script("rewire-git.sh"), trapUrl, marks]),
    profile("rewire-unconfined", [script("rewire-git.sh"), trapUrl, marks], unconfined),
    profile("escape", [script("escape-setsid.sh"), ESCAPE_MARK]),
    profile("victim", [script("slow-victim.sh")]),
    profile("mover", [script("move-ref.sh"), VICTIM_BRANCH]),
    profile("print-key", [script("print-key.sh"), path.join(appDir, "app.pem")], unconfined),
    profile(
      "summary-text",
      [script("steal-into-summary.sh"), path.join(appDir, "app.pem"), "text"],
      unconfined,
    ),
    profile("sleeper", ["sh", "-c", `echo started; while :; do sleep 1; done; : ${SLEEPER_MARK}`]),
    profile(
      "summary-link",
      [script("steal-into-summary.sh"), path.join(appDir, "app.pem"), "link"],
      unconfined,
    ),
  ].join("\n");
}

beforeAll(async () => {
  db = await createTestDatabase();
  dbPassword = decodeURIComponent(new URL(db.url).password);
  expect(dbPassword.length).toBeGreaterThan(3);
  server = await startGitServer({ tokens: [TOKEN] });
  server.handle = githubApi;
  origin = await server.createRepo(OWNER, NAME);
  repo = await upsertRepo(db.pool, {
    githubId: 77_001,
    fullName: `${OWNER}/${NAME}`,
    installationId: INSTALLATION_ID,
    cloneUrl: origin.cloneUrl,
    defaultBranch: "main",
  });
  trap = http.createServer((req, res) => {
    trapped.push(`${req.method} ${req.url} ${req.headers.authorization ?? ""}`);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => trap.listen(0, "127.0.0.1", resolve));
  trapUrl = `http://127.0.0.1:${(trap.address() as AddressInfo).port}`;

  base = await mkdtemp(path.join(os.tmpdir(), "overseer-attacks-"));
  home = path.join(base, "home");
  appDir = path.join(base, "app");
  runnerHome = path.join(base, "runner-home");
  marks = path.join(base, "marks");
  for (const dir of [home, appDir, runnerHome, marks]) await mkdir(dir, { recursive: true });
  // Where a real deployment keeps its secrets: the key file, Probot's .env, the embedded
  // database's password file, the runner user's own files.
  await writeFile(path.join(appDir, "app.pem"), PEM, { mode: 0o600 });
  await writeFile(
    path.join(appDir, ".env"),
    `WEBHOOK_SECRET=${WEBHOOK_SECRET}\nPRIVATE_KEY="${PEM.replace(/\n/g, "\\n")}"\n`,
    { mode: 0o600 },
  );
  await writeFile(path.join(home, "postgres.password"), `${dbPassword}\n`, { mode: 0o600 });
  await mkdir(path.join(runnerHome, ".config"), { recursive: true });
  await writeFile(path.join(runnerHome, ".config", "token"), `${HOME_CANARY}\n`, { mode: 0o600 });
  const workers = path.join(base, "workers.yml");
  await writeFile(workers, profiles());

  const tsx = pathToFileURL(path.join(REPO_ROOT, "node_modules/tsx/dist/loader.mjs")).href;
  runner = spawn(
    process.execPath,
    ["--import", tsx, path.join(REPO_ROOT, "src/cli/main.ts"), "runner"],
    {
      cwd: appDir,
      env: {
        PATH: process.env.PATH,
        HOME: runnerHome,
        APP_ID: "123",
        PRIVATE_KEY: PEM,
        PRIVATE_KEY_PATH: path.join(appDir, "app.pem"),
        WEBHOOK_SECRET,
        DATABASE_URL: db.url,
        GHE_HOST: server.host,
        GHE_PROTOCOL: "http",
        OVERSEER_HOME: home,
        OVERSEER_WORKERS: workers,
        OVERSEER_RUNNER_CAPACITY: "3",
        OVERSEER_HEARTBEAT_INTERVAL: "500ms",
        OVERSEER_POLL_INTERVAL: "200ms",
        OVERSEER_OUTBOX_SETTLE: "0",
        OVERSEER_CANARY: ENV_CANARY,
        PORT: String(await findFreePort()),
        HOST: "127.0.0.1",
        LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  runner.stdout?.on("data", (chunk) => {
    runnerOutput += chunk;
  });
  runner.stderr?.on("data", (chunk) => {
    runnerOutput += chunk;
  });
}, 120_000);

afterAll(async () => {
  if (runner && runner.exitCode === null && runner.signalCode === null) {
    const exited = new Promise((resolve) => runner?.once("exit", resolve));
    runner.kill("SIGTERM");
    await exited;
  }
  for (const mark of [ESCAPE_MARK, SLEEPER_MARK]) {
    for (const pid of await processesMentioning(mark)) process.kill(pid, "SIGKILL");
  }
  await new Promise((resolve) => trap?.close(resolve));
  await server?.stop();
  await db?.drop();
  if (base) await rm(base, { recursive: true, force: true });
}, 60_000);

async function seedTask(issue: number, profile: string): Promise<number> {
  const task = await insertTaskIfAbsent(db.pool, {
    repoId: repo.id,
    issueNumber: issue,
    title: `Issue ${issue}`,
    state: "queued",
    priority: 2,
    maxAttempts: 1,
    riskLabelled: false,
    workerProfile: profile,
    baseBranch: null,
    branch: branchName(issue, `Issue ${issue}`),
    config: { concurrency: 3 },
    labels: ["overseer"],
  });
  if (!task) throw new Error(`task for issue ${issue} exists already`);
  return task.id;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>) {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (runner?.exitCode !== null || runner.signalCode !== null) {
      throw new Error(`the runner exited:\n${runnerOutput}`);
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${runnerOutput}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function settled(taskId: number) {
  return waitFor(`task ${taskId} to settle`, async () => {
    const { rows } = await db.pool.query("SELECT * FROM tasks WHERE id = $1", [taskId]);
    const row = rows[0];
    return ["awaiting_merge", "failed", "stopped"].includes(row?.state) ? row : undefined;
  });
}

async function runOf(taskId: number) {
  const { rows } = await db.pool.query("SELECT * FROM runs WHERE task_id = $1 ORDER BY id", [
    taskId,
  ]);
  return rows[0];
}

/** Everything a task's worker output can reach outside the host: comments, PRs, events. */
async function published(taskId: number, issue: number): Promise<string> {
  const { rows: events } = await db.pool.query(
    "SELECT detail::text AS detail FROM task_events WHERE task_id = $1",
    [taskId],
  );
  const { rows: tasks } = await db.pool.query(
    "SELECT last_error, summary FROM tasks WHERE id = $1",
    [taskId],
  );
  const calls = api.filter(
    (call) => call.path.includes(`/issues/${issue}/`) || call.path.endsWith("/pulls"),
  );
  return [
    ...events.map((row) => row.detail),
    tasks[0]?.last_error ?? "",
    tasks[0]?.summary ?? "",
    ...calls.map((call) => JSON.stringify(call.body)),
  ].join("\n");
}

function expectNoSecret(text: string, where: string) {
  for (const line of KEY_LINES)
    expect(text, `${where}: a line of the App's key`).not.toContain(line);
  expect(text, `${where}: the key as base64`).not.toContain(KEY_BASE64.slice(0, 64));
  expect(text, `${where}: the webhook secret`).not.toContain(WEBHOOK_SECRET);
  expect(text, `${where}: the database password`).not.toContain(dbPassword);
  expect(text, `${where}: the installation token`).not.toContain(TOKEN);
}

describe("a worker hunting for secrets", () => {
  it.each([
    ["in the default sandbox", "hunt", 10],
    ["with everything around Overseer made readable", "hunt-wide", 11],
  ])(
    "%s finds nothing: not in /proc, OVERSEER_HOME, the app folder or the runner's home",
    async (_how, profile, issue) => {
      const id = await seedTask(issue, profile);
      const task = await settled(id);
      expect(task.last_error).toBeNull();
      expect(task.state).toBe("awaiting_merge");
      const loot = git(origin.gitDir, "show", `${task.pr_head_sha}:loot.txt`);
      // The hunt ran and read what it could: its own environment.
      expect(loot).toContain("OVERSEER_WORKTREE=");
      expectNoSecret(loot, "what the worker found");
      expect(loot).not.toContain(HOME_CANARY);
      // The runner's own environment is not in any /proc the worker sees.
      expect(loot).not.toContain(ENV_CANARY);
      expect(loot).not.toContain("OVERSEER_HEARTBEAT_INTERVAL");
      const run = await runOf(id);
      expectNoSecret(await readFile(run.log_path, "utf8"), "the run log");
      expectNoSecret(await published(id, issue), "what was published");
    },
  );
});

describe("a worker rewiring git", () => {
  it.each([
    ["in the sandbox", "rewire", 20],
    ["unconfined (sandbox: false)", "rewire-unconfined", 21],
  ])(
    "%s: Overseer contacts no other host, runs none of its programs, and the PR is on origin",
    async (_how, profile, issue) => {
      const id = await seedTask(issue, profile);
      const task = await settled(id);
      expect(task.last_error).toBeNull();
      expect(task.state).toBe("awaiting_merge");
      expect(trapped).toEqual([]);
      expect(await readdir(marks)).toEqual([]);
      // The branch is on the real origin at the SHA recorded, with the work and the leftovers.
      expect(git(origin.gitDir, "rev-parse", `refs/heads/${task.branch}`)).toBe(task.pr_head_sha);
      expect(git(origin.gitDir, "show", `${task.pr_head_sha}:leftover.txt`)).toBe(
        "left uncommitted",
      );
      const pulls = api.filter((call) => call.method === "POST" && call.path.endsWith("/pulls"));
      expect(pulls.some((call) => call.body.head === task.branch)).toBe(true);
      // Every git request went to origin with the installation token, none anywhere else.
      expect(
        server.requests.every((request) => request.path.startsWith(`/${OWNER}/${NAME}.git/`)),
      ).toBe(true);
      const mirror = path.join(home, "mirrors", OWNER, `${NAME}.git`);
      expect(await readFile(path.join(mirror, "config"), "utf8")).not.toContain(trapUrl);
      expect(existsSync(path.join(mirror, "hooks", "pre-push"))).toBe(false);
    },
  );

  it("unconfined, its changes to the mirror are recorded on the task", async () => {
    const { rows } = await db.pool.query(
      `SELECT e.detail FROM task_events e JOIN tasks t ON t.id = e.task_id
        WHERE t.issue_number = 21 AND e.event = 'mirror_restored'`,
    );
    expect(rows).toHaveLength(1);
    expect(rows[0].detail.configKeys).toEqual(
      expect.arrayContaining([
        "remote.origin.pushurl",
        "remote.origin.url",
        "core.hookspath",
        "core.fsmonitor",
        `url.${trapUrl}/.insteadof`,
        `url.${trapUrl}/.pushinsteadof`,
      ]),
    );
    expect(rows[0].detail.hooks).toEqual(["pre-push"]);
  });
});

describe("a worker leaving a process behind with setsid", () => {
  it("leaves nothing alive once the run is over", async () => {
    const id = await seedTask(30, "escape");
    const task = await settled(id);
    expect(task.state).toBe("awaiting_merge");
    // It did escape its process group, and was running when the worker exited.
    expect(git(origin.gitDir, "show", `${task.pr_head_sha}:escaped.txt`)).toBe("escaped");
    expect(await processesMentioning(ESCAPE_MARK)).toEqual([]);
  });
});

describe("a worker moving another task's branch", () => {
  it("does not change what that task pushes", async () => {
    const victim = await seedTask(VICTIM_ISSUE, "victim");
    const run = await waitFor("the victim to have committed", async () => {
      const row = await runOf(victim);
      return row?.worktree && existsSync(path.join(row.worktree, ".ready")) ? row : undefined;
    });
    const mover = await seedTask(41, "mover");
    const moved = await settled(mover);
    expect(moved.last_error).toBeNull();
    expect(moved.state).toBe("awaiting_merge");
    await writeFile(path.join(run.worktree, ".go"), "");
    const task = await settled(victim);
    expect(task.state).toBe("awaiting_merge");
    expect(task.branch).toBe(VICTIM_BRANCH);
    const pushed = git(origin.gitDir, "rev-parse", `refs/heads/${VICTIM_BRANCH}`);
    expect(pushed).toBe(task.pr_head_sha);
    expect(git(origin.gitDir, "log", "-1", "--format=%s", pushed)).toBe("The victim's work");
    expect(git(origin.gitDir, "ls-tree", "--name-only", pushed)).not.toContain("planted.txt");
  });
});

describe("a worker printing the App's private key", () => {
  it("and exiting 1 shows no key in the status comment, the run log or the events", async () => {
    const id = await seedTask(50, "print-key");
    const task = await settled(id);
    expect(task.state).toBe("failed");
    expect(task.last_error).toMatch(/^worker exited with code 1\n/);
    expect(task.last_error).toContain("[REDACTED");
    // Other tasks' status comments are edited at /issues/comments/<id> too: wait for this
    // task's own, with the failure in it (the outbox may deliver it after the task settled).
    const ofThisTask = () =>
      api
        .filter((call) => /\/issues\/(50\/)?comments/.test(call.path))
        .map((call) => String(call.body.body))
        .filter((body) => body.includes(`<!-- overseer:status task=${id} -->`));
    const comments = await waitFor("the failed task's status comment", async () => {
      const bodies = ofThisTask();
      return bodies.some((body) => body.includes("fatal: giving up")) ? bodies : undefined;
    });
    expectNoSecret(comments.join("\n"), "the status comment");
    expectNoSecret(await published(id, 50), "what was published");
    const run = await runOf(id);
    expectNoSecret(await readFile(run.log_path, "utf8"), "the run log");
  });
});

describe("a worker smuggling the key into its summary", () => {
  it("as text: the PR body has no key, closes no other issue and mentions nobody", async () => {
    const id = await seedTask(60, "summary-text");
    const task = await settled(id);
    expect(task.state).toBe("awaiting_merge");
    const pull = api.find((call) => call.path.endsWith("/pulls") && call.body.head === task.branch);
    const body = String(pull?.body.body);
    expect(body).toMatch(/^Closes #60\n/);
    expectNoSecret(body, "the PR body");
    expect(body).not.toMatch(/\b(fixes|closes)\s+(\S+\/\S+)?#(4242|7)\b/i);
    expect(body).not.toMatch(/@octocat/);
    expect(body).toContain("Thanks @\u200boctocat");
  });

  it("as a symlink to the key file: Overseer does not follow it", async () => {
    const id = await seedTask(61, "summary-link");
    const task = await settled(id);
    expect(task.state).toBe("awaiting_merge");
    const pull = api.find((call) => call.path.endsWith("/pulls") && call.body.head === task.branch);
    expect(String(pull?.body.body)).toContain("_The worker left no summary._");
    expectNoSecret(await published(id, 61), "what was published");
  });
});

describe("a task branch that moved on origin while the worker ran", () => {
  it("is reported, not force-pushed", async () => {
    const issue = 45;
    const branch = branchName(issue, `Issue ${issue}`);
    const id = await seedTask(issue, "victim");
    const run = await waitFor("the worker to have committed", async () => {
      const row = await runOf(id);
      return row?.worktree && existsSync(path.join(row.worktree, ".ready")) ? row : undefined;
    });
    // Someone else pushes the same branch meanwhile, on top of main.
    const clone = path.join(base, "someone-else");
    git(base, "clone", "-q", origin.gitDir, clone);
    git(clone, "commit", "-q", "--allow-empty", "-m", "Someone else's commit");
    git(clone, "push", "-q", "origin", `HEAD:refs/heads/${branch}`);
    const theirs = git(clone, "rev-parse", "HEAD");
    await writeFile(path.join(run.worktree, ".go"), "");
    const task = await settled(id);
    expect(task.state).toBe("failed");
    expect(task.last_error).toMatch(
      new RegExp(
        `branch ${branch} is at ${theirs} on origin, .*someone else pushed to it.*not force-pushed`,
      ),
    );
    expect(git(origin.gitDir, "rev-parse", `refs/heads/${branch}`)).toBe(theirs);
    const { rows } = await db.pool.query("SELECT charged FROM runs WHERE task_id = $1", [id]);
    expect(rows).toEqual([{ charged: false }]);
  });
});

// Last: it kills the runner the tests above share.
describe("a sandboxed worker whose runner is killed with kill -9", () => {
  it("ends with it: nothing of the sandbox is left running", async () => {
    const id = await seedTask(70, "sleeper");
    const run = await waitFor("the worker to run", async () => {
      const row = await runOf(id);
      return row?.pgid && (await processesMentioning(SLEEPER_MARK)).length > 0 ? row : undefined;
    });
    const exited = new Promise((resolve) => runner?.once("exit", resolve));
    runner?.kill("SIGKILL");
    await exited;
    for (let i = 0; i < 200 && (await processesMentioning(SLEEPER_MARK)).length > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(await processesMentioning(SLEEPER_MARK)).toEqual([]);
    expect(listProcessGroup(run.pgid).filter((m) => m.state !== "Z")).toEqual([]);
  });
});
