import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { RepoRow } from "../../src/db/repos.js";
import type { WatchdogContext } from "../../src/watchdog/detector.js";
import { githubDetectors } from "../../src/watchdog/reconcile/index.js";
import {
  MISSED_CANCEL,
  MISSED_LABEL,
  missedCancel,
  missedLabel,
} from "../../src/watchdog/reconcile/labels.js";
import {
  MISSED_PR_CLOSE,
  MISSED_PR_REOPEN,
  missedPullClose,
  missedPullReopen,
} from "../../src/watchdog/reconcile/pulls.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type RepoModel, type StandIn, startGithubStandIn } from "../support/github-stand-in.js";
import { answeredByStandIn } from "../support/network.js";
import { detectAndRepair, knownRepo, watchdogContext } from "../support/watchdog.js";

/**
 * Missed webhooks: each inconsistency is made on the GitHub stand-in without its webhook
 * (GitHub dropped it), then one detection and repair runs, as one watchdog tick would.
 */

let db: TestDatabase;
let github: StandIn;
let ctx: WatchdogContext;
let repo: RepoModel;
let known: RepoRow;

beforeAll(async () => {
  db = await createTestDatabase();
  github = await startGithubStandIn();
  answeredByStandIn(github.host);
  ctx = watchdogContext(db.pool, { github, databaseUrl: db.url });
});
afterAll(async () => {
  await github?.stop();
  await db?.drop();
});

let repoCount = 0;
beforeEach(async () => {
  // A repository per test: each test's polls see only its own issues.
  repo = await github.createRepo("octo", `widgets-${++repoCount}`);
  known = await knownRepo(db.pool, github, repo);
});

async function seedTask(
  issue: number,
  state: string,
  extra: { branch?: string; prNumber?: number; lastError?: string } = {},
): Promise<number> {
  const result = await db.pool.query<{ id: number }>(
    `INSERT INTO tasks (repo_id, issue_number, title, state, attempts, branch, pr_number, pr_url,
                        config, state_label, last_error, started_at)
     VALUES ($1, $2, 'Make it so', $3, 1, $4, $5, $6, '{"label":"overseer"}', $7, $8, $9)
     RETURNING id`,
    [
      known.id,
      issue,
      state,
      extra.branch ?? `overseer/${issue}-make-it-so`,
      extra.prNumber ?? null,
      extra.prNumber ? `${github.url}/${repo.fullName}/pull/${extra.prNumber}` : null,
      `overseer:${state.replace("_", "-")}`,
      extra.lastError ?? null,
      state === "queued" ? null : new Date(),
    ],
  );
  return result.rows[0]?.id ?? 0;
}

/** An issue with the trigger label, its branch pushed, its PR open, its task awaiting merge. */
async function awaitingMerge(): Promise<{ taskId: number; issue: number; pr: number }> {
  const issue = github.openIssue(repo, "Make it so", { labels: ["overseer"] });
  const branch = `overseer/${issue.number}-make-it-so`;
  github.git.git(repo.owner, repo.name, "branch", branch, "main");
  const pull = github.openPull(repo, { head: branch, body: `Closes #${issue.number}` });
  const taskId = await seedTask(issue.number, "awaiting_merge", { branch, prNumber: pull.number });
  await db.pool.query("UPDATE tasks SET pr_head_sha = $2 WHERE id = $1", [taskId, pull.headSha]);
  return { taskId, issue: issue.number, pr: pull.number };
}

async function taskRow(id: number) {
  const result = await db.pool.query(
    `SELECT state, last_error AS "lastError", merge_commit_sha AS "mergeCommitSha",
            merged_by AS "mergedBy", pr_number AS "prNumber", branch
       FROM tasks WHERE id = $1`,
    [id],
  );
  return result.rows[0];
}

async function events(taskId: number) {
  const result = await db.pool.query<{ event: string; actor: string; toState: string }>(
    `SELECT event, actor, to_state AS "toState" FROM task_events WHERE task_id = $1 ORDER BY id`,
    [taskId],
  );
  return result.rows;
}

describe("a merged PR whose webhook never arrived", () => {
  it("is recorded as the merge, through the webhook's evidence path, with the API's evidence", async () => {
    const { taskId, pr } = await awaitingMerge();
    await missedPullClose.detect(ctx); // the PR as it was, before the merge
    await github.merge(repo, pr, "octocat", { deliver: false });
    const merged = repo.pulls.get(pr);

    const pass = await detectAndRepair(ctx, [missedPullClose]);
    expect(pass.findings.map((finding) => [finding.kind, finding.taskId, finding.safe])).toEqual([
      [MISSED_PR_CLOSE, taskId, true],
    ]);
    expect(pass.outcomes[0]?.outcome).toEqual({
      repaired: true,
      detail: "merge recorded; task done",
    });
    expect(await taskRow(taskId)).toMatchObject({
      state: "done",
      mergeCommitSha: merged?.mergeCommitSha,
      mergedBy: "octocat",
      prNumber: pr,
    });
    expect((await events(taskId)).at(-1)).toEqual({
      event: "pr_merged",
      actor: `watchdog:${MISSED_PR_CLOSE}`,
      toState: "done",
    });
    // Settled: the next pass finds nothing (the task no longer awaits a merge).
    expect((await detectAndRepair(ctx, githubDetectors)).findings).toEqual([]);
  });

  it("a merged PR whose head is not the task's branch is no evidence: nothing is found", async () => {
    const { taskId, pr } = await awaitingMerge();
    // The PR at the task's recorded number is someone else's (another head branch).
    await db.pool.query("UPDATE tasks SET branch = 'overseer/someone-elses' WHERE id = $1", [
      taskId,
    ]);
    await github.merge(repo, pr, "mallory", { deliver: false });
    const pass = await detectAndRepair(ctx, [missedPullClose]);
    expect(pass.findings).toEqual([]);
    expect((await taskRow(taskId))?.state).toBe("awaiting_merge");
    // Leave nothing behind for the other tests' passes over every repository.
    await db.pool.query("UPDATE tasks SET state = 'cancelled', finished_at = now() WHERE id = $1", [
      taskId,
    ]);
  });
});

describe("a PR closed unmerged, then reopened, both webhooks missed", () => {
  it("fails the task as the close would, then resumes it as the reopen would", async () => {
    const { taskId, pr } = await awaitingMerge();
    await github.setPullState(repo, pr, "closed", "octocat", { deliver: false });
    const closed = await detectAndRepair(ctx, [missedPullClose]);
    expect(closed.outcomes.map(({ outcome }) => outcome.repaired)).toEqual([true]);
    expect(await taskRow(taskId)).toMatchObject({
      state: "failed",
      lastError: "PR closed without merge",
    });
    expect((await events(taskId)).at(-1)).toMatchObject({
      event: "pr_closed_unmerged",
      actor: `watchdog:${MISSED_PR_CLOSE}`,
    });

    await github.setPullState(repo, pr, "open", "octocat", { deliver: false });
    const reopened = await detectAndRepair(ctx, [missedPullClose, missedPullReopen]);
    expect(reopened.findings.map((finding) => finding.kind)).toEqual([MISSED_PR_REOPEN]);
    expect(reopened.outcomes[0]?.outcome.repaired).toBe(true);
    expect(await taskRow(taskId)).toMatchObject({ state: "awaiting_merge", lastError: null });
    expect((await events(taskId)).at(-1)).toEqual({
      event: "pr_reopened",
      actor: `watchdog:${MISSED_PR_REOPEN}`,
      toState: "awaiting_merge",
    });
    // The branch, PR number and earlier events are all still there.
    expect(await taskRow(taskId)).toMatchObject({ prNumber: pr });
    expect((await events(taskId)).map((event) => event.event)).toEqual([
      "pr_closed_unmerged",
      "pr_reopened",
    ]);
  });
});

describe("the trigger label removed, or the issue closed, while the webhook was missed", () => {
  it("cancels the task when a commander removed the label", async () => {
    const issue = github.openIssue(repo, "Make it so", { labels: ["overseer"] });
    const taskId = await seedTask(issue.number, "queued");
    await github.unlabel(repo, issue.number, "overseer", "octocat", { deliver: false });
    const pass = await detectAndRepair(ctx, [missedCancel]);
    expect(pass.findings.map((finding) => [finding.kind, finding.taskId])).toEqual([
      [MISSED_CANCEL, taskId],
    ]);
    expect(pass.outcomes[0]?.outcome).toEqual({
      repaired: true,
      detail: "task cancelled (unlabeled by octocat)",
    });
    expect(await taskRow(taskId)).toMatchObject({ state: "cancelled" });
    expect((await events(taskId)).at(-1)).toEqual({
      event: "unlabeled",
      actor: `watchdog:${MISSED_CANCEL}`,
      toState: "cancelled",
    });
  });

  it("cancels the task when the issue was closed", async () => {
    const issue = github.openIssue(repo, "Make it so", { labels: ["overseer"] });
    const taskId = await seedTask(issue.number, "failed", { lastError: "exit 1" });
    await github.closeIssue(repo, issue.number, "octocat", { deliver: false });
    const pass = await detectAndRepair(ctx, [missedCancel]);
    expect(pass.outcomes.map(({ outcome }) => outcome)).toEqual([
      { repaired: true, detail: "task cancelled (issue closed by octocat)" },
    ]);
    expect((await events(taskId)).at(-1)).toEqual({
      event: "issue_closed",
      actor: `watchdog:${MISSED_CANCEL}`,
      toState: "cancelled",
    });
  });

  it("refuses a removal by someone who may not cancel, once, as the webhook would", async () => {
    const issue = github.openIssue(repo, "Make it so", { labels: ["overseer"] });
    const taskId = await seedTask(issue.number, "queued");
    repo.permissions.set("drive-by", "read");
    await github.unlabel(repo, issue.number, "overseer", "drive-by", { deliver: false });
    const pass = await detectAndRepair(ctx, [missedCancel]);
    expect(pass.outcomes.map(({ outcome }) => outcome.repaired)).toEqual([false]);
    expect(pass.outcomes[0]?.outcome.detail).toMatch(/^refused: drive-by may not cancel/);
    expect(await taskRow(taskId)).toMatchObject({ state: "queued" });
    const replies = await db.pool.query(
      "SELECT payload->>'body' AS body FROM outbox WHERE task_id = $1 AND kind = 'reply'",
      [taskId],
    );
    expect(replies.rows).toEqual([{ body: expect.stringContaining("@drive-by") }]);
    // Decided: the same removal is not found again.
    expect((await detectAndRepair(ctx, [missedCancel])).findings).toEqual([]);
  });

  it("a task queued by /run after the label was removed is not cancelled by that removal", async () => {
    const issue = github.openIssue(repo, "Make it so", { labels: ["overseer"] });
    await github.unlabel(repo, issue.number, "overseer", "octocat", { deliver: false });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const taskId = await seedTask(issue.number, "queued");
    expect((await detectAndRepair(ctx, [missedCancel])).findings).toEqual([]);
    expect(await taskRow(taskId)).toMatchObject({ state: "queued" });
  });

  it("a merged PR that closed the issue settles as the merge, never as a cancel", async () => {
    const { taskId, issue, pr } = await awaitingMerge();
    await github.merge(repo, pr, "octocat", { deliver: false });
    await github.closeIssue(repo, issue, "octocat", { deliver: false });
    const pass = await detectAndRepair(ctx, githubDetectors);
    expect(pass.findings.map((finding) => finding.kind)).toEqual([MISSED_PR_CLOSE]);
    expect(await taskRow(taskId)).toMatchObject({ state: "done" });
  });
});

describe("the trigger label on an open issue with no task", () => {
  it("queues the task as the labeled webhook would, once", async () => {
    const issue = github.openIssue(repo, "Make it so");
    await github.label(repo, issue.number, "overseer", "octocat", { deliver: false });
    const pass = await detectAndRepair(ctx, [missedLabel]);
    expect(pass.findings.map((finding) => [finding.kind, finding.subject, finding.safe])).toEqual([
      [MISSED_LABEL, `${repo.fullName}#${issue.number}`, true],
    ]);
    expect(pass.outcomes[0]?.outcome.repaired).toBe(true);
    const tasks = await db.pool.query<{ id: number; state: string; title: string }>(
      "SELECT id, state, title FROM tasks WHERE repo_id = $1 AND issue_number = $2",
      [known.id, issue.number],
    );
    expect(tasks.rows).toEqual([{ id: expect.any(Number), state: "queued", title: "Make it so" }]);
    const taskId = tasks.rows[0]?.id ?? 0;
    expect(await events(taskId)).toEqual([
      { event: "labeled", actor: `watchdog:${MISSED_LABEL}`, toState: "queued" },
    ]);
    expect((await detectAndRepair(ctx, githubDetectors)).findings).toEqual([]);
  });

  it("does not queue for a labeller without permission, and says so once", async () => {
    const issue = github.openIssue(repo, "Make it so");
    repo.permissions.set("drive-by", "triage");
    await github.label(repo, issue.number, "overseer", "drive-by", { deliver: false });
    const pass = await detectAndRepair(ctx, [missedLabel]);
    expect(pass.outcomes.map(({ outcome }) => outcome.detail)).toEqual([
      expect.stringMatching(/^refused: drive-by may not start Overseer by labelling/),
    ]);
    const tasks = await db.pool.query("SELECT id FROM tasks WHERE repo_id = $1", [known.id]);
    expect(tasks.rows).toEqual([]);
    const replies = await db.pool.query(
      "SELECT payload->>'issueNumber' AS issue FROM outbox WHERE repo_full_name = $1 AND kind = 'reply'",
      [repo.fullName],
    );
    expect(replies.rows).toEqual([{ issue: String(issue.number) }]);
    expect((await detectAndRepair(ctx, [missedLabel])).findings).toEqual([]);
  });

  it("does not re-queue a cancelled task whose label is still on the issue", async () => {
    const issue = github.openIssue(repo, "Make it so", { labels: ["overseer"] });
    const taskId = await seedTask(issue.number, "cancelled");
    expect((await detectAndRepair(ctx, githubDetectors)).findings).toEqual([]);
    expect(await taskRow(taskId)).toMatchObject({ state: "cancelled" });
  });
});

describe("a second pass with nothing changed", () => {
  it("makes only conditional requests that GitHub answers 304, costing no rate limit", async () => {
    await awaitingMerge();
    await awaitingMerge();
    const labelled = github.openIssue(repo, "Queued already", { labels: ["overseer"] });
    await seedTask(labelled.number, "queued");
    await detectAndRepair(ctx, githubDetectors);
    const before = github.calls.length;
    const usedBefore = github.rateLimitUsed();
    const pass = await detectAndRepair(ctx, githubDetectors);
    expect(pass.findings).toEqual([]);
    const second = github.calls.slice(before);
    expect(second.length).toBeGreaterThan(0);
    expect(second.filter((call) => call.status !== 304)).toEqual([]);
    expect(github.rateLimitUsed()).toBe(usedBefore);
  });
});

describe("a read-only diagnosis (doctor without --apply)", () => {
  it("finds the same, and stores nothing, not even the new answers' ETags", async () => {
    const { taskId, pr } = await awaitingMerge();
    await detectAndRepair(ctx, githubDetectors);
    await github.merge(repo, pr, "octocat", { deliver: false });
    const reads = () =>
      db.pool.query(
        "SELECT key, etag, body, fetched_at, acted_on FROM github_conditional_reads ORDER BY key",
      );
    const before = (await reads()).rows;
    const readOnly = { ...ctx, readOnly: true };
    const findings = await missedPullClose.detect(readOnly);
    expect(findings.map((finding) => finding.taskId)).toEqual([taskId]);
    expect((await reads()).rows).toEqual(before);
    expect(await taskRow(taskId)).toMatchObject({ state: "awaiting_merge" });
  });
});

describe("GitHub's API answering 502", () => {
  it("fails the detection and changes nothing; the next pass after recovery repairs", async () => {
    const { taskId, pr } = await awaitingMerge();
    await github.merge(repo, pr, "octocat", { deliver: false });
    const clear = github.fail({ status: 502 });
    try {
      await expect(detectAndRepair(ctx, [missedPullClose])).rejects.toMatchObject({ status: 502 });
    } finally {
      clear();
    }
    expect(await taskRow(taskId)).toMatchObject({ state: "awaiting_merge" });
    const pass = await detectAndRepair(ctx, [missedPullClose]);
    const ours = pass.outcomes.filter(({ finding }) => finding.taskId === taskId);
    expect(ours.map(({ outcome }) => outcome.repaired)).toEqual([true]);
    expect(await taskRow(taskId)).toMatchObject({ state: "done" });
  });
});

describe("a repository GitHub will not show (the App uninstalled, the repository deleted)", () => {
  it("is one finding for a human per detector, and the other repositories are still reconciled", async () => {
    const gone = await db.pool.query<{ id: number }>(
      `INSERT INTO repos (github_id, full_name, installation_id, clone_url, default_branch)
       VALUES (999001, 'octo/deleted', $1, 'http://example/octo/deleted.git', 'main') RETURNING id`,
      [github.installationId],
    );
    const goneId = gone.rows[0]?.id ?? 0;
    try {
      await db.pool.query(
        `INSERT INTO tasks (repo_id, issue_number, title, state, attempts, branch, pr_number,
                            config, state_label, started_at)
         VALUES ($1, 1, 'Gone', 'awaiting_merge', 1, 'overseer/1-gone', 2, '{"label":"overseer"}',
                 'overseer:awaiting-merge', now())`,
        [goneId],
      );
      const issue = github.openIssue(repo, "Make it so");
      await github.label(repo, issue.number, "overseer", "octocat", { deliver: false });
      const pass = await detectAndRepair(ctx, githubDetectors);
      const unreadable = pass.findings.filter((finding) => finding.subject === "octo/deleted");
      expect(unreadable.map((finding) => [finding.kind, finding.safe])).toEqual([
        [MISSED_PR_CLOSE, false],
        [MISSED_CANCEL, false],
        [MISSED_LABEL, false],
      ]);
      expect(unreadable[0]?.evidence).toMatch(/HTTP 404/);
      expect(
        pass.outcomes
          .filter(({ finding }) => finding.subject === "octo/deleted")
          .map(({ outcome }) => outcome.repaired),
      ).toEqual([false, false, false]);
      // The repository that can be read was reconciled all the same.
      const queued = await db.pool.query(
        "SELECT state FROM tasks WHERE repo_id = $1 AND issue_number = $2",
        [known.id, issue.number],
      );
      expect(queued.rows).toEqual([{ state: "queued" }]);
    } finally {
      await db.pool.query("DELETE FROM tasks WHERE repo_id = $1", [goneId]);
      await db.pool.query("DELETE FROM repos WHERE id = $1", [goneId]);
    }
  });
});

describe("a process without GitHub credentials", () => {
  it("finds nothing to poll instead of failing every tick", async () => {
    const offline = watchdogContext(db.pool);
    expect(offline.github).toBeNull();
    for (const detector of githubDetectors) expect(await detector.detect(offline)).toEqual([]);
  });
});
