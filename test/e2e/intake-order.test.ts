import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WatchdogContext } from "../../src/watchdog/detector.js";
import { MISSED_LABEL, missedLabel } from "../../src/watchdog/reconcile/labels.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  startTestApp,
  type TestApp,
  useGithubHost,
  WEBHOOK_SECRET,
} from "../support/github-app.js";
import {
  type RepoModel,
  type StandIn,
  startGithubStandIn,
  type WebhookDelivery,
} from "../support/github-stand-in.js";
import { answeredByStandIn } from "../support/network.js";
import { detectAndRepair, watchdogContext } from "../support/watchdog.js";

/**
 * Trigger-label and close deliveries arriving out of order: each change is made on the
 * GitHub stand-in with its delivery held back, then the deliveries are sent in another
 * order than the changes were made. The task ends as in-order delivery would have left it.
 */

let db: TestDatabase;
let github: StandIn;
let app: TestApp;
let ctx: WatchdogContext;
let repo: RepoModel;

beforeAll(async () => {
  db = await createTestDatabase();
  github = await startGithubStandIn({ webhookSecret: WEBHOOK_SECRET });
  answeredByStandIn(github.host);
  useGithubHost(github);
  app = await startTestApp(db.url);
  github.webhookUrl = `${app.url}/api/github/webhooks`;
  github.afterAcknowledged = (id) => app.settled(id);
  ctx = watchdogContext(db.pool, { github, databaseUrl: db.url });
  repo = await github.createRepo("octo", "order");
  // Its first delivery makes the repository known, and polled by the watchdog.
  const triage = github.openIssue(repo, "Not for Overseer").number;
  expect((await github.label(repo, triage, "needs-triage")).status).toBe(202);
});
afterAll(async () => {
  await app?.stop();
  await github?.stop();
  await db?.drop();
});

async function tasksOf(issue: number) {
  const result = await db.pool.query<{ id: number; state: string }>(
    `SELECT tasks.id, tasks.state::text AS state FROM tasks JOIN repos ON repos.id = tasks.repo_id
      WHERE repos.full_name = $1 AND tasks.issue_number = $2`,
    [repo.fullName, issue],
  );
  return result.rows;
}

async function eventsOf(taskId: number) {
  const result = await db.pool.query<{ event: string; toState: string; cause: string }>(
    `SELECT event, to_state AS "toState", cause FROM task_events WHERE task_id = $1 ORDER BY id`,
    [taskId],
  );
  return result.rows;
}

/** The change's delivery, held back when it was made. */
function lastHeld(): WebhookDelivery {
  const held = github.held.at(-1);
  if (!held) throw new Error("nothing held");
  return held;
}

async function send(...deliveries: WebhookDelivery[]): Promise<void> {
  for (const { event, payload, id } of deliveries) {
    expect((await github.deliver(event, payload, id)).status).toBe(202);
  }
}

const hold = { deliver: false } as const;

async function label(issue: number, sender = "octocat"): Promise<WebhookDelivery> {
  await github.label(repo, issue, "overseer", sender, hold);
  return lastHeld();
}

async function unlabel(issue: number, sender = "octocat"): Promise<WebhookDelivery> {
  await github.unlabel(repo, issue, "overseer", sender, hold);
  return lastHeld();
}

describe("a removal delivered before the labelling it followed", () => {
  it("leaves the task cancelled in the remover's name, as in-order delivery would", async () => {
    const issue = github.openIssue(repo, "Label, then unlabel").number;
    const labelled = await label(issue);
    const removed = await unlabel(issue, "remover");
    await send(removed, labelled);
    const [task] = await tasksOf(issue);
    expect(task?.state).toBe("cancelled");
    expect(await eventsOf(task?.id ?? 0)).toEqual([
      { event: "labeled", toState: "queued", cause: `delivery:${labelled.id}` },
      { event: "unlabeled", toState: "cancelled", cause: `delivery:${removed.id}` },
    ]);
    await app.settleOutbox();
    const shown = repo.issues.get(issue);
    expect(shown?.labels).toEqual(["overseer:cancelled"]);
    const statuses = shown?.comments.filter((comment) => comment.body.includes("overseer:status"));
    expect(statuses?.map((comment) => comment.body.split("\n")[1])).toEqual([
      `### 🚫 Overseer task ${task?.id}: cancelled`,
    ]);
  });

  it("does the same for a close delivered before the labelling", async () => {
    const issue = github.openIssue(repo, "Label, then close").number;
    const labelled = await label(issue);
    await github.closeIssue(repo, issue, "closer", hold);
    const closed = lastHeld();
    await send(closed, labelled);
    const [task] = await tasksOf(issue);
    expect(task?.state).toBe("cancelled");
    expect((await eventsOf(task?.id ?? 0)).map((event) => event.event)).toEqual([
      "labeled",
      "issue_closed",
    ]);
  });

  it("queues the task when the remover may not cancel: their removal never counted", async () => {
    const issue = github.openIssue(repo, "Label, then a drive-by unlabels").number;
    repo.permissions.set("drive-by", "read");
    const labelled = await label(issue);
    const removed = await unlabel(issue, "drive-by");
    await send(removed, labelled);
    expect((await tasksOf(issue)).map((task) => task.state)).toEqual(["queued"]);
  });
});

describe("a labelling delivered after a newer decision on an issue with a task", () => {
  it("an older removal arriving after the label was added again changes nothing", async () => {
    const issue = github.openIssue(repo, "Label, unlabel, label").number;
    const first = await label(issue);
    const removed = await unlabel(issue);
    const again = await label(issue);
    await send(first, again, removed);
    const [task] = await tasksOf(issue);
    expect(task?.state).toBe("queued");
    expect((await eventsOf(task?.id ?? 0)).map((event) => event.event)).toEqual(["labeled"]);
  });

  it("an older labelling arriving after the label came off changes nothing", async () => {
    const issue = github.openIssue(repo, "Label, unlabel, label, unlabel").number;
    const first = await label(issue);
    const removed = await unlabel(issue);
    const again = await label(issue);
    const removedAgain = await unlabel(issue);
    await send(again, removedAgain, removed, first);
    const [task] = await tasksOf(issue);
    expect(task?.state).toBe("cancelled");
    expect((await eventsOf(task?.id ?? 0)).map((event) => event.event)).toEqual([
      "labeled",
      "unlabeled",
    ]);
  });
});

describe("a labelling and its removal delivered at the same moment", () => {
  it("end cancelled on every issue, whichever process takes which first", async () => {
    const issues = Array.from(
      { length: 12 },
      (_, n) => github.openIssue(repo, `Raced ${n}`).number,
    );
    const pairs: WebhookDelivery[][] = [];
    for (const issue of issues) pairs.push([await label(issue), await unlabel(issue)]);
    await Promise.all(
      pairs.flatMap((pair, n) => (n % 2 === 0 ? pair : [...pair].reverse())).map((d) => send(d)),
    );
    for (const issue of issues) {
      expect((await tasksOf(issue)).map((task) => task.state)).toEqual(["cancelled"]);
    }
  });
});

describe("the watchdog's repair of a lost labelling", () => {
  it("is ordered with the deliveries: an older removal arriving afterwards changes nothing", async () => {
    const issue = github.openIssue(repo, "Lost labelling").number;
    const early = await label(issue);
    const earlyRemoval = await unlabel(issue);
    // The labelling that counts is never delivered (GitHub dropped it): the poll finds it.
    await github.label(repo, issue, "overseer", "octocat", hold);
    const pass = await detectAndRepair(ctx, [missedLabel]);
    expect(pass.findings.map((finding) => finding.kind)).toEqual([MISSED_LABEL]);
    const [task] = await tasksOf(issue);
    expect(task?.state).toBe("queued");
    // The first labelling and its removal arrive late, after the repair.
    await send(earlyRemoval, early);
    expect(await tasksOf(issue)).toEqual([{ id: task?.id, state: "queued" }]);
    expect(await eventsOf(task?.id ?? 0)).toEqual([
      { event: "labeled", toState: "queued", cause: expect.stringMatching(/^finding:/) },
    ]);
  });
});
