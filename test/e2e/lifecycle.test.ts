import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import nock from "nock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, git, startGitServer } from "../support/git-http.js";
import {
  examplePayload,
  INSTALLATION_ID,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";

const OWNER = "Codertocat";
const REPO = "Hello-World";
const REPO_PATH = `/repos/${OWNER}/${REPO}`;
const ISSUE = 17;
const PR = 77;
const MERGE_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e";

let db: TestDatabase;
let app: TestApp;
let server: GitServer;
let origin: { cloneUrl: string; gitDir: string };
/** GitHub Enterprise on the git stand-in's host: API calls go to nock, git to the server. */
let API: string;
let home: string;

const WORKER = [
  "echo faster >> widget.txt",
  "git add -A",
  "git -c user.name=agent -c user.email=agent@example.com commit -qm 'Make the widget faster'",
  'echo "Made the widget faster." > "$OVERSEER_SUMMARY_FILE"',
].join(" && ");

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startGitServer({ tokens: ["ghs_lifecycle"] });
  origin = await server.createRepo(OWNER, REPO);
  API = `${server.url}/api/v3`;
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-lifecycle-"));
  const workers = path.join(home, "workers.yml");
  await writeFile(
    workers,
    `default: script\nprofiles:\n  script:\n    command: [sh, -c, ${JSON.stringify(WORKER)}]\n    timeout: 1m\n    grace: 1s\n`,
  );
  app = await startTestApp(
    db.url,
    {
      OVERSEER_HOME: home,
      OVERSEER_WORKERS: workers,
      GHE_HOST: server.host,
      GHE_PROTOCOL: "http",
      // Long enough that queued → running → awaiting merge coalesces into one comment.
      OVERSEER_OUTBOX_SETTLE: "2s",
      OVERSEER_HEARTBEAT_INTERVAL: "500ms",
    },
    "all",
  );
});

afterAll(async () => {
  await app?.stop();
  await db?.drop();
  await server?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

async function waitForState(state: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = (await db.pool.query("SELECT * FROM tasks WHERE issue_number = $1", [ISSUE]))
      .rows[0];
    if (row?.state === state) return row;
    if (Date.now() > deadline)
      throw new Error(`task is ${row?.state}, not ${state}: ${row?.last_error}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("the whole lifecycle", () => {
  it("label → worker commits → PR → verified merge → done, within 13 API calls (one for the check run)", async () => {
    const calls: string[] = [];
    const count = (method: string, uri: string) => {
      calls.push(`${method} ${uri.split("?")[0]}`);
    };
    const completions: string[] = [];
    const scope = nock(API)
      .post(`/app/installations/${INSTALLATION_ID}/access_tokens`)
      .reply(201, () => {
        count("POST", "/app/installations/:id/access_tokens");
        return {
          token: "ghs_lifecycle",
          expires_at: new Date(Date.now() + 3_600_000).toISOString(),
        };
      })
      .get(/\/contents\/\.github(%2F|\/)overseer\.yml/)
      .times(2)
      .reply(404, function () {
        count("GET", this.req.path);
        return { message: "Not Found" };
      })
      .get(`${REPO_PATH}/issues/${ISSUE}`)
      .reply(200, () => {
        count("GET", `${REPO_PATH}/issues/${ISSUE}`);
        return { number: ISSUE, title: "Make the widget faster", body: "It is slow.", comments: 0 };
      })
      .post(
        `${REPO_PATH}/pulls`,
        (body) =>
          body.head.startsWith("overseer/17-") &&
          body.base === "main" &&
          body.body.includes(`Closes #${ISSUE}`),
      )
      .reply(201, function () {
        count("POST", this.req.path);
        return {
          number: PR,
          html_url: `https://github.com/${OWNER}/${REPO}/pull/${PR}`,
          head: { sha: "x" },
        };
      })
      .post(`${REPO_PATH}/issues/${ISSUE}/comments`)
      .reply(201, function () {
        count("POST", this.req.path);
        return { id: 5001 };
      })
      .post(`${REPO_PATH}/issues/${ISSUE}/labels`, { labels: ["overseer:awaiting-merge"] })
      .reply(200, function () {
        count("POST", this.req.path);
        return [];
      })
      // The `overseer` check run on the PR's commit, created once the PR exists.
      .post(
        `${REPO_PATH}/check-runs`,
        (body) => body.name === "overseer" && body.status === "completed",
      )
      .reply(201, function () {
        count("POST", this.req.path);
        return { id: 5101 };
      });

    const labeled = examplePayload("issues", "labeled");
    labeled.issue.number = ISSUE;
    labeled.issue.title = "Make the widget faster";
    labeled.label = { ...labeled.label, name: "overseer" };
    labeled.issue.labels = [labeled.label];
    labeled.repository.clone_url = origin.cloneUrl;
    labeled.repository.default_branch = "main";
    // The outbox waits until the run is over, as a busy GitHub would make it: queued →
    // running → awaiting merge then coalesces into one comment and one label however long
    // the run takes on a loaded machine.
    await app.overseer.dispatcher?.stop();
    expect((await app.send("issues", labeled)).status).toBe(202);

    const awaiting = await waitForState("awaiting_merge");
    await app.overseer.dispatcher?.start();
    expect(awaiting).toMatchObject({ pr_number: PR, summary: "Made the widget faster." });
    const pushed = git(origin.gitDir, "rev-parse", `refs/heads/${awaiting.branch}`);
    expect(pushed).toBe(awaiting.pr_head_sha);
    expect(git(origin.gitDir, "show", `${pushed}:widget.txt`)).toBe("faster");
    await app.settleOutbox();
    expect(scope.pendingMocks()).toEqual([]);

    const done = nock(API)
      .get(`${REPO_PATH}/pulls/${PR}`)
      .reply(200, function () {
        count("GET", this.req.path);
        return {
          number: PR,
          html_url: `https://github.com/${OWNER}/${REPO}/pull/${PR}`,
          state: "closed",
          merged: true,
          merge_commit_sha: MERGE_SHA,
          merged_at: new Date().toISOString(),
          merged_by: { login: "octocat" },
          head: { ref: awaiting.branch, sha: pushed, repo: { id: labeled.repository.id } },
        };
      })
      .patch(`${REPO_PATH}/issues/comments/5001`)
      .reply(200, function () {
        count("PATCH", this.req.path);
        return {};
      })
      .post(`${REPO_PATH}/issues/${ISSUE}/labels`, { labels: ["overseer:done"] })
      .reply(200, function () {
        count("POST", this.req.path);
        return [];
      })
      .delete(`${REPO_PATH}/issues/${ISSUE}/labels/overseer%3Aawaiting-merge`)
      .reply(200, function () {
        count("DELETE", this.req.path);
        return [];
      })
      .post(`${REPO_PATH}/issues/${ISSUE}/comments`, (body) => {
        completions.push(body.body);
        return true;
      })
      .reply(201, function () {
        count("POST", this.req.path);
        return { id: 5002 };
      });

    const closed = examplePayload("pull_request", "closed");
    closed.pull_request.number = PR;
    closed.pull_request.merged = true;
    closed.pull_request.head.ref = awaiting.branch;
    closed.repository.clone_url = origin.cloneUrl;
    await app.overseer.dispatcher?.stop();
    expect((await app.send("pull_request", closed)).status).toBe(202);
    const finished = await waitForState("done");
    await app.overseer.dispatcher?.start();
    expect(finished).toMatchObject({
      merge_commit_sha: MERGE_SHA,
      merged_by: "octocat",
      attempts: 1,
    });
    await app.settleOutbox();
    expect(done.pendingMocks()).toEqual([]);
    expect(completions).toHaveLength(1);
    expect(completions[0]).toContain(MERGE_SHA);

    const runs = await db.pool.query(
      "SELECT state, exit_code, head_sha FROM runs WHERE task_id = $1",
      [finished.id],
    );
    expect(runs.rows).toEqual([{ state: "succeeded", exit_code: 0, head_sha: pushed }]);
    console.log(
      `GitHub API calls for the whole lifecycle: ${calls.length}\n  ${calls.join("\n  ")}`,
    );
    expect(calls.length).toBeLessThanOrEqual(13);
  });
});
