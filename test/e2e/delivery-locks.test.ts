import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  startTestApp,
  type TestApp,
  useGithubHost,
  WEBHOOK_SECRET,
} from "../support/github-app.js";
import { type StandIn, startGithubStandIn } from "../support/github-stand-in.js";
import { answeredByStandIn } from "../support/network.js";
import { waitFor } from "../support/scenario.js";

/**
 * A delivery and a runner changing the same task at the same moment. A runner's state
 * change locks the task, then the repository's row (its running count, kept by a trigger);
 * a delivery must never hold the repository's row while it waits for the task, or the two
 * deadlock and PostgreSQL aborts one: the delivery answered 500 (never redelivered by
 * GitHub), or the runner's change lost.
 */

let db: TestDatabase;
let github: StandIn;
let app: TestApp;

beforeAll(async () => {
  db = await createTestDatabase();
  github = await startGithubStandIn({ webhookSecret: WEBHOOK_SECRET });
  answeredByStandIn(github.host);
  useGithubHost(github);
  app = await startTestApp(db.url);
  github.webhookUrl = `${app.url}/api/github/webhooks`;
  github.afterAcknowledged = (id) => app.settled(id);
});
afterAll(async () => {
  await app?.stop();
  await github?.stop();
  await db?.drop();
});

describe("a command delivered while a runner changes its task", () => {
  it("waits for the runner's change and is then applied: no deadlock", async () => {
    const repo = await github.createRepo("octo", "locks");
    const issue = github.openIssue(repo, "Stop me").number;
    expect((await github.label(repo, issue, "overseer")).status).toBe(202);
    const task = await db.pool.query<{ id: number; repoId: number }>(
      `SELECT tasks.id, tasks.repo_id AS "repoId" FROM tasks JOIN repos ON repos.id = tasks.repo_id
        WHERE repos.full_name = $1 AND tasks.issue_number = $2`,
      [repo.fullName, issue],
    );
    const { id, repoId } = task.rows[0] ?? { id: 0, repoId: 0 };

    // The runner's transaction, first step: the task locked, as a claim or a run's end locks it.
    const runner = new pg.Client({ connectionString: db.url });
    await runner.connect();
    try {
      const pid = (await runner.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]
        ?.pid;
      await runner.query("BEGIN");
      await runner.query("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", [id]);
      const stopped = github.comment(repo, issue, "/stop");
      // The delivery reached the task and waits for it.
      await waitFor("the delivery to wait for the task's lock", async () => {
        const waiting = await db.pool.query(
          `SELECT 1 FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> $1`,
          [pid],
        );
        return (waiting.rowCount ?? 0) > 0;
      });
      // Second step: the running count, on the repository's row, as the state trigger does.
      await runner.query("UPDATE repos SET running = running WHERE id = $1", [repoId]);
      await runner.query("COMMIT");
      expect((await stopped).status).toBe(202);
    } finally {
      await runner.end();
    }
    const after = await db.pool.query<{ state: string }>("SELECT state FROM tasks WHERE id = $1", [
      id,
    ]);
    expect(after.rows).toEqual([{ state: "stopped" }]);
  });
});
