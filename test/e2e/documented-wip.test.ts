import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import nock from "nock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, git as gitIn, startGitServer } from "../support/git-http.js";
import {
  API,
  ageConfigReads,
  mockInstallationToken,
  mockRepoConfig,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";
import { expectGithubCallsDone } from "../support/network.js";
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
  runsOf,
  waitFor,
  waitForState,
  waitForWorker,
} from "../support/scenario.js";

/**
 * "With commit_on_stop (default), what the worker changed is committed and pushed as work in
 * progress, so /retry continues from it": `/stop` by webhook into the running app, a real
 * runner and worker, the git stand-in as origin; and `commit_on_stop: false` leaving none.
 */

let db: TestDatabase;
let git: GitServer;
let repository: Repository;
let app: TestApp;
let home: string;
let marks: string;

/**
 * The first attempt drafts a file and waits to be stopped; a later one notes the commit
 * its worktree starts at, finishes the draft and commits.
 */
const WORKER = [
  'mark="$MARKS/$OVERSEER_ISSUE"',
  'if [ -e "$mark.started" ]; then',
  '  git rev-parse HEAD > "$mark.head"',
  "  echo finished >> draft.txt",
  "  git add -A",
  "  git -c user.name=agent -c user.email=agent@example.com commit -qm 'Finish the draft'",
  "else",
  '  touch "$mark.started"',
  "  echo draft > draft.txt",
  "  echo ready",
  "  exec sleep 1000",
  "fi",
].join("\n");

beforeAll(async () => {
  db = await createTestDatabase();
  git = await startGitServer();
  repository = await hostRepository(git);
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-wip-"));
  // Outside OVERSEER_HOME, which no sandboxed worker sees; the profile makes it writable.
  marks = await mkdtemp(path.join(os.tmpdir(), "overseer-wip-marks-"));
  const workers = path.join(home, "workers.yml");
  const script = `MARKS=${JSON.stringify(marks)}\n${WORKER}`;
  await writeFile(
    workers,
    `default: drafter\nprofiles:\n  drafter:\n    command: ${JSON.stringify(["sh", "-c", script])}\n    timeout: 1m\n    grace: 1s\n    sandbox:\n      writable: [${JSON.stringify(marks)}]\n`,
  );
  app = await startTestApp(
    db.url,
    { OVERSEER_HOME: home, OVERSEER_WORKERS: workers, OVERSEER_HEARTBEAT_INTERVAL: "500ms" },
    "all",
  );
});

afterAll(async () => {
  await app?.stop();
  await db?.drop();
  await git?.stop();
  if (home) await rm(home, { recursive: true, force: true });
  if (marks) await rm(marks, { recursive: true, force: true });
});

/** The branch on origin (the git stand-in), or null when it was never pushed. */
function originSha(branch: string): string | null {
  const line = git.git(
    OWNER,
    NAME,
    "for-each-ref",
    "--format=%(objectname)",
    `refs/heads/${branch}`,
  );
  return line === "" ? null : line;
}

/** Labels the issue and waits until its first attempt has drafted the file and waits. */
async function draftingTask(issue: number, config: string | null) {
  mockInstallationToken().persist();
  // A config read minutes after the previous test's: the file is asked for again.
  await ageConfigReads(db.pool);
  mockRepoConfig(OWNER, NAME, config);
  mockIssueForPrompt(issue);
  const sticky = mockStickyEffects(issue, 730_000 + issue);
  expect((await app.send("issues", labeledPayload(issue, { repository }))).status).toBe(202);
  const task = await waitForState(db.pool, issue, ["running", "failed"]);
  expect(task.state).toBe("running");
  const run = await waitForWorker(db.pool, task.id);
  await waitFor("the draft", async () => existsSync(path.join(run.worktree, "draft.txt")));
  await app.settleOutbox();
  expect(sticky.labels.at(-1)).toBe("overseer:running");
  expectGithubCallsDone();
  return { task, run };
}

/** A maintainer's command in a new comment, with its 👍 and the sticky comment's edits. */
async function command(issue: number, body: string, commentId: number) {
  mockInstallationToken().persist();
  mockPermission(`maintainer-${commentId}`);
  nock(API)
    .post(`${REPO_PATH}/issues/comments/${commentId}/reactions`, { content: "+1" })
    .reply(201, {});
  const sticky = mockStickyEffects(issue, 730_000 + issue, { existing: true });
  const payload = commentPayload(issue, body, {
    login: `maintainer-${commentId}`,
    commentId,
    repository,
  });
  expect((await app.send("issue_comment", payload)).status).toBe(202);
  return sticky;
}

async function settledRun(taskId: number, attempt: number) {
  return waitFor(`run ${attempt} of task ${taskId} to settle`, async () => {
    const run = (await runsOf(db.pool, taskId))[attempt - 1];
    return run && run.state !== "running" ? run : undefined;
  });
}

describe("the work-in-progress commit", () => {
  it("/stop commits and pushes what the worker left; /retry's attempt starts from that commit", async () => {
    const issue = 1001;
    const { task, run } = await draftingTask(issue, null);
    const base = git.git(OWNER, NAME, "rev-parse", "refs/heads/main");

    const stopping = await command(issue, "/stop", 11);
    expect((await settledRun(task.id, 1)).state).toBe("stopped");
    expect((await waitForState(db.pool, issue, ["stopped"])).attempts).toBe(1);
    await app.settleOutbox();
    expect(stopping.labels.at(-1)).toBe("overseer:stopped");
    expectGithubCallsDone();

    const wip = originSha(task.branch);
    expect(wip).not.toBeNull();
    const [subject, author, parent] = git
      .git(OWNER, NAME, "log", "-1", "--format=%s%n%an <%ae>%n%P", task.branch)
      .split("\n");
    expect(subject).toMatch(/^WIP \(Overseer\): stopped/);
    expect(author).toBe("Overseer <overseer@users.noreply.github.com>");
    expect(parent).toBe(base);
    expect(git.git(OWNER, NAME, "show", `${task.branch}:draft.txt`)).toBe("draft");

    // /retry: the next attempt's worktree starts at the work-in-progress commit.
    mockIssueForPrompt(issue);
    const opened = nock(API)
      .post(`${REPO_PATH}/pulls`, (body) => body.head === task.branch && body.base === "main")
      .reply(201, {
        number: 1_501,
        html_url: `https://github.com/${OWNER}/${NAME}/pull/1501`,
        head: { sha: "0".repeat(40) },
      })
      // The `overseer` check run on the PR's commit.
      .post(`${REPO_PATH}/check-runs`, (body) => body.name === "overseer")
      .reply(201, { id: 1_501_001 });
    const retrying = await command(issue, "/retry", 12);
    const finished = await waitForState(db.pool, issue, ["awaiting_merge", "failed"]);
    expect(finished).toMatchObject({ state: "awaiting_merge", attempts: 2, last_error: null });
    expect((await readFile(path.join(marks, `${issue}.head`), "utf8")).trim()).toBe(wip);
    const second = await settledRun(task.id, 2);
    expect(second).toMatchObject({ state: "succeeded", worktree: run.worktree });
    const tip = originSha(task.branch);
    expect(tip).toBe(second.head_sha);
    expect(git.git(OWNER, NAME, "rev-parse", `${task.branch}^`)).toBe(wip);
    expect(git.git(OWNER, NAME, "show", `${task.branch}:draft.txt`)).toBe("draft\nfinished");
    await app.settleOutbox();
    expect(opened.isDone()).toBe(true);
    expect(retrying.labels.at(-1)).toBe("overseer:awaiting-merge");
  });

  it("commit_on_stop: false leaves no commit, and the worker's changes where they were", async () => {
    const issue = 1002;
    const { task, run } = await draftingTask(issue, "commit_on_stop: false\n");
    const base = git.git(OWNER, NAME, "rev-parse", "refs/heads/main");

    const stopping = await command(issue, "/stop", 21);
    expect((await settledRun(task.id, 1)).state).toBe("stopped");
    await waitForState(db.pool, issue, ["stopped"]);
    await app.settleOutbox();
    expect(stopping.labels.at(-1)).toBe("overseer:stopped");

    expect(originSha(task.branch)).toBeNull();
    expect(gitIn(run.worktree, "rev-parse", "HEAD")).toBe(base);
    expect(gitIn(run.worktree, "status", "--porcelain")).toBe("?? draft.txt");
  });
});
