import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import nock from "nock";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseWorkerProfiles } from "../../src/config/workers.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { branchName } from "../../src/domain/branch.js";
import { createOverseerProbot } from "../../src/github/probot.js";
import { createRunnerGithub } from "../../src/runner/github.js";
import { Runner } from "../../src/runner/runner.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, startGitServer } from "../support/git-http.js";

const API = "https://api.github.com";
const INSTALLATION_ID = 4242;
const TOKEN = "ghs_mintedaftertheoutage";
const COMMIT = [
  "echo change >> file.txt",
  "git add -A",
  "git -c user.name=agent -c user.email=agent@example.com commit -qm 'Do the work'",
].join(" && ");

let db: TestDatabase;
let server: GitServer;
let home: string;
let repo: RepoRow;
let runner: Runner | undefined;
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
const { privateKey } = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  privateKeyEncoding: { type: "pkcs1", format: "pem" },
  publicKeyEncoding: { type: "spki", format: "pem" },
});

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startGitServer({ tokens: [TOKEN] });
  const { cloneUrl } = await server.createRepo("octo", "widgets");
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-infra-"));
  repo = await upsertRepo(db.pool, {
    githubId: 77,
    fullName: "octo/widgets",
    installationId: INSTALLATION_ID,
    cloneUrl,
    defaultBranch: "main",
  });
});

afterAll(async () => {
  await runner?.stop();
  await db?.drop();
  await server?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

describe("infrastructure failures are not charged as attempts", () => {
  it("a token mint answered 502: the task is requeued uncharged with the reason, then runs", async () => {
    const task = await insertTaskIfAbsent(db.pool, {
      repoId: repo.id,
      issueNumber: 1,
      title: "Survive an outage",
      state: "queued",
      priority: 2,
      maxAttempts: 1,
      riskLabelled: false,
      workerProfile: "commit",
      baseBranch: "main",
      branch: branchName(1, "Survive an outage"),
      config: {},
      labels: [],
    });
    if (!task) throw new Error("no task");
    nock(API)
      .post(`/app/installations/${INSTALLATION_ID}/access_tokens`)
      .reply(502, { message: "Server Error" })
      .post(`/app/installations/${INSTALLATION_ID}/access_tokens`)
      .reply(201, { token: TOKEN, expires_at: new Date(Date.now() + 3_600_000).toISOString() })
      .get("/repos/octo/widgets/issues/1")
      .reply(200, { number: 1, title: "Survive an outage", body: "Please.", comments: 0 })
      .post("/repos/octo/widgets/pulls")
      .reply(201, {
        number: 5,
        html_url: "https://github.com/octo/widgets/pull/5",
        head: { sha: "x" },
      });

    const probot = createOverseerProbot(
      { appId: 123, privateKey, webhookSecret: "secret", githubApiUrl: API },
      log,
    );
    runner = new Runner({
      pool: db.pool,
      databaseUrl: db.url,
      env: {
        home,
        heartbeatIntervalMs: 200,
        leaseMs: 600,
        maxRunMs: 60_000,
        pollIntervalMs: 30_000,
        runnerCapacity: 1,
        requeueBackoffMs: 300,
      },
      log,
      workers: parseWorkerProfiles(
        `profiles:\n  commit:\n    command: ${JSON.stringify(["sh", "-c", COMMIT])}\n`,
        "test",
      ),
      github: async (installationId) => createRunnerGithub(await probot.auth(installationId)),
    });
    await runner.start();

    const deadline = Date.now() + 30_000;
    let row: Record<string, unknown> | undefined;
    for (;;) {
      row = (await db.pool.query("SELECT * FROM tasks WHERE id = $1", [task.id])).rows[0];
      if (row?.state === "awaiting_merge" || row?.state === "failed") break;
      if (Date.now() > deadline) throw new Error(`task is ${row?.state}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    // max_attempts is 1: had the outage been charged, the task could not have run again.
    expect(row).toMatchObject({
      state: "awaiting_merge",
      attempts: 1,
      pr_number: 5,
      last_error: null,
    });
    const runs = await db.pool.query(
      "SELECT state, charged, failure_reason FROM runs WHERE task_id = $1 ORDER BY id",
      [task.id],
    );
    expect(runs.rows).toHaveLength(2);
    expect(runs.rows[0]).toMatchObject({ state: "lost", charged: false });
    expect(runs.rows[0].failure_reason).toMatch(/^github: HTTP 502: .*not counted as an attempt/);
    expect(runs.rows[1]).toMatchObject({ state: "succeeded", charged: true });
    const events = await db.pool.query(
      "SELECT event, from_state, to_state, actor, detail FROM task_events WHERE task_id = $1 ORDER BY id",
      [task.id],
    );
    const requeued = events.rows.find((event) => event.event === "run_requeued");
    expect(requeued).toMatchObject({
      from_state: "running",
      to_state: "queued",
      actor: `runner:${runner.id}`,
    });
    expect(requeued?.detail.reason).toMatch(/HTTP 502/);
  });
});
