import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type StandIn, startGithubStandIn } from "../support/github-stand-in.js";
import { type OverseerProcess, spawnOverseer } from "../support/process.js";

/**
 * Overseer as its own process (`overseer start`), against a GitHub stand-in reached through
 * GHE_HOST/GHE_PROTOCOL that answers only documented REST routes and serves git over smart
 * HTTP: the contracts a real deployment relies on (env names, labels, the worker-profile
 * file), end to end.
 */

const WORKER = [
  "echo faster >> widget.txt",
  "git add -A",
  "git -c user.name=agent -c user.email=agent@example.com commit -qm 'Make the widget faster'",
  'echo "Made the widget faster." > "$OVERSEER_SUMMARY_FILE"',
].join(" && ");

let db: TestDatabase;
let github: StandIn;
let home: string;
let app: OverseerProcess | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  github = await startGithubStandIn();
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-process-"));
});

afterAll(async () => {
  if (app && app.child.exitCode === null) {
    app.child.kill("SIGTERM");
    await app.exited;
  }
  await github?.stop();
  await db?.drop();
  if (home) await rm(home, { recursive: true, force: true });
});

async function until<T>(what: string, probe: () => T | undefined | null | false, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${app?.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("overseer start against a GitHub stand-in", () => {
  it("label → worker → PR on the stand-in → merge → done, one completion comment", async () => {
    const { privateKey } = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      privateKeyEncoding: { type: "pkcs1", format: "pem" },
      publicKeyEncoding: { type: "spki", format: "pem" },
    });
    const workers = path.join(home, "workers.yml");
    await writeFile(
      workers,
      `default: script\nprofiles:\n  script:\n    command: ${JSON.stringify(["sh", "-c", WORKER])}\n    timeout: 1m\n`,
    );
    app = await spawnOverseer(["start"], {
      APP_ID: String(github.appId),
      PRIVATE_KEY: privateKey,
      WEBHOOK_SECRET: github.webhookSecret,
      GHE_HOST: github.host,
      GHE_PROTOCOL: "http",
      DATABASE_URL: db.url,
      OVERSEER_HOME: home,
      OVERSEER_WORKERS: workers,
      OVERSEER_OUTBOX_SETTLE: "0",
      OVERSEER_POLL_INTERVAL: "500ms",
      HOST: "127.0.0.1",
      LOG_LEVEL: "warn",
    });
    await app.waitForHealth();
    github.webhookUrl = `http://127.0.0.1:${app.port}/api/github/webhooks`;

    const repo = await github.createRepo("octo", "widgets");
    const issue = github.openIssue(repo, "Make the widget faster", {
      body: "It is slow.",
      labels: ["bug"],
    });
    expect((await github.label(repo, issue.number, "overseer")).status).toBe(202);

    const pull = await until("the PR", () => [...repo.pulls.values()][0]);
    expect(pull.head).toMatch(new RegExp(`^overseer/${issue.number}-make-the-widget-faster$`));
    expect(pull.body).toContain(`Closes #${issue.number}`);
    expect(github.git.git("octo", "widgets", "show", `${pull.headSha}:widget.txt`)).toBe("faster");
    await until("awaiting-merge label", () => issue.labels.includes("overseer:awaiting-merge"));
    // Someone labels the issue between Overseer's label writes.
    expect((await github.label(repo, issue.number, "needs-docs")).status).toBe(202);

    expect((await github.merge(repo, pull.number)).status).toBe(202);
    await until("done label", () => issue.labels.includes("overseer:done"));
    const completion = await until("the completion comment", () =>
      issue.comments.find((comment) => comment.body.includes("overseer:completion")),
    );
    expect(completion.body).toContain(pull.mergeCommitSha ?? "no merge commit");
    expect(
      issue.comments.filter((comment) => comment.body.includes("overseer:completion")),
    ).toHaveLength(1);
    expect(issue.labels.filter((label) => label.startsWith("overseer:"))).toEqual([
      "overseer:done",
    ]);
    // State labels are added and removed one by one: nobody else's label is ever dropped.
    expect(issue.labels.filter((label) => !label.startsWith("overseer:")).sort()).toEqual([
      "bug",
      "needs-docs",
      "overseer",
    ]);
    const task = await db.pool.query("SELECT state, merge_commit_sha FROM tasks");
    expect(task.rows).toEqual([{ state: "done", merge_commit_sha: pull.mergeCommitSha }]);
    expect(github.unknownCalls).toEqual([]);
    const counted = github.calls.filter((call) => call.counted);
    console.log(
      `API calls for a lifecycle against the stand-in: ${counted.length} counted, ${github.calls.length - counted.length} answered 304\n  ${github.calls.map((call) => `${call.method} ${call.route} → ${call.status}`).join("\n  ")}`,
    );

    app.child.kill("SIGTERM");
    expect(await app.exited).toBe(0);
  }, 120_000);
});
