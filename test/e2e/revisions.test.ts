import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, startGitServer } from "../support/git-http.js";
import {
  ageConfigReads,
  examplePayload,
  startTestApp,
  type TestApp,
  useGithubHost,
} from "../support/github-app.js";
import { GithubFake, type RecordedCall } from "../support/github-fake.js";

/**
 * Revisions end to end: Probot with signed webhooks from GitHub's example payloads, the
 * runner with a real worker process and a real git origin, GitHub's API played by a
 * stateful fake behind nock.
 */

const OWNER = "Codertocat";
const REPO = "Hello-World";

let db: TestDatabase;
let app: TestApp;
let origin: GitServer;
let cloneUrl: string;
let home: string;
let github: GithubFake;
let modeFile: string;
let controlDir: string;
let releaseFile: string;

/**
 * The worker: `mode` says what it does. `commit` adds a commit; `gated` does too, once the
 * test creates the release file (so the test can watch the revision in progress), leaving a
 * draft file uncommitted meanwhile; `nochange`
 * looks and leaves. It ends with a Claude Code style result line (cost, turns, message).
 */
function workerScript(): string {
  return [
    `mode=$(cat ${modeFile} 2>/dev/null || echo commit)`,
    `if [ "$mode" = gated ]; then echo "draft $$" >> notes.txt; i=0; while [ ! -e ${releaseFile} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; fi`,
    `if [ "$mode" = nochange ]; then echo "Looked around; nothing to change."; exit 0; fi`,
    'echo "change $$" >> widget.txt',
    "git add -A",
    `git -c user.name=agent -c user.email=agent@example.com commit -qm "Agent run ($mode)"`,
    'echo "Changed the widget." > "$OVERSEER_SUMMARY_FILE"',
    `echo '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"I renamed the widget as asked."}]}}'`,
    `echo '{"type":"result","subtype":"success","total_cost_usd":0.42,"num_turns":7,"result":"I renamed the widget as asked."}'`,
  ].join("\n");
}

beforeAll(async () => {
  db = await createTestDatabase();
  origin = await startGitServer({ tokens: ["ghs_fake"] });
  ({ cloneUrl } = await origin.createRepo(OWNER, REPO));
  // Overseer's git goes only to the configured GitHub host: the stand-in is it.
  useGithubHost(origin);
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-revisions-"));
  // Outside OVERSEER_HOME, which a sandboxed worker never sees; named in its profile.
  const control = await mkdtemp(path.join(os.tmpdir(), "overseer-revisions-control-"));
  controlDir = control;
  modeFile = path.join(control, "mode");
  releaseFile = path.join(control, "release");
  const workers = path.join(home, "workers.yml");
  await writeFile(
    workers,
    `default: script\nprofiles:\n  script:\n    command: [sh, -c, ${JSON.stringify(workerScript())}]\n    timeout: 1m\n    grace: 1s\n    log_format: claude-stream-json\n    sandbox:\n      readable: [${controlDir}]\n`,
  );
  github = new GithubFake(OWNER, REPO);
  github.install();
  app = await startTestApp(
    db.url,
    {
      OVERSEER_HOME: home,
      OVERSEER_WORKERS: workers,
      // Production's default: edits queued within it are sent once.
      OVERSEER_OUTBOX_SETTLE: "2s",
      OVERSEER_HEARTBEAT_INTERVAL: "500ms",
      OVERSEER_PUBLIC_URL: "https://overseer.example.com",
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

beforeEach(async () => {
  github.install();
  await writeFile(modeFile, "commit");
  await rm(releaseFile, { force: true });
});

// ---------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------

async function taskRow(issue: number) {
  return (await db.pool.query("SELECT * FROM tasks WHERE issue_number = $1", [issue])).rows[0];
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

function waitForTask(
  issue: number,
  check: (row: Record<string, unknown>) => boolean,
  what: string,
) {
  return waitFor(`task ${issue}: ${what}`, async () => {
    const row = await taskRow(issue);
    return row && check(row) ? row : null;
  });
}

function repository() {
  const payload = examplePayload("issues", "labeled");
  return { ...payload.repository, clone_url: cloneUrl, default_branch: "main" };
}

async function label(issue: number, pr: number) {
  github.issues.set(issue, { title: `Make widget ${issue} faster`, body: "It is slow." });
  github.nextPullNumber = pr;
  const payload = examplePayload("issues", "labeled");
  payload.issue.number = issue;
  payload.issue.title = `Make widget ${issue} faster`;
  payload.label = { ...payload.label, name: "overseer" };
  payload.issue.labels = [payload.label];
  payload.repository = repository();
  expect((await app.send("issues", payload)).status).toBe(202);
  const row = await waitForTask(issue, (r) => r.state === "awaiting_merge", "awaiting merge");
  await app.settleOutbox();
  return row;
}

/** A comment on the PR (issue_comment.created with the issue being the PR). */
async function commentOnPull(pr: number, body: string, login = "maintainer", id = pr * 10) {
  const payload = examplePayload("issue_comment", "created");
  payload.issue.number = pr;
  payload.issue.title = "The agent's PR";
  payload.issue.pull_request = {
    url: `https://api.github.com/repos/${OWNER}/${REPO}/pulls/${pr}`,
    html_url: `https://github.com/${OWNER}/${REPO}/pull/${pr}`,
  };
  payload.comment.id = id;
  payload.comment.body = body;
  payload.comment.user = { ...payload.comment.user, login, type: "User" };
  payload.sender = { ...payload.sender, login, type: "User" };
  payload.repository = repository();
  expect((await app.send("issue_comment", payload)).status).toBe(202);
}

async function merge(issue: number, pr: number) {
  const row = await taskRow(issue);
  const pull = github.pulls.get(pr);
  if (!pull) throw new Error(`no PR ${pr}`);
  Object.assign(pull, {
    state: "closed",
    merged: true,
    merge_commit_sha: "6dcb09b5b57875f334f61aebed695e2e4193db5e",
    merged_at: new Date().toISOString(),
    head: { ref: row.branch, sha: row.pr_head_sha },
  });
  const payload = examplePayload("pull_request", "closed");
  payload.pull_request.number = pr;
  payload.pull_request.merged = true;
  payload.pull_request.head.ref = row.branch;
  payload.repository = repository();
  expect((await app.send("pull_request", payload)).status).toBe(202);
  await waitForTask(issue, (r) => r.state === "done", "done");
  await app.settleOutbox();
}

function originSha(branch: string): string {
  return origin.git(OWNER, REPO, "rev-parse", `refs/heads/${branch}`);
}

async function runsOf(taskId: number) {
  return (await db.pool.query("SELECT * FROM runs WHERE task_id = $1 ORDER BY id", [taskId])).rows;
}

function statusComment(issue: number): string {
  const found = [...github.comments.values()].find(
    (comment) => comment.issue === issue && comment.body.startsWith("<!-- overseer:status"),
  );
  return found?.body ?? "";
}

function describeCalls(calls: RecordedCall[]): string[] {
  return calls
    .filter((call) => !call.path.endsWith("/access_tokens"))
    .map((call) => `${call.method} ${call.path.replace(`/repos/${OWNER}/${REPO}`, "")}`);
}

const counts: Record<string, string[]> = {};

// ---------------------------------------------------------------------------------------

describe("a revision asked for on the PR", () => {
  it("without a revision: label → PR → merge, for the API-call count", async () => {
    const start = github.calls.length;
    await label(31, 131);
    await merge(31, 131);
    counts.withoutRevision = describeCalls(github.calls.slice(start));
    expect(github.unexpected).toEqual([]);
    // The check run was created once, on the PR's commit, and says the work is ready.
    const runs = github.checkRuns.filter((run) => run.external_id?.startsWith("overseer-task-"));
    const task = await taskRow(31);
    expect(runs.filter((run) => run.head_sha === task.pr_head_sha)).toMatchObject([
      { name: "overseer", status: "completed", conclusion: "success" },
    ]);
  }, 90_000);

  it("adds a commit to the same PR; the prompt holds the request, the unresolved review comments and the conversation; the check run goes in progress, then completed with the summary", async () => {
    const start = github.calls.length;
    const first = await label(32, 132);
    const firstSha = first.pr_head_sha as string;
    expect(originSha(first.branch)).toBe(firstSha);

    // Review feedback on the PR: one thread left open, one resolved on GitHub.
    const at = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString();
    github.reviewComments.set(132, [
      {
        id: 9001,
        path: "src/widget.ts",
        line: 12,
        user: { login: "reviewer" },
        author_association: "MEMBER",
        body: "Call it gadget here.",
        created_at: at(0),
      },
      {
        id: 9003,
        in_reply_to_id: 9001,
        path: "src/widget.ts",
        line: 12,
        user: { login: "author" },
        author_association: "OWNER",
        body: "And in the docs too.",
        created_at: at(0),
      },
      {
        id: 9002,
        path: "README.md",
        line: 3,
        user: { login: "reviewer" },
        author_association: "MEMBER",
        body: "Typo here (already fixed by hand).",
        created_at: at(0),
      },
    ]);
    github.conversation.set(132, [
      {
        id: 8001,
        user: { login: "watcher" },
        author_association: "NONE",
        body: "Please keep the old name as an alias.",
        created_at: at(0),
      },
    ]);
    const resolved = examplePayload("pull_request_review_thread", "resolved");
    resolved.pull_request.number = 132;
    resolved.pull_request.head = { ...resolved.pull_request.head, ref: first.branch };
    resolved.thread = {
      node_id: "PRRT_resolved",
      comments: [{ ...resolved.thread.comments[0], id: 9002 }],
    };
    resolved.repository = repository();
    expect((await app.send("pull_request_review_thread", resolved)).status).toBe(202);

    await writeFile(modeFile, "gated");
    await commentOnPull(132, "/revise Rename the widget to gadget.\n\nKeep the tests green.");
    // The revision is running: the check run on the PR's commit says so.
    const inProgress = await waitFor("a check run in progress", async () =>
      github.checkRuns.find((run) => run.head_sha === firstSha && run.status === "in_progress"),
    );
    expect(inProgress.output?.title).toBe("Revision 1 of 5 is running");
    expect(inProgress.details_url).toBe(`https://overseer.example.com/tasks/${first.id}`);
    const running = await taskRow(32);
    expect(running).toMatchObject({ state: "running", revisions: 1, attempts: 1 });
    await writeFile(releaseFile, "go");

    const revised = await waitForTask(
      32,
      (r) => r.state === "awaiting_merge" && r.revisions === 1 && !r.revision_pending,
      "revised",
    );
    await app.settleOutbox();
    expect(revised).toMatchObject({ pr_number: 132, attempts: 1, last_error: null });
    // One new commit on the same branch and PR, on top of the first run's.
    const secondSha = originSha(revised.branch);
    expect(revised.pr_head_sha).toBe(secondSha);
    expect(secondSha).not.toBe(firstSha);
    expect(origin.git(OWNER, REPO, "rev-list", "--count", `${firstSha}..${secondSha}`)).toBe("1");
    expect(origin.git(OWNER, REPO, "merge-base", "--is-ancestor", firstSha, secondSha)).toBe("");
    expect(
      github.callsFor((call) => call.method === "POST" && call.path.endsWith("/pulls")),
    ).toHaveLength(2);

    const [firstRun, revision] = await runsOf(first.id);
    expect(firstRun).toMatchObject({ state: "succeeded", revision: null, profile: "script" });
    expect(revision).toMatchObject({
      state: "succeeded",
      revision: 1,
      attempt: 1,
      start_sha: firstSha,
      head_sha: secondSha,
      agent_turns: 7,
      agent_last_message: "I renamed the widget as asked.",
    });
    expect(Number(revision.agent_cost_usd)).toBe(0.42);

    const prompt = await readFile(
      path.join(home, "runs", String(revision.id), "worker", "prompt.md"),
      "utf8",
    );
    expect(prompt).toContain("revision 1 (of at most 5) of pull request #132");
    expect(prompt).toContain("Rename the widget to gadget.\n\nKeep the tests green.");
    expect(prompt).toContain("### `src/widget.ts` line 12");
    expect(prompt).toContain("Call it gadget here.");
    expect(prompt).toContain("And in the docs too.");
    expect(prompt).toContain("Please keep the old name as an alias.");
    expect(prompt).not.toContain("Typo here");
    expect(prompt).toContain("1 in resolved threads left out");
    // All of it after the line that marks the untrusted part.
    const untrusted = prompt.indexOf(
      "Everything below until the end of this file was written by GitHub users",
    );
    expect(untrusted).toBeGreaterThan(0);
    expect(prompt.indexOf("Call it gadget here.")).toBeGreaterThan(untrusted);
    expect(prompt.indexOf("Rename the widget")).toBeGreaterThan(untrusted);

    // Check runs: the first commit's is superseded, the new commit's says ready, with the summary.
    const onFirst = github.checkRuns.filter((run) => run.head_sha === firstSha);
    expect(onFirst.map((run) => [run.status, run.conclusion])).toEqual([
      ["completed", "success"],
      ["completed", "neutral"],
    ]);
    const onSecond = github.checkRuns.filter((run) => run.head_sha === secondSha);
    expect(onSecond).toHaveLength(1);
    expect(onSecond[0]).toMatchObject({ status: "completed", conclusion: "success" });
    expect(onSecond[0]?.output?.title).toBe("Revision 1 is pushed; ready for review");
    const summary = onSecond[0]?.output?.summary ?? "";
    expect(summary).toContain("| Attempts | 1 of 3 |");
    expect(summary).toContain("| Revisions | 1 of 5 |");
    expect(summary).toContain("| Turns | 7 |");
    expect(summary).toContain("| Cost | $0.84 in all |");
    expect(summary).toContain("> I renamed the widget as asked.");
    expect(summary).toContain(`[task ${first.id}](https://overseer.example.com/tasks/${first.id})`);
    expect(statusComment(32)).toContain("| Revision | 1 of 5 |");

    const requests = await db.pool.query(
      "SELECT source, author, body, run_id, closed_at FROM revision_requests WHERE task_id = $1",
      [first.id],
    );
    expect(requests.rows).toEqual([
      {
        source: "command",
        author: "maintainer",
        body: "Rename the widget to gadget.\n\nKeep the tests green.",
        run_id: revision.id,
        closed_at: expect.any(Date),
      },
    ]);
    await merge(32, 132);
    counts.withOneRevision = describeCalls(github.calls.slice(start));
    expect(github.unexpected).toEqual([]);
    console.log(
      `GitHub API calls without a revision: ${counts.withoutRevision?.length}\n  ${counts.withoutRevision?.join("\n  ")}\n` +
        `GitHub API calls with one revision: ${counts.withOneRevision.length}\n  ${counts.withOneRevision.join("\n  ")}`,
    );
  }, 120_000);

  it("a revision that makes no commit fails with that reason and leaves the PR as it was; a commenter without write access is refused", async () => {
    const first = await label(33, 133);
    const before = originSha(first.branch);

    github.permissions.set("stranger", "read");
    await commentOnPull(133, "/revise make it worse", "stranger", 13301);
    await app.settleOutbox();
    expect(await taskRow(33)).toMatchObject({ state: "awaiting_merge", revisions: 0 });
    const refusal = [...github.comments.values()].find(
      (comment) => comment.issue === 133 && comment.body.includes("@stranger"),
    );
    expect(refusal?.body).toContain("only people with write access or higher can command Overseer");

    await writeFile(modeFile, "nochange");
    await commentOnPull(133, "/revise tidy up", "maintainer", 13302);
    const after = await waitForTask(
      33,
      (r) => r.state === "awaiting_merge" && r.revisions === 1 && !r.revision_pending,
      "revision settled",
    );
    await app.settleOutbox();
    expect(after.last_error).toBe(
      "revision 1 failed: the agent made no new commit; the pull request is as it was before it",
    );
    expect(after.pr_head_sha).toBe(before);
    expect(originSha(first.branch)).toBe(before);
    const runs = await runsOf(first.id);
    expect(runs.at(-1)).toMatchObject({ state: "failed", revision: 1, charged: true });
    // The PR's latest check run on its (unchanged) commit says why, without blocking it.
    const latest = github.checkRuns.filter((run) => run.head_sha === before).at(-1);
    expect(latest).toMatchObject({ status: "completed", conclusion: "neutral" });
    expect(latest?.output?.title).toContain("the agent made no new commit");
    expect(statusComment(33)).toContain("the agent made no new commit");
    expect(github.unexpected).toEqual([]);
  }, 90_000);

  it("a review asking for changes starts a revision with revise_on_review; max_revisions caps them apart from attempts", async () => {
    github.config = "revise_on_review: true\nmax_revisions: 1\n";
    // Added minutes after the earlier tests found no file, so it is read.
    await ageConfigReads(db.pool);
    const first = await label(34, 134);
    github.config = null;

    const review = examplePayload("pull_request_review", "submitted");
    review.review = {
      ...review.review,
      id: 777_001,
      state: "changes_requested",
      body: "Please handle the empty widget.",
      user: { ...review.review.user, login: "reviewer", type: "User" },
    };
    review.sender = { ...review.sender, login: "reviewer", type: "User" };
    review.pull_request.number = 134;
    review.pull_request.head = { ...review.pull_request.head, ref: first.branch };
    review.repository = repository();
    review.installation = examplePayload("issues", "labeled").installation;
    // Anyone may leave a review on a public repository: one by someone who may not command
    // Overseer changes nothing (and gets no answer, a review not being a command).
    github.permissions.set("drive-by", "read");
    const stranger = structuredClone(review);
    stranger.review = {
      ...stranger.review,
      id: 777_000,
      user: { ...stranger.review.user, login: "drive-by" },
    };
    stranger.sender = { ...stranger.sender, login: "drive-by" };
    expect((await app.send("pull_request_review", stranger)).status).toBe(202);
    expect(await taskRow(34)).toMatchObject({ state: "awaiting_merge", revision_pending: false });
    expect(await runsOf(first.id)).toHaveLength(1);

    expect((await app.send("pull_request_review", review)).status).toBe(202);

    const revised = await waitForTask(
      34,
      (r) => r.state === "awaiting_merge" && r.revisions === 1 && !r.revision_pending,
      "revised",
    );
    await app.settleOutbox();
    expect(revised.last_error).toBeNull();
    const revision = (await runsOf(first.id)).at(-1);
    const prompt = await readFile(
      path.join(home, "runs", String(revision.id), "worker", "prompt.md"),
      "utf8",
    );
    expect(prompt).toContain("### Review asking for changes by @reviewer");
    expect(prompt).toContain("Please handle the empty widget.");

    // The cap: a second revision is refused, with the reason, and nothing runs.
    await commentOnPull(134, "/revise once more", "maintainer", 13401);
    await app.settleOutbox();
    const capped = await taskRow(34);
    expect(capped).toMatchObject({
      state: "awaiting_merge",
      revisions: 1,
      revision_pending: false,
    });
    expect(await runsOf(first.id)).toHaveLength(2);
    const reply = [...github.comments.values()].find(
      (comment) => comment.issue === 134 && comment.body.includes("max revisions (1) reached"),
    );
    expect(reply?.body).toContain("cannot /revise: max revisions (1) reached");
    expect(existsSync(path.join(home, "runs", String((revision.id as number) + 1)))).toBe(false);
    expect(github.unexpected).toEqual([]);
  }, 90_000);

  it("/revise in a review comment takes its file and line along; the 👍 goes on the review comment", async () => {
    const first = await label(35, 135);
    const payload = examplePayload("pull_request_review_comment", "created");
    payload.comment = {
      ...payload.comment,
      id: 55_501,
      body: "/revise use a Map here",
      path: "src/lookup.ts",
      line: 7,
      user: { ...payload.comment.user, login: "maintainer", type: "User" },
    };
    payload.sender = { ...payload.sender, login: "maintainer", type: "User" };
    payload.pull_request.number = 135;
    payload.pull_request.head = { ...payload.pull_request.head, ref: first.branch };
    payload.repository = repository();
    expect((await app.send("pull_request_review_comment", payload)).status).toBe(202);
    await waitForTask(
      35,
      (r) => r.state === "awaiting_merge" && r.revisions === 1 && !r.revision_pending,
      "revised",
    );
    await app.settleOutbox();
    const requests = await db.pool.query(
      "SELECT source, body FROM revision_requests WHERE task_id = $1",
      [first.id],
    );
    expect(requests.rows).toEqual([
      {
        source: "review_comment",
        body: "(Written as a review comment on `src/lookup.ts` line 7.)\n\nuse a Map here",
      },
    ]);
    expect(
      github.callsFor(
        (call) => call.method === "POST" && call.path.endsWith("/pulls/comments/55501/reactions"),
      ),
    ).toHaveLength(1);
    expect(github.unexpected).toEqual([]);
  }, 60_000);

  it("/stop during a revision stops it and leaves the PR as it was: no work-in-progress commit reaches it", async () => {
    const first = await label(36, 136);
    const before = originSha(first.branch);
    await writeFile(modeFile, "gated");
    await commentOnPull(136, "/revise add notes", "maintainer", 13601);
    await waitForTask(36, (r) => r.state === "running" && r.revisions === 1, "revision running");
    await waitFor("the draft", async () => {
      const [, run] = await runsOf(first.id);
      return run?.worktree && existsSync(path.join(run.worktree, "notes.txt"));
    });
    await commentOnPull(136, "/stop", "maintainer", 13602);
    const stopped = await waitForTask(
      36,
      (r) => r.state === "awaiting_merge" && !r.revision_pending,
      "revision stopped",
    );
    await app.settleOutbox();
    expect(stopped.last_error).toBe(
      "revision 1 was stopped; the pull request is as it was before it",
    );
    expect(originSha(first.branch)).toBe(before);
    expect((await runsOf(first.id)).at(-1)).toMatchObject({ state: "stopped", revision: 1 });
    const latest = github.checkRuns.filter((run) => run.head_sha === before).at(-1);
    expect(latest).toMatchObject({ status: "completed", conclusion: "neutral" });
    expect(github.unexpected).toEqual([]);
  }, 60_000);

  it("someone pushing to the PR moves the check run to the new head, so a protected branch can still merge", async () => {
    const first = await label(37, 137);
    const theirs = "f".repeat(40);
    const sync = examplePayload("pull_request", "synchronize");
    sync.pull_request.number = 137;
    sync.pull_request.head = { ...sync.pull_request.head, ref: first.branch, sha: theirs };
    sync.repository = repository();
    expect((await app.send("pull_request", sync)).status).toBe(202);
    await waitForTask(37, (r) => r.pr_head_sha === theirs, "the new head recorded");
    await app.settleOutbox();
    expect(github.checkRuns.filter((run) => run.head_sha === theirs)).toMatchObject([
      { name: "overseer", status: "completed", conclusion: "success" },
    ]);
    // The same delivery again, or a push the task already knows of, changes nothing.
    const before = github.checkRuns.length;
    expect((await app.send("pull_request", sync)).status).toBe(202);
    await app.settleOutbox();
    expect(github.checkRuns).toHaveLength(before);
    expect(github.unexpected).toEqual([]);
  }, 60_000);
});
