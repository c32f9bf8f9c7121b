import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WatchdogContext } from "../../src/watchdog/detector.js";
import { githubDetectors } from "../../src/watchdog/reconcile/index.js";
import { MISSED_LABEL, missedLabel } from "../../src/watchdog/reconcile/labels.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { deliveryRow, processedDelivery } from "../support/deliveries.js";
import {
  startTestApp,
  type TestApp,
  useGithubHost,
  WEBHOOK_SECRET,
} from "../support/github-app.js";
import { type StandIn, startGithubStandIn } from "../support/github-stand-in.js";
import { answeredByStandIn } from "../support/network.js";
import { detectAndRepair, watchdogContext } from "../support/watchdog.js";

/**
 * A `labeled` delivery that arrives while GitHub's API answers 502 cannot read the config
 * or the labeller's permission. It is stored and answered all the same, and its attempts
 * are repeated with backoff: once the API is back, the retry queues the task, exactly once,
 * without waiting for the watchdog's poll (which then finds nothing to do). A redelivery
 * changes nothing, and a delivery arriving together with the poll makes one task.
 */

let db: TestDatabase;
let github: StandIn;
let app: TestApp;
let ctx: WatchdogContext;

beforeAll(async () => {
  db = await createTestDatabase();
  github = await startGithubStandIn({ webhookSecret: WEBHOOK_SECRET });
  answeredByStandIn(github.host);
  useGithubHost(github);
  app = await startTestApp(db.url);
  github.webhookUrl = `${app.url}/api/github/webhooks`;
  github.afterAcknowledged = (id) => app.settled(id);
  ctx = watchdogContext(db.pool, { github, databaseUrl: db.url });
});
afterAll(async () => {
  await app?.stop();
  await github?.stop();
  await db?.drop();
});

async function tasksOf(fullName: string, issue: number) {
  const result = await db.pool.query<{ id: number; state: string }>(
    `SELECT tasks.id, tasks.state FROM tasks JOIN repos ON repos.id = tasks.repo_id
      WHERE repos.full_name = $1 AND tasks.issue_number = $2`,
    [fullName, issue],
  );
  return result.rows;
}

async function labeledEvents(taskId: number) {
  const result = await db.pool.query<{ actor: string }>(
    "SELECT actor FROM task_events WHERE task_id = $1 AND event = 'labeled' ORDER BY id",
    [taskId],
  );
  return result.rows.map((row) => row.actor);
}

describe("a labeled delivery during an API outage", () => {
  it("is stored and answered; once the API is back, its retry queues the task exactly once", async () => {
    // The repository's first delivery ever: Overseer has not heard of it before.
    const repo = await github.createRepo("octo", "outage");
    const issue = github.openIssue(repo, "Make it so");
    const clear = github.fail({ status: 502, body: { message: "Server Error" } });
    let delivered: { status: number; id: string };
    try {
      delivered = await github.label(repo, issue.number, "overseer", "octocat");
      expect(delivered.status).toBe(202);
      expect(await deliveryRow(db.pool, delivered.id)).toMatchObject({
        outcome: "pending",
        attempts: 1,
        error: expect.stringContaining("HTTP 502"),
      });
      expect(await tasksOf(repo.fullName, issue.number)).toEqual([]);
    } finally {
      clear();
    }

    expect(await processedDelivery(db.pool, delivered.id)).toMatchObject({
      attempts: expect.any(Number),
    });
    const tasks = await tasksOf(repo.fullName, issue.number);
    expect(tasks).toEqual([{ id: expect.any(Number), state: "queued" }]);
    const taskId = tasks[0]?.id ?? 0;
    expect(await labeledEvents(taskId)).toEqual(["github:octocat"]);
    // The watchdog's poll finds the labelled issue with its task: nothing to repair.
    expect((await detectAndRepair(ctx, githubDetectors)).findings).toEqual([]);

    // An operator replays the delivery from GitHub's settings: nothing more happens.
    const original = github.deliveries.find((delivery) => delivery.id === delivered.id);
    const replayed = await github.deliver("issues", original?.payload, delivered.id);
    expect(replayed.status).toBe(200);
    expect(await tasksOf(repo.fullName, issue.number)).toEqual([{ id: taskId, state: "queued" }]);
    expect(await labeledEvents(taskId)).toEqual(["github:octocat"]);
    await app.settleOutbox();
  });

  it("a delivery and a poll arriving together make one task and one labeled event", async () => {
    const repo = await github.createRepo("octo", "together");
    const issue = github.openIssue(repo, "Make it so");
    // Known from an earlier delivery; this label's delivery is held back until the poll runs.
    await github.label(repo, issue.number, "unrelated", "octocat");
    await github.label(repo, issue.number, "overseer", "octocat", { deliver: false });
    const detected = await missedLabel.detect(ctx);
    expect(detected.map((finding) => finding.subject)).toEqual([
      `${repo.fullName}#${issue.number}`,
    ]);
    const finding = detected[0];
    if (!finding) throw new Error("no finding");
    const [delivered, repaired] = await Promise.all([
      github.deliver("issues", {
        action: "labeled",
        label: { name: "overseer" },
        issue: {
          number: issue.number,
          title: issue.title,
          state: "open",
          labels: [{ name: "unrelated" }, { name: "overseer" }],
        },
        repository: {
          id: repo.id,
          name: repo.name,
          full_name: repo.fullName,
          clone_url: repo.cloneUrl,
          default_branch: repo.defaultBranch,
          owner: { login: repo.owner },
        },
        installation: { id: github.installationId },
        sender: { login: "octocat", type: "User" },
      }),
      missedLabel.repair(ctx, finding, "watchdog"),
    ]);
    expect(delivered.status).toBe(202);
    const tasks = await tasksOf(repo.fullName, issue.number);
    expect(tasks).toEqual([{ id: expect.any(Number), state: "queued" }]);
    const events = await labeledEvents(tasks[0]?.id ?? 0);
    expect(events).toHaveLength(1);
    // Whichever came second found the task and changed nothing.
    expect(repaired.repaired).toBe(events[0] === `watchdog:${MISSED_LABEL}`);
    await app.settleOutbox();
  });
});
