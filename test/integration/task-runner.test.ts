import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import nock from "nock";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseWorkerProfiles } from "../../src/config/workers.js";
import { findFreePort } from "../../src/db/embedded.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { changeTask } from "../../src/db/task-changes.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { branchName } from "../../src/domain/branch.js";
import { mergedEvent } from "../../src/github/merges.js";
import { OutboxDispatcher } from "../../src/github/outbox/dispatcher.js";
import { OverseerOctokit } from "../../src/github/probot.js";
import { createRunnerGithub, type RunnerGithub } from "../../src/runner/github.js";
import { listProcessGroup } from "../../src/runner/process-group.js";
import { Runner, type RunnerDependencies } from "../../src/runner/runner.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, git, startGitServer } from "../support/git-http.js";
import { REPO_ROOT } from "../support/process.js";

const OWNER = "octo";
const NAME = "widgets";
const FULL_NAME = `${OWNER}/${NAME}`;
const INSTALLATION_ID = 4242;
const GRACE_MS = 1_000;

const COMMIT = [
  "echo change >> file-{issue}.txt",
  "git add -A",
  "git -c user.name=agent -c user.email=agent@example.com commit -qm 'Do the work'",
  'echo "Did the work." > "$OVERSEER_SUMMARY_FILE"',
].join(" && ");

let db: TestDatabase;
let server: GitServer;
let origin: { cloneUrl: string; gitDir: string };
let home: string;
let repo: RepoRow;
const runners: Runner[] = [];
/** Where the `resumable` worker notes that it started once already. */
let RESUME_MARK: string;
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

function profilesYaml(markFile: string): string {
  const profile = (command: string, extra = "") =>
    `    command: ${JSON.stringify(["sh", "-c", command])}\n    timeout: 1m\n    grace: 1s\n${extra}`;
  return [
    "default: commit",
    "profiles:",
    "  commit:",
    profile(COMMIT),
    "  nochange:",
    profile("echo looked around; echo nothing to do"),
    "  crash:",
    profile("echo step one; echo 'fatal: model quota exceeded' >&2; exit 1"),
    "  trivial:",
    profile("exit 0"),
    // Ignores SIGTERM (inherited by its children), with a child and a grandchild.
    "  stubborn:",
    profile(
      "echo draft > notes.txt; trap '' TERM; sleep 1000 & sh -c 'sleep 1000 & wait' & echo ready; wait",
    ),
    "  slow:",
    `    command: ${JSON.stringify(["sh", "-c", "echo working; sleep 30"])}\n    timeout: 1s\n    grace: 1s\n`,
    // First attempt hangs; any later attempt does the work.
    // Unsandboxed: a sandboxed worker dies with its runner, so only these leave orphans.
    "  resumable:",
    profile(
      `if [ -e ${markFile} ]; then ${COMMIT}; else touch ${markFile}; exec sleep 1000; fi`,
      "    sandbox: false\n",
    ),
  ].join("\n");
}

class FakeGithub implements RunnerGithub {
  readonly opened: { branch: string; base: string; title: string; body: string }[] = [];
  issueReads = 0;
  async issueForPrompt(_repo: string, issueNumber: number) {
    this.issueReads += 1;
    return { title: `Issue ${issueNumber}`, body: "Make it so.", comments: [] };
  }
  async findOrOpenPullRequest(
    _repo: string,
    pull: { branch: string; base: string; title: string; body: string },
  ) {
    this.opened.push(pull);
    const number = 100 + this.opened.length;
    return {
      number,
      url: `https://github.com/${FULL_NAME}/pull/${number}`,
      headSha: "0".repeat(40),
      created: true,
    };
  }
  async installationToken() {
    return "ghs_faketoken";
  }
  async pullRequestFeedback(): Promise<never> {
    throw new Error("these tests run no revision");
  }
  async pullRequest(): Promise<never> {
    throw new Error("these tests run no revision");
  }
}

let nextIssue = 1;
async function seedTask(
  profile: string,
  options: { issue?: number; concurrency?: number } = {},
): Promise<number> {
  const issue = options.issue ?? nextIssue++;
  const task = await insertTaskIfAbsent(db.pool, {
    repoId: repo.id,
    issueNumber: issue,
    title: `Issue ${issue}`,
    state: "queued",
    priority: 2,
    maxAttempts: 3,
    riskLabelled: false,
    workerProfile: profile,
    baseBranch: null,
    branch: branchName(issue, `Issue ${issue}`),
    config: { concurrency: options.concurrency ?? 2 },
    labels: ["overseer"],
  });
  if (!task) throw new Error(`task for issue ${issue} exists already`);
  return task.id;
}

async function startRunner(
  github: RunnerGithub,
  overrides: Partial<RunnerDependencies["env"]> = {},
): Promise<Runner> {
  const workers = parseWorkerProfiles(profilesYaml(RESUME_MARK), "test");
  const runner = new Runner({
    pool: db.pool,
    databaseUrl: db.url,
    env: {
      home,
      githubUrl: server.url,
      heartbeatIntervalMs: 200,
      leaseMs: 600,
      maxRunMs: 60_000,
      // Long: these tests must be woken by NOTIFY, except where they say otherwise.
      pollIntervalMs: 30_000,
      runnerCapacity: 2,
      requeueBackoffMs: 200,
      ...overrides,
    },
    log,
    workers,
    github: async () => github,
  });
  runners.push(runner);
  await runner.start();
  return runner;
}

async function task(id: number) {
  const result = await db.pool.query("SELECT * FROM tasks WHERE id = $1", [id]);
  return result.rows[0];
}

async function runsOf(taskId: number) {
  const result = await db.pool.query("SELECT * FROM runs WHERE task_id = $1 ORDER BY id", [taskId]);
  return result.rows;
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function waitForState(id: number, states: string[], timeoutMs?: number) {
  return waitFor(
    `task ${id} to reach ${states.join(" or ")}`,
    async () => {
      const row = await task(id);
      return states.includes(row?.state) ? row : undefined;
    },
    timeoutMs,
  );
}

function livingMembers(pgid: number) {
  return listProcessGroup(pgid).filter((member) => member.state !== "Z" && member.state !== "X");
}

function originBranch(branch: string): string | null {
  const line = git(origin.gitDir, "ls-remote", origin.gitDir, `refs/heads/${branch}`);
  return line === "" ? null : (line.split("\t")[0] ?? null);
}

async function command(taskId: number, name: "stop", actor: string) {
  const result = await changeTask(
    db.pool,
    { id: taskId },
    { type: "command", command: name, actor },
    { actor: `operator:${actor}`, cause: `command:/${name}` },
  );
  if (!result?.ok) throw new Error(result ? result.reason : `task ${taskId} vanished`);
}

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startGitServer({
    tokens: ["ghs_faketoken", "ghs_agenttest", "ghs_stubtoken"],
  });
  origin = await server.createRepo(OWNER, NAME);
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-runner-"));
  RESUME_MARK = path.join(home, "resumed");
  repo = await upsertRepo(db.pool, {
    githubId: 9001,
    fullName: FULL_NAME,
    installationId: INSTALLATION_ID,
    cloneUrl: origin.cloneUrl,
    defaultBranch: "main",
  });
});

afterEach(async () => {
  await Promise.all(runners.splice(0).map((runner) => runner.stop()));
});

afterAll(async () => {
  await db?.drop();
  await server?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

describe("outcome is judged by evidence", () => {
  it("a worker that commits: branch pushed to origin, PR opened once, task awaiting merge", async () => {
    const github = new FakeGithub();
    const id = await seedTask("commit");
    await startRunner(github);
    const done = await waitForState(id, ["awaiting_merge", "failed"]);
    expect(done.last_error).toBeNull();
    expect(done.state).toBe("awaiting_merge");
    expect(github.opened).toHaveLength(1);
    const [pull] = github.opened;
    expect(pull?.branch).toBe(done.branch);
    expect(pull?.base).toBe("main");
    expect(pull?.body).toContain(`Closes #${done.issue_number}`);
    expect(pull?.body).toContain("Did the work.");
    expect(done.pr_number).toBe(101);
    const [run] = await runsOf(id);
    expect(run.state).toBe("succeeded");
    expect(run.exit_code).toBe(0);
    expect(originBranch(done.branch)).toBe(run.head_sha);
    expect(git(origin.gitDir, "log", "-1", "--format=%s", done.branch)).toBe("Do the work");
  });

  it("exit 0 without changes → failed 'worker exited without changes', no push, no PR", async () => {
    const github = new FakeGithub();
    const id = await seedTask("nochange");
    await startRunner(github);
    const failed = await waitForState(id, ["failed", "awaiting_merge", "done"]);
    expect(failed.state).toBe("failed");
    expect(failed.last_error).toBe("worker exited without changes");
    expect(github.opened).toEqual([]);
    expect(originBranch(failed.branch)).toBeNull();
    const [run] = await runsOf(id);
    expect(run).toMatchObject({ state: "failed", exit_code: 0, charged: true });
  });

  it("exit 1 → failed with the exit code and the log tail, in the status comment too", async () => {
    const github = new FakeGithub();
    const id = await seedTask("crash");
    await startRunner(github);
    const failed = await waitForState(id, ["failed", "awaiting_merge"]);
    expect(failed.state).toBe("failed");
    expect(failed.last_error).toMatch(/^worker exited with code 1\n/);
    expect(failed.last_error).toContain("fatal: model quota exceeded");
    expect(failed.last_error).toContain("step one");
    const [run] = await runsOf(id);
    expect(run).toMatchObject({ state: "failed", exit_code: 1 });
    const outbox = await db.pool.query(
      "SELECT kind FROM outbox WHERE task_id = $1 AND delivered_at IS NULL",
      [id],
    );
    expect(outbox.rows.map((row) => row.kind).sort()).toEqual(["state_label", "status_comment"]);

    // Deliver this task's entries as the dispatcher would, and read what GitHub is sent.
    await db.pool.query(
      "UPDATE outbox SET delivered_at = now() WHERE task_id <> $1 AND delivered_at IS NULL",
      [id],
    );
    const posted: string[] = [];
    nock("https://api.github.com")
      .post(`/repos/${FULL_NAME}/issues/${failed.issue_number}/comments`, (body) => {
        posted.push(body.body);
        return true;
      })
      .reply(201, { id: 777 })
      .post(`/repos/${FULL_NAME}/issues/${failed.issue_number}/labels`, {
        labels: ["overseer:failed"],
      })
      .reply(200, []);
    const dispatcher = new OutboxDispatcher({
      pool: db.pool,
      databaseUrl: db.url,
      log,
      appId: 123,
      octokitFor: async () => new OverseerOctokit({ auth: "ghs_faketoken" }),
    });
    await dispatcher.drain();
    expect(posted).toHaveLength(1);
    expect(posted[0]).toContain("failed");
    expect(posted[0]).toContain("worker exited with code 1");
    expect(posted[0]).toContain("fatal: model quota exceeded");
  });

  it("timeout → run timed_out, task failed with 'timed_out' and the log tail", async () => {
    const github = new FakeGithub();
    const id = await seedTask("slow");
    await startRunner(github);
    const failed = await waitForState(id, ["failed", "awaiting_merge"]);
    expect(failed.last_error).toMatch(/^timed_out/);
    expect(failed.last_error).toContain("working");
    const [run] = await runsOf(id);
    expect(run.state).toBe("timed_out");
    expect(livingMembers(run.pgid)).toEqual([]);
  });
});

describe("stopping", () => {
  it("/stop reaches a SIGTERM-ignoring worker with grandchildren: group gone, SIGKILL after the grace, WIP pushed", async () => {
    const github = new FakeGithub();
    const id = await seedTask("stubborn");
    await startRunner(github);
    const run = await waitFor("the worker and its descendants", async () => {
      const [row] = await runsOf(id);
      const inside = row?.pgid ? livingMembers(row.pgid).filter((m) => m.comm !== "bwrap") : [];
      return inside.length >= 4 ? row : undefined;
    });
    const members = livingMembers(run.pgid);
    // bubblewrap's two processes lead the group and hold the worker's namespace.
    expect(
      members
        .map((member) => member.comm)
        .filter((comm) => comm !== "bwrap")
        .sort(),
    ).toEqual(["sh", "sh", "sleep", "sleep"]);

    await command(id, "stop", "maintainer");
    const settled = await waitFor("the run to settle", async () => {
      const [row] = await runsOf(id);
      return row?.state !== "running" ? row : undefined;
    });
    expect(settled.state).toBe("stopped");
    // SIGTERM was ignored, so the group was SIGKILLed once the grace period was over.
    expect(settled.signal).toBe("SIGKILL");
    expect(
      settled.finished_at.getTime() - settled.stop_requested_at.getTime(),
    ).toBeGreaterThanOrEqual(GRACE_MS - 50);
    expect(settled.stop_requested_by).toBe("operator:maintainer");
    for (const member of members) {
      // Gone from /proc, or at most a zombie waiting for PID 1: it runs nothing.
      const stat = await readFile(`/proc/${member.pid}/stat`, "utf8").catch(() => null);
      expect(stat === null || / [ZX] /.test(stat)).toBe(true);
    }
    expect(livingMembers(run.pgid)).toEqual([]);
    const stopped = await task(id);
    expect(stopped.state).toBe("stopped");
    const branch = originBranch(stopped.branch);
    expect(branch).not.toBeNull();
    expect(git(origin.gitDir, "log", "-1", "--format=%s", stopped.branch)).toMatch(
      /^WIP \(Overseer\): stopped/,
    );
    expect(github.opened).toEqual([]);
  });
});

describe("finding the PR", () => {
  it("an agent that opened its own PR: found through the API, not duplicated", async () => {
    const id = await seedTask("commit");
    const row = await task(id);
    const api = nock("https://api.github.com")
      .get(`/repos/${FULL_NAME}/issues/${row.issue_number}`)
      .reply(200, { number: row.issue_number, title: row.title, body: "Please.", comments: 0 })
      .post(`/repos/${FULL_NAME}/pulls`, (body) => body.head === row.branch && body.base === "main")
      .reply(422, {
        message: "Validation Failed",
        errors: [
          {
            resource: "PullRequest",
            code: "custom",
            message: `A pull request already exists for ${OWNER}:${row.branch}.`,
          },
        ],
      })
      .get(`/repos/${FULL_NAME}/pulls`)
      .query({ head: `${OWNER}:${row.branch}`, state: "open", per_page: "1" })
      .reply(200, [
        {
          number: 55,
          html_url: `https://github.com/${FULL_NAME}/pull/55`,
          head: { sha: "1".repeat(40), ref: row.branch },
        },
      ]);
    const octokit = new OverseerOctokit({ auth: { token: "ghs_agenttest" } });
    await startRunner(createRunnerGithub(octokit));
    const found = await waitForState(id, ["awaiting_merge", "failed"]);
    expect(found.last_error).toBeNull();
    expect(found.pr_number).toBe(55);
    expect(found.pr_url).toBe(`https://github.com/${FULL_NAME}/pull/55`);
    expect(api.isDone()).toBe(true);
  });
});

describe("claiming", () => {
  it("two runners and 200 queued tasks: every task claimed exactly once", async () => {
    const ids: number[] = [];
    for (let i = 0; i < 200; i += 1) ids.push(await seedTask("trivial", { concurrency: 8 }));
    const github = new FakeGithub();
    const [first, second] = await Promise.all([
      startRunner(github, { runnerCapacity: 4 }),
      startRunner(github, { runnerCapacity: 4 }),
    ]);
    await waitFor(
      "all 200 tasks to finish",
      async () => {
        const result = await db.pool.query(
          "SELECT count(*)::int AS n FROM tasks WHERE id = ANY($1) AND state = 'failed'",
          [ids],
        );
        return result.rows[0].n === ids.length;
      },
      // Each task makes a worktree (a fetch over HTTP) and a sandbox: minutes, on a busy host.
      360_000,
    );
    const runs = await db.pool.query(
      `SELECT task_id, count(*)::int AS n, array_agg(DISTINCT runner_id) AS runners
         FROM runs WHERE task_id = ANY($1) GROUP BY task_id`,
      [ids],
    );
    expect(runs.rows).toHaveLength(200);
    expect(runs.rows.filter((row) => row.n !== 1)).toEqual([]);
    const byRunner = await db.pool.query(
      "SELECT runner_id, count(*)::int AS n FROM runs WHERE task_id = ANY($1) GROUP BY runner_id",
      [ids],
    );
    const counts = new Map(byRunner.rows.map((row) => [row.runner_id, row.n]));
    // Both took part: the claim is shared, not serialised onto one runner.
    expect(counts.get(first?.id)).toBeGreaterThan(0);
    expect(counts.get(second?.id)).toBeGreaterThan(0);
    const reasons = await db.pool.query(
      "SELECT DISTINCT last_error FROM tasks WHERE id = ANY($1)",
      [ids],
    );
    expect(reasons.rows).toEqual([{ last_error: "worker exited without changes" }]);
  }, 420_000);
});

describe("recovery", () => {
  let child: ChildProcess | undefined;

  afterEach(async () => {
    await rm(RESUME_MARK, { force: true });
    if (child?.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    child = undefined;
    server.handle = undefined;
  });

  /**
   * GitHub for the runner process, on the git stand-in's host (GHE_HOST serves both): the
   * two API calls a runner makes before its worker starts, 404 for the rest of /api/v3.
   */
  async function startGithubStub(): Promise<string> {
    server.handle = (req, res) => {
      const url = req.url ?? "";
      if (!url.startsWith("/api/v3/")) return false;
      res.setHeader("content-type", "application/json");
      if (
        req.method === "POST" &&
        url === `/api/v3/app/installations/${INSTALLATION_ID}/access_tokens`
      ) {
        res.statusCode = 201;
        res.end(
          JSON.stringify({
            token: "ghs_stubtoken",
            expires_at: new Date(Date.now() + 3_600_000).toISOString(),
          }),
        );
        return true;
      }
      const issue = /^\/api\/v3\/repos\/octo\/widgets\/issues\/(\d+)$/.exec(url);
      if (req.method === "GET" && issue) {
        res.end(
          JSON.stringify({ number: Number(issue[1]), title: "Resume me", body: "", comments: 0 }),
        );
        return true;
      }
      res.statusCode = 404;
      res.end(JSON.stringify({ message: "Not Found" }));
      return true;
    };
    return server.host;
  }

  /** `overseer runner` as its own process; resolves once its worker for `taskId` runs. */
  async function spawnRunnerProcess(taskId: number) {
    const gheHost = await startGithubStub();
    const workersFile = path.join(home, "workers.yml");
    await writeFile(workersFile, profilesYaml(RESUME_MARK));
    const { privateKey } = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      privateKeyEncoding: { type: "pkcs1", format: "pem" },
      publicKeyEncoding: { type: "spki", format: "pem" },
    });
    const spawned = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "runner"], {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        APP_ID: "123",
        PRIVATE_KEY: privateKey,
        WEBHOOK_SECRET: "unused",
        GHE_HOST: gheHost,
        GHE_PROTOCOL: "http",
        DATABASE_URL: db.url,
        OVERSEER_HOME: home,
        OVERSEER_WORKERS: workersFile,
        OVERSEER_HEARTBEAT_INTERVAL: "200ms",
        OVERSEER_LEASE: "600ms",
        OVERSEER_POLL_INTERVAL: "200ms",
        PORT: String(await findFreePort()),
        HOST: "127.0.0.1",
        LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = spawned;
    let output = "";
    spawned.stdout?.on("data", (chunk) => {
      output += chunk;
    });
    spawned.stderr?.on("data", (chunk) => {
      output += chunk;
    });
    const exited = new Promise<number | null>((resolve) =>
      spawned.once("exit", (code) => resolve(code)),
    );
    const firstRun = await waitFor(
      "the runner process's worker to start",
      async () => {
        if (spawned.exitCode !== null) throw new Error(`runner exited:\n${output}`);
        const [row] = await runsOf(taskId);
        // The group exists a moment before its worker has written its mark.
        const started = row?.pgid && livingMembers(row.pgid).length > 0 && existsSync(RESUME_MARK);
        return started ? row : undefined;
      },
      30_000,
    );
    return { process: spawned, firstRun, exited, output: () => output };
  }

  it("a runner killed with kill -9 mid-run: lease expires, another runner kills the orphan, requeues and finishes", async () => {
    const id = await seedTask("resumable");
    const doomed = await spawnRunnerProcess(id);
    // The second runner is up before the first dies, so the lease sweep (not start-up
    // recovery) is what finds the run.
    const github = new FakeGithub();
    const survivor = await startRunner(github, { pollIntervalMs: 200 });
    doomed.process.kill("SIGKILL");
    await doomed.exited;
    expect(livingMembers(doomed.firstRun.pgid).length).toBeGreaterThan(0);

    const finished = await waitForState(id, ["awaiting_merge", "failed"], 30_000);
    expect(finished.last_error).toBeNull();
    expect(finished.state).toBe("awaiting_merge");
    expect(finished.attempts).toBe(1);
    expect(livingMembers(doomed.firstRun.pgid)).toEqual([]);
    const [lost, resumed] = await runsOf(id);
    expect(lost).toMatchObject({ state: "lost", charged: false, failure_reason: "lease expired" });
    expect(lost.runner_id).not.toBe(survivor.id);
    expect(resumed).toMatchObject({ state: "succeeded", runner_id: survivor.id });
    expect(github.opened).toHaveLength(1);
    expect(originBranch(finished.branch)).toBe(resumed.head_sha);
  }, 60_000);

  it("a runner starting on the host of a dead runner settles its run at once, before the lease runs out", async () => {
    const id = await seedTask("resumable");
    const doomed = await spawnRunnerProcess(id);
    doomed.process.kill("SIGKILL");
    await doomed.exited;
    // No lease sweep for 30 s: only start-up recovery can find the run.
    const survivor = await startRunner(new FakeGithub(), {
      leaseMs: 60_000,
      pollIntervalMs: 30_000,
    });
    const finished = await waitForState(id, ["awaiting_merge", "failed"], 30_000);
    expect(finished.state).toBe("awaiting_merge");
    expect(livingMembers(doomed.firstRun.pgid)).toEqual([]);
    const [lost, resumed] = await runsOf(id);
    expect(lost).toMatchObject({ state: "lost", charged: false, failure_reason: "runner died" });
    expect(resumed).toMatchObject({ state: "succeeded", runner_id: survivor.id });
  }, 60_000);

  it("SIGTERM: the runner stops its worker, requeues the task uncharged and exits 0", async () => {
    const id = await seedTask("resumable");
    const leaving = await spawnRunnerProcess(id);
    leaving.process.kill("SIGTERM");
    expect(await leaving.exited).toBe(0);
    expect(livingMembers(leaving.firstRun.pgid)).toEqual([]);
    const [run] = await runsOf(id);
    expect(run).toMatchObject({
      state: "lost",
      charged: false,
      failure_reason: "runner shut down",
    });
    const requeued = await task(id);
    expect(requeued).toMatchObject({ state: "queued", attempts: 0 });
    const runner = await db.pool.query("SELECT stopped_at FROM runners WHERE id = $1", [
      run.runner_id,
    ]);
    expect(runner.rows[0].stopped_at).not.toBeNull();
  }, 60_000);
});

describe("worktrees of final tasks", () => {
  it("are removed once the task is done, with the merged branch; kept while it awaits merge", async () => {
    const github = new FakeGithub();
    const id = await seedTask("commit");
    const runner = await startRunner(github);
    const waiting = await waitForState(id, ["awaiting_merge", "failed"]);
    const [run] = await runsOf(id);
    await runner.sweep();
    expect(existsSync(run.worktree)).toBe(true);
    expect(
      git(path.join(home, "mirrors", OWNER, `${NAME}.git`), "branch", "--list", waiting.branch),
    ).not.toBe("");

    const merged = mergedEvent(
      {
        prNumber: waiting.pr_number,
        prUrl: waiting.pr_url,
        mergeCommitSha: "2".repeat(40),
        mergedAt: new Date().toISOString(),
        mergedBy: "octocat",
      },
      waiting.pr_head_sha,
      "octocat",
    );
    const result = await changeTask(
      db.pool,
      { id },
      merged.event,
      { actor: "github:octocat", cause: "test" },
      merged.changes,
    );
    if (!result?.ok) throw new Error(result ? result.reason : "task vanished");
    await runner.sweep();
    expect(existsSync(run.worktree)).toBe(false);
    const mirror = path.join(home, "mirrors", OWNER, `${NAME}.git`);
    expect(git(mirror, "branch", "--list", waiting.branch)).toBe("");
    const events = await db.pool.query(
      "SELECT event, detail FROM task_events WHERE task_id = $1 AND event LIKE 'worktree%'",
      [id],
    );
    expect(events.rows).toEqual([
      { event: "worktree_removed", detail: expect.objectContaining({ branchDeleted: true }) },
    ]);
    const [after] = await runsOf(id);
    expect(after.worktree_removed_at).not.toBeNull();
    // A second sweep finds nothing left to do.
    await runner.sweep();
    const again = await db.pool.query(
      "SELECT count(*)::int AS n FROM task_events WHERE task_id = $1 AND event LIKE 'worktree%'",
      [id],
    );
    expect(again.rows[0].n).toBe(1);
  });
});
