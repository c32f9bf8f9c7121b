/**
 * What the benchmarks that drive whole task lifecycles share: `overseer start` as its own
 * process (as `npm start` runs it) against the GitHub stand-in (test/support/github-stand-in.ts,
 * REST and git over HTTP, signed webhooks), a fresh database, and a worker that commits at
 * once. A lifecycle is the documented one: label → worker → PR → merge → done, with its
 * completion comment. Not a benchmark itself.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import type { Issue, RepoModel, StandIn } from "../test/support/github-stand-in.js";
import { startGithubStandIn } from "../test/support/github-stand-in.js";
import { type OverseerProcess, spawnOverseer } from "../test/support/process.js";
import { openDatabase } from "./app-harness.js";

const WORKER = [
  "echo done >> work.txt",
  "git add -A",
  "git -c user.name=agent -c user.email=agent@example.com commit -qm 'Do the work'",
  'echo "Did the work." > "$OVERSEER_SUMMARY_FILE"',
].join(" && ");

export interface LifecycleRig {
  github: StandIn;
  app: OverseerProcess;
  databaseUrl: string;
  /** label → PR → merge → done for a new issue in `repo`; returns the issue. */
  lifecycle(repo: RepoModel, title: string): Promise<Issue>;
  /** Waits until the outbox has nothing left to deliver (every GitHub write made). */
  settled(): Promise<void>;
  /** Resident set size of the Overseer process, in bytes. */
  rss(): Promise<number>;
  stop(): Promise<void>;
}

export async function until<T>(
  what: string,
  probe: () => T | undefined | null | false,
  ms = 60_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export async function startLifecycleRig(
  options: {
    capacity?: number;
    env?: Record<string, string>;
    /** Runs on the migrated database before Overseer starts. */
    seed?: (databaseUrl: string) => Promise<void>;
  } = {},
): Promise<LifecycleRig> {
  const db = await openDatabase();
  const github = await startGithubStandIn({ rateLimit: 10_000_000 });
  const home = await mkdtemp(path.join(os.tmpdir(), "overseer-bench-lifecycle-"));
  let app: OverseerProcess | undefined;
  const stop = async () => {
    if (app && app.child.exitCode === null) {
      app.child.kill("SIGTERM");
      await app.exited;
    }
    await github.stop();
    await db.close();
    await rm(home, { recursive: true, force: true });
  };
  try {
    await options.seed?.(db.url);
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
      OVERSEER_RUNNER_CAPACITY: String(options.capacity ?? 4),
      HOST: "127.0.0.1",
      LOG_LEVEL: "warn",
      ...options.env,
    });
    await app.waitForHealth();
    github.webhookUrl = `http://127.0.0.1:${app.port}/api/github/webhooks`;
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
  const running = app;
  const drive = async (repo: RepoModel, issue: Issue): Promise<Issue> => {
    const labelled = await github.label(repo, issue.number, "overseer");
    if (labelled.status !== 202) throw new Error(`label delivery answered ${labelled.status}`);
    const pull = await until(`the PR for #${issue.number}`, () =>
      [...repo.pulls.values()].find((candidate) =>
        candidate.head.startsWith(`overseer/${issue.number}-`),
      ),
    );
    await until(`awaiting-merge on #${issue.number}`, () =>
      issue.labels.includes("overseer:awaiting-merge"),
    );
    const merged = await github.merge(repo, pull.number);
    if (merged.status !== 202) throw new Error(`merge delivery answered ${merged.status}`);
    await until(
      `done and the completion comment on #${issue.number}`,
      () =>
        issue.labels.includes("overseer:done") &&
        issue.comments.some((comment) => comment.body.includes("overseer:completion")),
    );
    return issue;
  };
  return {
    github,
    app: running,
    databaseUrl: db.url,
    async lifecycle(repo, title) {
      const issue = github.openIssue(repo, title, { body: "Do the work." });
      try {
        return await drive(repo, issue);
      } catch (error) {
        const said = issue.comments.map((comment) => comment.body).join("\n---\n");
        throw new Error(
          `${(error as Error).message}; labels ${issue.labels.join(", ")}; comments:\n${said}\napp output:\n${running.output().slice(-3_000)}`,
        );
      }
    },

    async settled() {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        const deadline = Date.now() + 60_000;
        for (;;) {
          const pending = await client.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL",
          );
          if (pending.rows[0]?.n === 0) return;
          if (Date.now() > deadline) throw new Error("the outbox did not drain in 60 s");
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      } finally {
        await client.end();
      }
    },
    async rss() {
      const status = await readFile(`/proc/${running.child.pid}/status`, "utf8");
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
      return kb * 1024;
    },
    stop,
  };
}
