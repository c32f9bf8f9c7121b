import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import nock from "nock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { upsertRepo } from "../../src/db/repos.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, startGitServer } from "../support/git-http.js";
import {
  API,
  apiPath,
  examplePayload,
  INSTALLATION_ID,
  mockInstallationToken,
  mockRepoConfig,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";
import {
  commentPayload,
  hostRepository,
  labeledPayload,
  mockIssueForPrompt,
  mockPermission,
  mockStickyEffects,
  NAME,
  OWNER,
  REPO_PATH,
  type Repository,
  taskOf,
  waitForState,
} from "../support/scenario.js";

/**
 * `merge: auto` merges only a PR that is open, mergeable with branch protection satisfied
 * (`mergeable_state` clean or has_hooks) and green (every check run and the combined
 * commit status), and a risk-labelled task only after `/approve`. The merge attempts are
 * triggered the real way (check_suite webhooks, or the run reaching awaiting_merge) and
 * decided by the real dispatcher.
 */

const MERGE_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
/** The PR's head lives in the task's own repository (the examples' id). */
const HEAD_REPO = { id: 186853002 };
const HEAD_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const WORKER = [
  "echo faster >> widget.txt",
  "git add -A",
  "git -c user.name=agent -c user.email=agent@example.com commit -qm 'Make the widget faster'",
].join(" && ");

let db: TestDatabase;
let git: GitServer;
let repository: Repository;
let app: TestApp;
let home: string;
let issue = 900;

beforeAll(async () => {
  db = await createTestDatabase();
  git = await startGitServer();
  repository = await hostRepository(git);
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-auto-merge-"));
  const workers = path.join(home, "workers.yml");
  await writeFile(
    workers,
    `default: script\nprofiles:\n  script:\n    command: ${JSON.stringify(["sh", "-c", WORKER])}\n    timeout: 1m\n    grace: 1s\n`,
  );
  app = await startTestApp(
    db.url,
    { OVERSEER_HOME: home, OVERSEER_WORKERS: workers, OVERSEER_OUTBOX_RETRY_BASE: "20ms" },
    "all",
  );
  await upsertRepo(db.pool, {
    githubId: 186853002,
    fullName: repository.fullName,
    installationId: INSTALLATION_ID,
    cloneUrl: repository.cloneUrl,
    defaultBranch: repository.defaultBranch,
  });
});

afterAll(async () => {
  await app?.stop();
  await db?.drop();
  await git?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

const prOf = (n: number) => n + 1_000;
const branchOf = (n: number) => `overseer/${n}-make-it-so`;

/** A task whose run opened its PR: awaiting merge under `merge: auto`. */
async function seedAwaitingMerge(n: number): Promise<number> {
  const result = await db.pool.query<{ id: number }>(
    `INSERT INTO tasks (repo_id, issue_number, title, state, attempts, branch, pr_number, pr_url,
                        config, status_comment_id, state_label, started_at, pr_head_sha)
     SELECT id, $1, 'Make it so', 'awaiting_merge', 1, $2, $3, $4, $5, 42,
            'overseer:awaiting-merge', now() - interval '5 minutes', $6
       FROM repos WHERE github_id = 186853002
     RETURNING id`,
    [
      n,
      branchOf(n),
      prOf(n),
      `https://github.com/${OWNER}/${NAME}/pull/${prOf(n)}`,
      JSON.stringify({ label: "overseer", merge: "auto", mergeMethod: "squash" }),
      // The commit the run pushed: auto-merge merges only that one (or one approved later).
      HEAD_SHA,
    ],
  );
  return result.rows[0]?.id ?? 0;
}

function checkSuiteFor(n: number) {
  const payload = examplePayload("check_suite", "completed");
  payload.check_suite.head_sha = HEAD_SHA;
  payload.check_suite.pull_requests = [
    { number: prOf(n), head: { ref: branchOf(n), sha: HEAD_SHA } },
  ];
  return payload;
}

function openPull(n: number, extra: Record<string, unknown>) {
  return {
    number: prOf(n),
    html_url: `https://github.com/${OWNER}/${NAME}/pull/${prOf(n)}`,
    state: "open",
    draft: false,
    merged: false,
    merge_commit_sha: null,
    merged_at: null,
    merged_by: null,
    mergeable: true,
    mergeable_state: "clean",
    head: { ref: branchOf(n), sha: HEAD_SHA, repo: HEAD_REPO },
    ...extra,
  };
}

async function declinedReasons(taskId: number) {
  const result = await db.pool.query(
    "SELECT actor, detail FROM task_events WHERE task_id = $1 AND event = 'auto_merge_declined'",
    [taskId],
  );
  return result.rows;
}

describe("auto-merge refuses", () => {
  it.each([
    ["failing", "failure"],
    ["still pending", "pending"],
  ])("a PR whose combined commit status is %s, though every check run passed", async (_, state) => {
    issue += 1;
    const taskId = await seedAwaitingMerge(issue);
    mockInstallationToken().persist();
    const scope = nock(API)
      .get(`${REPO_PATH}/pulls/${prOf(issue)}`)
      .reply(200, openPull(issue, {}))
      .get(`${REPO_PATH}/commits/${HEAD_SHA}/check-runs`)
      .query(true)
      .reply(200, {
        total_count: 1,
        check_runs: [{ name: "ci", status: "completed", conclusion: "success" }],
      })
      .get(`${REPO_PATH}/commits/${HEAD_SHA}/status`)
      .query(true)
      .reply(200, {
        state,
        sha: HEAD_SHA,
        total_count: 2,
        statuses: [
          { context: "ci/legacy", state: "success" },
          { context: "deploy/preview", state },
        ],
      });
    expect((await app.send("check_suite", checkSuiteFor(issue))).status).toBe(202);
    await app.settleOutbox();
    expect(scope.isDone()).toBe(true);
    // No PUT …/merge was declared: had it been made, nock would fail the test.
    expect((await taskOf(db.pool, issue))?.state).toBe("awaiting_merge");
    expect(await declinedReasons(taskId)).toEqual([
      {
        actor: "overseer:auto-merge",
        detail: { reason: `commit status is ${state}`, pr: prOf(issue) },
      },
    ]);
  });

  it.each([
    ["blocked", true],
    ["behind", true],
    ["unstable", true],
    ["dirty", false],
  ])(
    "a PR whose mergeable_state is %s, without reading its checks",
    async (mergeableState, mergeable) => {
      issue += 1;
      const taskId = await seedAwaitingMerge(issue);
      mockInstallationToken().persist();
      nock(API)
        .get(`${REPO_PATH}/pulls/${prOf(issue)}`)
        .reply(200, openPull(issue, { mergeable, mergeable_state: mergeableState }));
      expect((await app.send("check_suite", checkSuiteFor(issue))).status).toBe(202);
      await app.settleOutbox();
      expect((await taskOf(db.pool, issue))?.state).toBe("awaiting_merge");
      expect(await declinedReasons(taskId)).toEqual([
        {
          actor: "overseer:auto-merge",
          detail: { reason: `PR is not mergeable (${mergeableState})`, pr: prOf(issue) },
        },
      ]);
    },
  );
});

describe("auto-merge accepts", () => {
  it("a green PR whose mergeable_state is has_hooks, merging exactly its head commit", async () => {
    issue += 1;
    const taskId = await seedAwaitingMerge(issue);
    mockInstallationToken().persist();
    const merges: unknown[] = [];
    const completions: string[] = [];
    nock(API)
      .get(`${REPO_PATH}/pulls/${prOf(issue)}`)
      .reply(200, openPull(issue, { mergeable_state: "has_hooks" }))
      .get(`${REPO_PATH}/commits/${HEAD_SHA}/check-runs`)
      .query(true)
      .reply(200, {
        total_count: 1,
        check_runs: [{ name: "ci", status: "completed", conclusion: "success" }],
      })
      .get(`${REPO_PATH}/commits/${HEAD_SHA}/status`)
      .query(true)
      .reply(200, { state: "pending", sha: HEAD_SHA, total_count: 0, statuses: [] })
      .put(`${REPO_PATH}/pulls/${prOf(issue)}/merge`, (body) => {
        merges.push(body);
        return true;
      })
      .reply(200, { merged: true, sha: MERGE_SHA, message: "Pull Request successfully merged" })
      .get(`${REPO_PATH}/pulls/${prOf(issue)}`)
      .reply(200, {
        ...openPull(issue, {}),
        state: "closed",
        merged: true,
        merge_commit_sha: MERGE_SHA,
        merged_at: new Date().toISOString(),
        merged_by: { login: "overseer[bot]" },
      })
      .patch(`${REPO_PATH}/issues/comments/42`)
      .reply(200, {})
      .post(`${REPO_PATH}/issues/${issue}/labels`, { labels: ["overseer:done"] })
      .reply(200, [])
      .delete(`${REPO_PATH}/issues/${issue}/labels/overseer%3Aawaiting-merge`)
      .reply(200, [])
      .post(`${REPO_PATH}/issues/${issue}/comments`, (body) => {
        completions.push(body.body);
        return true;
      })
      .reply(201, { id: 43 });
    expect((await app.send("check_suite", checkSuiteFor(issue))).status).toBe(202);
    await app.settleOutbox();
    // A commit with no statuses at all reads "pending" with total_count 0: nothing failed.
    expect(merges).toEqual([{ merge_method: "squash", sha: HEAD_SHA }]);
    expect(await taskOf(db.pool, issue)).toMatchObject({
      state: "done",
      merge_commit_sha: MERGE_SHA,
    });
    expect(completions).toHaveLength(1);
    expect(await declinedReasons(taskId)).toEqual([]);
  });
});

describe("auto-merge of a risk-labelled task", () => {
  it("after /approve: the run opens the PR, Overseer merges exactly the pushed commit, done", async () => {
    issue += 1;
    const n = issue;
    const statusId = 720_000 + n;
    mockInstallationToken().persist();
    mockRepoConfig(OWNER, NAME, "merge: auto\nrisk_labels: [risk:high]\n");
    const sticky = mockStickyEffects(n, statusId);
    const labeled = labeledPayload(n, { labels: ["risk:high"], repository });
    expect((await app.send("issues", labeled)).status).toBe(202);
    const waiting = await waitForState(db.pool, n, ["awaiting_approval"]);
    expect(waiting.risk_labelled).toBe(true);

    // A maintainer approves; the runner runs it, pushes, opens the PR.
    mockPermission("approver", "maintain");
    mockIssueForPrompt(n);
    const pr = prOf(n);
    const pushedSha = () => git.git(OWNER, NAME, "rev-parse", `refs/heads/${waiting.branch}`);
    const merges: { sha: string; merge_method: string }[] = [];
    const completions: string[] = [];
    nock(API)
      .post(`${REPO_PATH}/issues/comments/${9_100 + n}/reactions`, { content: "+1" })
      .reply(201, {})
      .post(`${REPO_PATH}/pulls`, (body) => body.head === waiting.branch && body.base === "main")
      .reply(201, () => ({
        number: pr,
        html_url: `https://github.com/${OWNER}/${NAME}/pull/${pr}`,
        head: { sha: pushedSha(), ref: waiting.branch },
      }))
      // The `overseer` check run on the PR's commit.
      .post(`${REPO_PATH}/check-runs`, (body) => body.name === "overseer")
      .reply(201, { id: 9_200 + n })
      .get(`${REPO_PATH}/pulls/${pr}`)
      .reply(200, () =>
        openPull(n, { head: { ref: waiting.branch, sha: pushedSha(), repo: HEAD_REPO } }),
      )
      // The pushed commit is known only once the run has pushed it.
      .get((uri) => apiPath(uri).startsWith(`${REPO_PATH}/commits/${pushedSha()}/check-runs?`))
      .reply(200, {
        total_count: 1,
        check_runs: [{ name: "ci", status: "completed", conclusion: "success" }],
      })
      .get((uri) => apiPath(uri).startsWith(`${REPO_PATH}/commits/${pushedSha()}/status?`))
      .reply(200, { state: "success", total_count: 1, statuses: [{ state: "success" }] })
      .put(`${REPO_PATH}/pulls/${pr}/merge`, (body) => {
        merges.push(body);
        return true;
      })
      .reply(200, { merged: true, sha: MERGE_SHA, message: "Pull Request successfully merged" })
      .get(`${REPO_PATH}/pulls/${pr}`)
      .reply(200, () => ({
        ...openPull(n, { head: { ref: waiting.branch, sha: pushedSha(), repo: HEAD_REPO } }),
        state: "closed",
        merged: true,
        merge_commit_sha: MERGE_SHA,
        merged_at: new Date().toISOString(),
        merged_by: { login: "overseer[bot]" },
      }))
      .post(`${REPO_PATH}/issues/${n}/comments`, (body) => {
        completions.push(body.body);
        return body.body.includes("overseer:completion");
      })
      .reply(201, { id: statusId + 1 });
    const approve = commentPayload(n, "/approve", {
      login: "approver",
      commentId: 9_100 + n,
      repository,
    });
    expect((await app.send("issue_comment", approve)).status).toBe(202);

    const done = await waitForState(db.pool, n, ["done", "failed"]);
    expect(done).toMatchObject({
      state: "done",
      approved_by: "approver",
      pr_number: pr,
      merge_commit_sha: MERGE_SHA,
    });
    await app.settleOutbox();
    expect(merges).toEqual([{ merge_method: "squash", sha: pushedSha() }]);
    expect(done.pr_head_sha).toBe(pushedSha());
    expect(completions).toHaveLength(1);
    expect(completions[0]).toContain(MERGE_SHA);
    expect(sticky.labels.at(-1)).toBe("overseer:done");
    const events = await db.pool.query(
      "SELECT event, to_state, actor FROM task_events WHERE task_id = $1 AND to_state IS NOT NULL ORDER BY id",
      [done.id],
    );
    expect(events.rows.map((row) => [row.event, row.to_state, row.actor])).toEqual([
      ["labeled", "awaiting_approval", "github:Codertocat"],
      ["command:approve", "queued", "github:approver"],
      ["claimed", "running", expect.stringMatching(/^runner:/)],
      ["run_succeeded", "awaiting_merge", expect.stringMatching(/^runner:/)],
      ["pr_merged", "done", "overseer:auto-merge"],
    ]);
  });
});
