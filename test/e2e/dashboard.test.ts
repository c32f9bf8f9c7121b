import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTransaction } from "../../src/db/pool.js";
import { type RepoRow, upsertRepo } from "../../src/db/repos.js";
import { appendRunLogChunk } from "../../src/db/run-logs.js";
import { registerRunner } from "../../src/db/runners.js";
import { claimNextTask, type Lease, settleRun } from "../../src/db/runs.js";
import { insertTaskIfAbsent } from "../../src/db/tasks.js";
import { LATEST_MIGRATION } from "../support/constants.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { startTestApp, type TestApp } from "../support/github-app.js";

/**
 * The dashboard over real HTTP: who gets in (loopback only without a token, the token
 * with one), what a stranger's page can make a browser do (nothing: CSRF, DNS rebinding),
 * the task page and its live log stream, the JSON API, /readyz.
 */

const TOKEN = "dashboard-test-admin-token";
const RUNNER = "dashboard-test-runner";
const XSS_TITLE = `Fix <img src=x onerror="alert(document.cookie)"> rendering`;

let db: TestDatabase;
let home: string;
let open: TestApp;
let guarded: TestApp;
let repo: RepoRow;
let nextIssue = 1;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(
  app: TestApp,
  target: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    form?: Record<string, string>;
    from?: string;
  } = {},
): Promise<Answer> {
  const body = options.form ? new URLSearchParams(options.form).toString() : undefined;
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port: app.overseer.port,
        path: target,
        method: options.method ?? (body ? "POST" : "GET"),
        localAddress: options.from,
        headers: {
          ...(body ? { "content-type": "application/x-www-form-urlencoded" } : {}),
          ...options.headers,
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => {
          text += chunk;
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

function cookieOf(answer: Answer, name: string): string | null {
  for (const header of answer.headers["set-cookie"] ?? []) {
    const match = new RegExp(`^${name}=([^;]*)`).exec(header);
    if (match) return match[1] ?? null;
  }
  return null;
}

/** A page's CSRF token (cookie and hidden field agree). */
async function csrfFrom(app: TestApp, page: string, headers: Record<string, string> = {}) {
  const answer = await request(app, page, { headers });
  const token = cookieOf(answer, "overseer_csrf");
  const field = /name="csrf" value="([0-9a-f]{64})"/.exec(answer.body)?.[1];
  if (!token || token !== field) throw new Error(`no CSRF token on ${page}: ${answer.status}`);
  return token;
}

async function seedTask(title = `Issue ${nextIssue}`): Promise<number> {
  const issue = nextIssue++;
  const task = await insertTaskIfAbsent(db.pool, {
    repoId: repo.id,
    issueNumber: issue,
    title,
    state: "queued",
    priority: 2,
    maxAttempts: 3,
    riskLabelled: false,
    workerProfile: "claude",
    baseBranch: null,
    branch: `overseer/${issue}-x`,
    config: { concurrency: 50 },
    labels: [],
  });
  if (!task) throw new Error("exists");
  return task.id;
}

async function claim(): Promise<{ runId: number; taskId: number; lease: Lease }> {
  const claimed = await withTransaction(db.pool, (client) =>
    claimNextTask(client, { runnerId: RUNNER, host: "another-host", leaseMs: 60_000 }),
  );
  if (!claimed) throw new Error("nothing to claim");
  await db.pool.query(
    "UPDATE runs SET log_format = 'claude-stream-json', profile = 'claude' WHERE id = $1",
    [claimed.run.id],
  );
  return {
    runId: claimed.run.id,
    taskId: claimed.task.id,
    lease: { runId: claimed.run.id, token: claimed.run.leaseToken },
  };
}

const ASSISTANT = (text: string) =>
  `${JSON.stringify({ type: "assistant", message: { content: [{ type: "text", text }] } })}\n`;

function settle(lease: Lease) {
  return withTransaction(db.pool, (client) =>
    settleRun(client, lease, {
      outcome: "failed",
      failureReason: "worker exited with code 1",
      event: { type: "run_failed", runner: RUNNER, reason: "worker exited with code 1" },
    }),
  );
}

beforeAll(async () => {
  db = await createTestDatabase();
  home = await mkdtemp(path.join(os.tmpdir(), "overseer-dashboard-"));
  repo = await upsertRepo(db.pool, {
    githubId: 9101,
    fullName: "octo/dash",
    installationId: 1,
    cloneUrl: "http://127.0.0.1:1/octo/dash.git",
    defaultBranch: "main",
  });
  await registerRunner(db.pool, {
    id: RUNNER,
    host: "another-host",
    pid: 1,
    version: "t",
    capacity: 4,
  });
  // An hour of settling: the dispatcher delivers nothing during these tests.
  open = await startTestApp(db.url, { OVERSEER_HOME: home, OVERSEER_OUTBOX_SETTLE: "1h" });
  guarded = await startTestApp(db.url, {
    OVERSEER_HOME: home,
    OVERSEER_ADMIN_TOKEN: TOKEN,
    OVERSEER_OUTBOX_SETTLE: "1h",
  });
}, 60_000);

afterAll(async () => {
  await open?.stop();
  await guarded?.stop();
  await db?.drop();
  if (home) await rm(home, { recursive: true, force: true });
});

describe("without OVERSEER_ADMIN_TOKEN: loopback only", () => {
  it("serves the task list to 127.0.0.1, with what a task's title says escaped, never run", async () => {
    await seedTask(XSS_TITLE);
    const page = await request(open, "/");
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["content-security-policy"]).toContain("script-src 'self'");
    expect(page.body).toContain(
      "Fix &lt;img src=x onerror=&quot;alert(document.cookie)&quot;&gt; rendering",
    );
    expect(page.body).not.toContain("<img src=x");
  });

  it("refuses 127.0.0.2 (not this host's loopback address) with a line saying how to enable access", async () => {
    for (const target of ["/", "/api/tasks", "/metrics", "/tasks/1"]) {
      const refused = await request(open, target, { from: "127.0.0.2" });
      expect(refused.status).toBe(403);
      expect(refused.body).toMatch(
        /only loopback clients \(127\.0\.0\.1, ::1\).*came from 127\.0\.0\.2/,
      );
      expect(refused.body).toContain(
        "Set OVERSEER_ADMIN_TOKEN (16 characters or more) to allow access from elsewhere",
      );
    }
    // Liveness and readiness stay open: load balancers ask them from anywhere.
    expect((await request(open, "/healthz", { from: "127.0.0.2" })).status).toBe(200);
    expect((await request(open, "/readyz", { from: "127.0.0.2" })).status).toBe(200);
  });

  it("refuses what a proxy on this host forwards, and a foreign Host (DNS rebinding)", async () => {
    const proxied = await request(open, "/api/tasks", {
      headers: { "x-forwarded-for": "203.0.113.5" },
    });
    expect(proxied.status).toBe(403);
    expect(proxied.body).toContain("came through a proxy");
    const rebound = await request(open, "/api/tasks", { headers: { host: "attacker.example:80" } });
    expect(rebound.status).toBe(403);
    expect(rebound.body).toContain('not to the host name "attacker.example"');
  });

  it("a button needs the page's CSRF token and our own origin; then it acts through the write path as operator:dashboard", async () => {
    const id = await seedTask();
    const csrf = await csrfFrom(open, `/tasks/${id}`);
    const cookie = `overseer_csrf=${csrf}`;
    const forged = await request(open, `/tasks/${id}/cancel`, {
      form: { csrf: "0".repeat(64) },
      headers: { cookie },
    });
    expect(forged.status).toBe(403);
    const noToken = await request(open, `/tasks/${id}/cancel`, {
      form: { x: "1" },
      headers: { cookie },
    });
    expect(noToken.status).toBe(403);
    const elsewhere = await request(open, `/tasks/${id}/cancel`, {
      form: { csrf },
      headers: { cookie, origin: "http://attacker.example" },
    });
    expect(elsewhere.status).toBe(403);
    expect((await db.pool.query("SELECT state FROM tasks WHERE id = $1", [id])).rows[0].state).toBe(
      "queued",
    );

    const accepted = await request(open, `/tasks/${id}/cancel`, {
      form: { csrf },
      headers: { cookie, origin: `http://127.0.0.1:${open.overseer.port}` },
    });
    expect(accepted.status).toBe(303);
    expect(accepted.headers.location).toBe(`/tasks/${id}?done=cancel`);
    const events = await db.pool.query(
      "SELECT actor, cause, detail, to_state FROM task_events WHERE task_id = $1 AND event = 'command:cancel'",
      [id],
    );
    expect(events.rows).toEqual([
      {
        actor: "operator:dashboard",
        cause: "command:/cancel",
        detail: { command: "/cancel", via: "dashboard" },
        to_state: "cancelled",
      },
    ]);
    const entries = await db.pool.query(
      "SELECT kind FROM outbox WHERE task_id = $1 AND delivered_at IS NULL ORDER BY kind",
      [id],
    );
    expect(entries.rows.map((row) => row.kind)).toEqual(["state_label", "status_comment"]);
    const after = await request(open, accepted.headers.location ?? "/", { headers: { cookie } });
    expect(after.body).toContain("Cancel accepted.");

    const refused = await request(open, `/tasks/${id}/cancel`, {
      form: { csrf },
      headers: { cookie },
    });
    expect(refused.status).toBe(409);
    expect(refused.body).toContain("Refused: cannot /cancel: task is already cancelled");
  });
});

describe("with OVERSEER_ADMIN_TOKEN", () => {
  it("needs the token everywhere but /healthz and /readyz; a browser is sent to the login form", async () => {
    const page = await request(guarded, "/tasks/1", { headers: { accept: "text/html" } });
    expect(page.status).toBe(303);
    expect(page.headers.location).toBe("/login?next=%2Ftasks%2F1");
    const api = await request(guarded, "/api/tasks");
    expect(api.status).toBe(401);
    expect(api.headers["www-authenticate"]).toBe('Bearer realm="overseer"');
    expect((await request(guarded, "/metrics")).status).toBe(401);
    const wrong = await request(guarded, "/api/tasks", {
      headers: { authorization: `Bearer ${TOKEN}-no` },
    });
    expect(wrong.status).toBe(401);
    const right = await request(guarded, "/api/tasks", {
      headers: { authorization: `Bearer ${TOKEN}` },
      from: "127.0.0.2",
    });
    expect(right.status).toBe(200);
    expect(JSON.parse(right.body).length).toBeGreaterThan(0);
  });

  it("the login form sets an HttpOnly, SameSite=Strict session cookie for the right token only", async () => {
    const form = await request(guarded, "/login?next=/runners");
    expect(form.status).toBe(200);
    const csrf = cookieOf(form, "overseer_csrf");
    expect(csrf).toMatch(/^[0-9a-f]{64}$/);
    const cookie = `overseer_csrf=${csrf}`;
    const bad = await request(guarded, "/login", {
      form: { csrf: csrf ?? "", token: "guess-guess-guess", next: "/runners" },
      headers: { cookie },
    });
    expect(bad.status).toBe(401);
    expect(bad.body).toContain("That is not the admin token.");
    expect(cookieOf(bad, "overseer_session")).toBeNull();

    const good = await request(guarded, "/login", {
      form: { csrf: csrf ?? "", token: TOKEN, next: "https://attacker.example/" },
      headers: { cookie },
    });
    expect(good.status).toBe(303);
    expect(good.headers.location).toBe("/");
    const setCookie = (good.headers["set-cookie"] ?? []).find((c) =>
      c.startsWith("overseer_session="),
    );
    expect(setCookie).toMatch(/; HttpOnly; SameSite=Strict; Max-Age=43200/);
    const session = cookieOf(good, "overseer_session");
    const inside = await request(guarded, "/runners", {
      headers: { cookie: `overseer_session=${session}` },
    });
    expect(inside.status).toBe(200);
    expect(inside.body).toContain(RUNNER);
    const tampered = await request(guarded, "/runners", {
      headers: {
        cookie: `overseer_session=${session?.replace(/.$/, (c) => (c === "A" ? "B" : "A"))}`,
      },
    });
    expect(tampered.status).toBe(401);
  });

  it("a script with the bearer token may POST without a CSRF token (a browser cannot add that header)", async () => {
    const id = await seedTask();
    const stopped = await request(guarded, `/api/tasks/${id}/stop`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(stopped.status).toBe(200);
    expect(JSON.parse(stopped.body)).toEqual({
      id,
      command: "stop",
      from: "queued",
      state: "stopped",
      stopRequested: false,
    });
    const again = await request(guarded, `/api/tasks/${id}/stop`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(again.status).toBe(409);
    expect(JSON.parse(again.body)).toEqual({
      error: "cannot /stop: task is already stopped",
      state: "stopped",
    });
  });
});

describe("the task page and its live log", () => {
  it("shows the runs, the events and the transcript; the stream sends new entries as they are written, then the end", async () => {
    const id = await seedTask();
    // Only this task is claimable now.
    await db.pool.query(
      "UPDATE tasks SET state = 'cancelled' WHERE state = 'queued' AND id <> $1",
      [id],
    );
    const { runId, taskId, lease } = await claim();
    expect(taskId).toBe(id);
    const first = Buffer.from(ASSISTANT("Looking at the failing test."));
    await appendRunLogChunk(db.pool, lease, { seq: 0, offset: 0, body: first }, 1 << 20);

    const page = await request(open, `/tasks/${id}`);
    expect(page.status).toBe(200);
    expect(page.body).toContain("Looking at the failing test.");
    expect(page.body).toMatch(/<td>another-host<\/td>/);
    expect(page.body).toContain("runner:dashboard-test-runner");
    expect(page.body).toContain(
      `data-log-stream="/tasks/${id}/runs/${runId}/log/stream?from=${first.length}"`,
    );

    const events: string[] = [];
    const streamed = new Promise<void>((resolve, reject) => {
      const req = http.get(
        {
          host: "127.0.0.1",
          port: open.overseer.port,
          path: `/tasks/${id}/runs/${runId}/log/stream?from=${first.length}`,
        },
        (res) => {
          expect(res.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
          res.setEncoding("utf8");
          let buffer = "";
          res.on("data", (chunk: string) => {
            buffer += chunk;
            let end = buffer.indexOf("\n\n");
            while (end !== -1) {
              events.push(buffer.slice(0, end));
              buffer = buffer.slice(end + 2);
              end = buffer.indexOf("\n\n");
            }
          });
          res.on("end", resolve);
        },
      );
      req.on("error", reject);
    });
    const second = Buffer.from(ASSISTANT("Fixed <b>it</b>."));
    await new Promise((resolve) => setTimeout(resolve, 300));
    await appendRunLogChunk(
      db.pool,
      lease,
      { seq: 1, offset: first.length, body: second },
      1 << 20,
    );
    const deadline = Date.now() + 10_000;
    while (!events.some((event) => event.includes("Fixed")) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await settle(lease);
    await streamed;
    expect(events).toEqual([
      `id: ${first.length + second.length}\nevent: entries\ndata: <div class="entry entry-message"><span class="marker">»</span><span class="body">Fixed &lt;b&gt;it&lt;/b&gt;.</span></div>`,
      "event: end\ndata: failed",
    ]);

    const raw = await request(open, `/tasks/${id}/runs/${runId}/log`);
    expect(raw.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(raw.headers["content-security-policy"]).toContain("sandbox");
    expect(raw.body).toBe(`${first}${second}`);
    const other = await request(open, `/tasks/${id + 1000}/runs/${runId}/log`);
    expect(other.status).toBe(404);
  });

  it("the JSON API gives the CLI's shapes; charts, runners and findings render", async () => {
    const [list, detail] = await Promise.all([
      request(open, "/api/tasks?state=failed"),
      request(open, "/api/status"),
    ]);
    expect(JSON.parse(list.body)[0]).toMatchObject({
      state: "failed",
      repo: "octo/dash",
      profile: "claude",
    });
    expect(JSON.parse(detail.body)).toMatchObject({
      database: "up",
      watchdog: { available: true },
    });
    const charts = await request(open, "/charts");
    expect(charts.body.match(/<svg class="chart"/g)).toHaveLength(4);
    expect(charts.body).toContain("Tasks finished per day");
    const findings = await request(open, "/findings");
    expect(findings.body).toContain("<h1>Watchdog findings</h1>");
    expect(findings.body).not.toContain("watchdog not available");
    // Any page's token will do.
    const csrf = await csrfFrom(open, "/tasks/1");
    const repair = await request(open, "/findings/repair", {
      form: { csrf, id: "expired_lease:run:1" },
      headers: { cookie: `overseer_csrf=${csrf}` },
    });
    expect(repair.status).toBe(409);
    expect(repair.body).toContain("Not repaired: no such finding now");
  });

  it("/readyz: ready when the database answers with the schema this code expects", async () => {
    const ready = await request(open, "/readyz");
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toMatchObject({
      status: "ready",
      database: "up",
      mode: "app",
      schema: LATEST_MIGRATION,
    });
  });
});
