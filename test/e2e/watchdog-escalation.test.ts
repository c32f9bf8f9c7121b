import nock from "nock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { upsertRepo } from "../../src/db/repos.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { branchName } from "../../src/domain/branch.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  API,
  INSTALLATION_ID,
  mockInstallationToken,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";
import { NAME, OWNER, REPO_PATH, waitFor } from "../support/scenario.js";

/**
 * A finding the watchdog may not repair reaches the issue as one comment, posted by the
 * outbox, however many ticks see it: the running app's own watchdog ticks every 100 ms.
 */

let db: TestDatabase;
let app: TestApp;
const ISSUE = 7;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url, { OVERSEER_TICK_INTERVAL: "100ms" });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

describe("escalation", () => {
  it("a queued task that can never be claimed: one comment saying what is wrong, what was tried, what to do", async () => {
    const repo = await upsertRepo(db.pool, {
      githubId: 1296269,
      fullName: `${OWNER}/${NAME}`,
      installationId: INSTALLATION_ID,
      cloneUrl: `https://github.com/${OWNER}/${NAME}.git`,
      defaultBranch: "main",
    });
    const bodies: string[] = [];
    mockInstallationToken().persist();
    nock(API).get(`${REPO_PATH}/issues/${ISSUE}/comments`).query(true).optionally().reply(200, []);
    nock(API)
      .post(`${REPO_PATH}/issues/${ISSUE}/comments`, (body: { body: string }) => {
        bodies.push(body.body);
        return true;
      })
      .reply(201, { id: 9001, body: "", user: { login: "overseer[bot]", type: "Bot" } });
    const task = await insertTaskIfAbsent(db.pool, {
      repoId: repo.id,
      issueNumber: ISSUE,
      title: "Out of attempts",
      state: "queued",
      priority: 2,
      maxAttempts: 1,
      riskLabelled: false,
      workerProfile: null,
      baseBranch: null,
      branch: branchName(ISSUE, "Out of attempts"),
      config: {},
      labels: ["overseer"],
    });
    await db.pool.query("UPDATE tasks SET attempts = 1 WHERE id = $1", [task?.id]);

    await waitFor("the escalation to be delivered", async () => {
      const row = await db.pool.query(
        "SELECT delivered_at FROM outbox WHERE kind = 'escalation' AND delivered_at IS NOT NULL",
      );
      return row.rowCount === 1;
    });
    // Several more ticks see the same finding.
    const ticked = async () =>
      (await db.pool.query<{ at: Date }>("SELECT last_tick_at AS at FROM watchdog_state")).rows[0]
        ?.at;
    const first = await ticked();
    await waitFor("three more ticks", async () => {
      const at = await ticked();
      return at && first && at.getTime() - first.getTime() >= 300;
    });

    expect(bodies).toHaveLength(1);
    expect(bodies[0]).toMatch(/^<!-- overseer:escalation key=escalation:stuck_task:task:\d+ -->/);
    expect(bodies[0]).toContain("**What is wrong** (`stuck_task`");
    expect(bodies[0]).toContain("attempts used up (1 of 1)");
    expect(bodies[0]).toContain("**What was tried**: nothing: it is not safe to do automatically");
    expect(bodies[0]).toContain("max_attempts");
    const outbox = await db.pool.query(
      "SELECT count(*)::int AS n FROM outbox WHERE kind = 'escalation'",
    );
    expect(outbox.rows[0].n).toBe(1);
    const state = await db.pool.query("SELECT state FROM tasks WHERE id = $1", [task?.id]);
    expect(state.rows[0].state).toBe("queued");
  });
});
