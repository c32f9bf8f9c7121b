import { createHmac, generateKeyPairSync, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { type GitServer, startGitServer } from "../support/git-http.js";
import { INSTALLATION_ID } from "../support/github-app.js";
import { type OverseerProcess, spawnOverseer } from "../support/process.js";
import {
  hostRepository,
  INSTALLATION_TOKEN,
  labeledPayload,
  livingMembers,
  NAME,
  OWNER,
  type Repository,
  runsOf,
  waitFor,
  waitForState,
  waitForWorker,
} from "../support/scenario.js";

/**
 * "SIGTERM to a runner: it stops claiming, stops its workers (work in progress committed per
 * commit_on_stop), requeues their tasks uncharged and exits 0", for `overseer runner` as its
 * own process. The git stand-in is its GitHub Enterprise host: git and a small REST
 * stand-in for the calls this path makes, every call recorded.
 */

const WEBHOOK_SECRET = "shutdown-test-secret";
const ISSUE = 1101;
const WORKER = "echo draft > draft.txt; echo ready; exec sleep 1000";

let db: TestDatabase;
let git: GitServer;
let repository: Repository;
let home: string;
let runner: OverseerProcess | undefined;
const calls: { method: string; path: string; body: string }[] = [];
const unexpected: string[] = [];

/** The REST calls a labelled issue costs up to its worker's start, and its outbox writes. */
function githubStandIn(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const url = new URL(req.url ?? "/", "http://stand-in");
  if (!url.pathname.startsWith("/api/v3/")) return false;
  const route = `${req.method} ${url.pathname.slice("/api/v3".length)}`;
  let body = "";
  req.on("data", (chunk) => {
    body += chunk;
  });
  req.on("end", () => {
    calls.push({ method: req.method ?? "", path: url.pathname, body });
    const repo = `/repos/${OWNER}/${NAME}`;
    const answer = (status: number, json: unknown) =>
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(json));
    if (route === `POST /app/installations/${INSTALLATION_ID}/access_tokens`) {
      return answer(201, {
        token: INSTALLATION_TOKEN,
        expires_at: new Date(Date.now() + 3_600_000).toISOString(),
      });
    }
    if (/^GET \/repos\/[^/]+\/[^/]+\/contents\/\.github(%2F|\/)overseer\.yml$/.test(route)) {
      return answer(404, { message: "Not Found" });
    }
    if (route === `GET ${repo}/issues/${ISSUE}`) {
      return answer(200, { number: ISSUE, title: "Draft it", body: "Please.", comments: 0 });
    }
    if (route === `POST ${repo}/issues/${ISSUE}/comments`) return answer(201, { id: 740_000 });
    if (route === `PATCH ${repo}/issues/comments/740000`) return answer(200, {});
    if (route === `POST ${repo}/issues/${ISSUE}/labels`) return answer(200, []);
    if (route.startsWith(`DELETE ${repo}/issues/${ISSUE}/labels/`)) return answer(200, []);
    unexpected.push(route);
    return answer(404, { message: "Not Found" });
  });
  return true;
}

beforeAll(async () => {
  db = await createTestDatabase();
  git = await startGitServer();
  git.handle = githubStandIn;
  repository = await hostRepository(git);
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-shutdown-"));
});

afterAll(async () => {
  if (runner && runner.child.exitCode === null && runner.child.signalCode === null) {
    runner.child.kill("SIGKILL");
    await runner.exited;
  }
  await db?.drop();
  await git?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

async function sendWebhook(port: number, event: string, payload: unknown): Promise<number> {
  const body = JSON.stringify(payload);
  const signature = createHmac("sha256", WEBHOOK_SECRET).update(body).digest("hex");
  const response = await fetch(`http://127.0.0.1:${port}/api/github/webhooks`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-github-event": event,
      "x-github-delivery": randomUUID(),
      "x-hub-signature-256": `sha256=${signature}`,
    },
    body,
  });
  await response.text();
  return response.status;
}

describe("SIGTERM to `overseer runner`", () => {
  it("commits and pushes the worker's changes as work in progress, requeues uncharged, exits 0", async () => {
    const workers = path.join(home, "workers.yml");
    await writeFile(
      workers,
      `default: drafter\nprofiles:\n  drafter:\n    command: ${JSON.stringify(["sh", "-c", WORKER])}\n    timeout: 1m\n    grace: 1s\n`,
    );
    const { privateKey } = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      privateKeyEncoding: { type: "pkcs1", format: "pem" },
      publicKeyEncoding: { type: "spki", format: "pem" },
    });
    runner = await spawnOverseer(["runner"], {
      APP_ID: "123",
      PRIVATE_KEY: privateKey,
      WEBHOOK_SECRET,
      GHE_HOST: git.host,
      GHE_PROTOCOL: "http",
      DATABASE_URL: db.url,
      OVERSEER_HOME: home,
      OVERSEER_WORKERS: workers,
      OVERSEER_HEARTBEAT_INTERVAL: "500ms",
      OVERSEER_POLL_INTERVAL: "200ms",
      OVERSEER_OUTBOX_SETTLE: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "warn",
    });
    await runner.waitForHealth(60_000);

    const labeled = labeledPayload(ISSUE, { repository });
    labeled.issue.title = "Draft it";
    expect(await sendWebhook(runner.port, "issues", labeled)).toBe(202);
    const task = await waitForState(db.pool, ISSUE, ["running", "failed"]);
    expect(task.state).toBe("running");
    const run = await waitForWorker(db.pool, task.id);
    await waitFor("the draft", async () => existsSync(path.join(run.worktree, "draft.txt")));
    const base = git.git(OWNER, NAME, "rev-parse", "refs/heads/main");

    runner.child.kill("SIGTERM");
    expect(await runner.exited).toBe(0);
    expect(livingMembers(run.pgid)).toEqual([]);
    const [settled] = await runsOf(db.pool, task.id);
    expect(settled).toMatchObject({
      state: "lost",
      charged: false,
      failure_reason: "runner shut down",
    });
    expect(await waitForState(db.pool, ISSUE, ["queued"])).toMatchObject({ attempts: 0 });

    const [subject, parent] = git
      .git(OWNER, NAME, "log", "-1", "--format=%s%n%P", `refs/heads/${task.branch}`)
      .split("\n");
    expect(subject).toBe("WIP (Overseer): stopped: runner shutting down");
    expect(parent).toBe(base);
    expect(git.git(OWNER, NAME, "show", `${task.branch}:draft.txt`)).toBe("draft");
    // The push went to the stand-in with the installation token, as a fetch did before it.
    const pushes = git.requests.filter((request) => request.path.endsWith("/git-receive-pack"));
    expect(pushes.map((push) => [push.token, push.status])).toEqual([[INSTALLATION_TOKEN, 200]]);
    expect(unexpected).toEqual([]);
  }, 120_000);
});
