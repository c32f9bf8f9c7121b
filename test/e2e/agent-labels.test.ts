import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, startGitServer } from "../support/git-http.js";
import {
  examplePayload,
  startTestApp,
  type TestApp,
  useGithubHost,
} from "../support/github-app.js";
import { GithubFake } from "../support/github-fake.js";

/**
 * `agent:<profile>` labels pick the worker profile, among those the operator allows for the
 * repository (`repositories` in the profile); the status comment names the profile.
 */

const OWNER = "Codertocat";
const REPO = "Hello-World";

let db: TestDatabase;
let app: TestApp;
let origin: GitServer;
let cloneUrl: string;
let home: string;
let github: GithubFake;

function profile(name: string, extra: string[] = []): string[] {
  const script = `echo ${name} > profile.txt && git add -A && git -c user.name=a -c user.email=a@example.com commit -qm "by ${name}"`;
  return [
    `  ${name}:`,
    `    command: [sh, -c, ${JSON.stringify(script)}]`,
    "    timeout: 1m",
    ...extra.map((line) => `    ${line}`),
  ];
}

beforeAll(async () => {
  db = await createTestDatabase();
  origin = await startGitServer({ tokens: ["ghs_fake"] });
  ({ cloneUrl } = await origin.createRepo(OWNER, REPO));
  // Overseer's git goes only to the configured GitHub host: the stand-in is it.
  useGithubHost(origin);
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-agents-"));
  const workers = path.join(home, "workers.yml");
  await writeFile(
    workers,
    [
      "default: script",
      "profiles:",
      ...profile("script"),
      ...profile("alt", ["repositories: [Codertocat/*]", "concurrency: 1"]),
      ...profile("secret", ["repositories: [acme/private]"]),
    ].join("\n"),
  );
  github = new GithubFake(OWNER, REPO);
  github.install();
  app = await startTestApp(
    db.url,
    { OVERSEER_HOME: home, OVERSEER_WORKERS: workers, OVERSEER_HEARTBEAT_INTERVAL: "500ms" },
    "all",
  );
});

afterAll(async () => {
  await app?.stop();
  await db?.drop();
  await origin?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

beforeEach(() => github.install());

async function taskRow(issue: number) {
  return (await db.pool.query("SELECT * FROM tasks WHERE issue_number = $1", [issue])).rows[0];
}

async function waitForState(issue: number, states: string[]) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const row = await taskRow(issue);
    if (row && states.includes(row.state)) return row;
    if (Date.now() > deadline) throw new Error(`task ${issue} is ${row?.state}, not ${states}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function issuePayload(action: string, issue: number, labels: string[], changed: string) {
  const payload = examplePayload("issues", action);
  payload.issue.number = issue;
  payload.issue.title = `Widget ${issue}`;
  payload.label = { ...(payload.label ?? { color: "ededed" }), name: changed };
  payload.issue.labels = labels.map((name) => ({ ...payload.label, name }));
  payload.repository = { ...payload.repository, clone_url: cloneUrl, default_branch: "main" };
  return payload;
}

function statusComment(issue: number): string {
  return (
    [...github.comments.values()].find(
      (comment) => comment.issue === issue && comment.body.startsWith("<!-- overseer:status"),
    )?.body ?? ""
  );
}

describe("agent labels", () => {
  it("an agent: label picks the profile, and the status comment names it", async () => {
    const labeled = issuePayload("labeled", 51, ["agent:alt", "overseer"], "overseer");
    expect((await app.send("issues", labeled)).status).toBe(202);
    const done = await waitForState(51, ["awaiting_merge", "failed"]);
    expect(done).toMatchObject({ state: "awaiting_merge", worker_profile: "alt" });
    const run = (await db.pool.query("SELECT profile FROM runs WHERE task_id = $1", [done.id]))
      .rows;
    expect(run).toEqual([{ profile: "alt" }]);
    expect(origin.git(OWNER, REPO, "show", `${done.pr_head_sha}:profile.txt`)).toBe("alt");
    await app.settleOutbox();
    expect(statusComment(51)).toContain("| Worker | `alt` (from the `agent:alt` label) |");
    expect(github.unexpected).toEqual([]);
  });

  it("a profile the operator did not allow for the repository fails without costing an attempt; removing the label goes back to the default", async () => {
    const labeled = issuePayload("labeled", 52, ["agent:secret", "overseer"], "overseer");
    expect((await app.send("issues", labeled)).status).toBe(202);
    const failed = await waitForState(52, ["failed", "awaiting_merge"]);
    expect(failed.state).toBe("failed");
    expect(failed.attempts).toBe(0);
    expect(failed.last_error).toContain(
      'worker profile "secret" is not allowed for Codertocat/Hello-World',
    );

    const unlabeled = issuePayload("unlabeled", 52, ["overseer"], "agent:secret");
    expect((await app.send("issues", unlabeled)).status).toBe(202);
    expect((await taskRow(52)).worker_profile).toBeNull();
    const events = await db.pool.query(
      "SELECT detail FROM task_events WHERE task_id = $1 AND event = 'profile_selected'",
      [failed.id],
    );
    expect(events.rows).toEqual([
      { detail: { profile: null, label: "agent:secret", action: "unlabeled" } },
    ]);

    // Re-adding the trigger label is a retry: now with the operator's default.
    const again = issuePayload("labeled", 52, ["overseer"], "overseer");
    expect((await app.send("issues", again)).status).toBe(202);
    const done = await waitForState(52, ["awaiting_merge"]);
    expect(origin.git(OWNER, REPO, "show", `${done.pr_head_sha}:profile.txt`)).toBe("script");
    await app.settleOutbox();
    expect(statusComment(52)).toContain("| Worker | `script` |");
    expect(github.unexpected).toEqual([]);
  });

  it("several agent: labels pick none: the repository's worker runs, and the issue is told", async () => {
    const labeled = issuePayload(
      "labeled",
      53,
      ["agent:alt", "agent:secret", "overseer"],
      "overseer",
    );
    expect((await app.send("issues", labeled)).status).toBe(202);
    const done = await waitForState(53, ["awaiting_merge", "failed"]);
    expect(done).toMatchObject({ state: "awaiting_merge", worker_profile: null });
    await app.settleOutbox();
    const reply = [...github.comments.values()].find(
      (comment) => comment.issue === 53 && comment.body.includes("several agent labels"),
    );
    expect(reply?.body).toContain("`agent:alt`, `agent:secret`");
    expect(github.unexpected).toEqual([]);
  });
});
