import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import nock from "nock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, startGitServer } from "../support/git-http.js";
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
  closedIssuePayload,
  commentPayload,
  hostRepository,
  labeledPayload,
  livingMembers,
  mockIssueForPrompt,
  mockPermission,
  mockStickyEffects,
  NAME,
  OWNER,
  REPO_PATH,
  type Repository,
  runsOf,
  unlabeledPayload,
  waitFor,
  waitForState,
  waitForWorker,
} from "../support/scenario.js";

/**
 * "Removing the label cancels", and so do closing the issue and `/cancel`: each through a
 * signed webhook into the running app, on a task whose worker a real runner is running.
 */

let db: TestDatabase;
let git: GitServer;
let repository: Repository;
let app: TestApp;
let home: string;
let issue = 300;

beforeAll(async () => {
  db = await createTestDatabase();
  git = await startGitServer();
  repository = await hostRepository(git);
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-cancel-"));
  const workers = path.join(home, "workers.yml");
  await writeFile(
    workers,
    [
      "default: sleeper",
      "profiles:",
      "  sleeper:",
      `    command: ${JSON.stringify(["sh", "-c", "echo ready; exec sleep 1000"])}`,
      "    timeout: 1m",
      "    grace: 1s",
      "",
    ].join("\n"),
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
});

/** Labels a fresh issue and waits until the runner's worker for it runs; GitHub is then quiet. */
async function runningTask(commentId: number) {
  mockInstallationToken().persist();
  // A config read minutes after the previous test's: the file is asked for again.
  await ageConfigReads(db.pool);
  mockRepoConfig(OWNER, NAME, null);
  mockIssueForPrompt(issue);
  const sticky = mockStickyEffects(issue, commentId);
  expect((await app.send("issues", labeledPayload(issue, { repository }))).status).toBe(202);
  const task = await waitForState(db.pool, issue, ["running", "failed", "cancelled"]);
  expect(task.state).toBe("running");
  const run = await waitForWorker(db.pool, task.id);
  await app.settleOutbox();
  expect(sticky.labels.at(-1)).toBe("overseer:running");
  expectGithubCallsDone();
  return { task, run };
}

/** What every cancellation of a running task sends: the sticky comment edited, the label swapped. */
function mockCancelledEffects(commentId: number) {
  const bodies: string[] = [];
  nock(API)
    .patch(`${REPO_PATH}/issues/comments/${commentId}`, (body) => {
      bodies.push(body.body);
      return true;
    })
    .reply(200, {})
    .post(`${REPO_PATH}/issues/${issue}/labels`, { labels: ["overseer:cancelled"] })
    .reply(200, [])
    .delete(`${REPO_PATH}/issues/${issue}/labels/overseer%3Arunning`)
    .reply(200, []);
  return bodies;
}

const TRIGGERS = [
  {
    name: "removing the trigger label",
    event: "unlabeled",
    login: "label-remover",
    // A label event is a command by other means: its sender needs commanders permission.
    send: (login: string) => {
      mockPermission(login);
      return app.send("issues", unlabeledPayload(issue, { sender: login, repository }));
    },
  },
  {
    name: "closing the issue",
    event: "issue_closed",
    login: "issue-closer",
    send: (login: string) => {
      mockPermission(login);
      return app.send("issues", closedIssuePayload(issue, { sender: login, repository }));
    },
  },
  {
    name: "/cancel",
    event: "command:cancel",
    login: "canceller",
    send: (login: string) => {
      mockPermission(login);
      nock(API)
        .post(`${REPO_PATH}/issues/comments/${8_000_000 + issue}/reactions`, { content: "+1" })
        .reply(201, {});
      return app.send(
        "issue_comment",
        commentPayload(issue, "/cancel", { login, commentId: 8_000_000 + issue, repository }),
      );
    },
  },
] as const;

describe("cancelling a running task through a webhook", () => {
  it.each(TRIGGERS)(
    "$name: cancelled, audited, announced, and its worker stopped",
    async (trigger) => {
      issue += 1;
      const commentId = 700_000 + issue;
      const { task, run } = await runningTask(commentId);
      const bodies = mockCancelledEffects(commentId);

      const delivery = await trigger.send(trigger.login);
      expect(delivery.status).toBe(202);
      const cancelled = await waitForState(db.pool, issue, ["cancelled"]);
      expect(cancelled.attempts).toBe(1);
      const events = await db.pool.query(
        `SELECT event, from_state, to_state, actor, cause FROM task_events
        WHERE task_id = $1 AND to_state = 'cancelled'`,
        [task.id],
      );
      expect(events.rows).toEqual([
        {
          event: trigger.event,
          from_state: "running",
          to_state: "cancelled",
          actor: `github:${trigger.login}`,
          cause: `delivery:${delivery.id}`,
        },
      ]);

      // The run was asked to stop, by whom, and the runner ended its worker's whole group.
      const [asked] = await runsOf(db.pool, task.id);
      expect(asked).toMatchObject({ id: run.id, stop_requested_by: `github:${trigger.login}` });
      expect(asked?.stop_requested_at).not.toBeNull();
      const settled = await waitFor("the run to settle", async () => {
        const [row] = await runsOf(db.pool, task.id);
        return row?.state !== "running" ? row : undefined;
      });
      expect(settled.state).toBe("stopped");
      expect(livingMembers(run.pgid)).toEqual([]);
      // The stopped run's report does not undo the cancellation.
      expect((await waitForState(db.pool, issue, ["cancelled"])).state).toBe("cancelled");

      await app.settleOutbox();
      expect(bodies).toHaveLength(1);
      expect(bodies[0]).toContain(`Overseer task ${task.id}: cancelled`);
    },
  );
});
