import { generateKeyPairSync } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import nock from "nock";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readEnv } from "../../src/config/env.js";
import { createPool } from "../../src/db/pool.js";
import { startOverseer } from "../../src/index.js";
import { healthHandler } from "../../src/web/health.js";
import { closeServer, createHttpServer, listen } from "../../src/web/http.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  examplePayload,
  mockInstallationToken,
  mockRepoConfig,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";
import { mockReplies, OWNER, REPO } from "../support/hardening.js";
import { runOverseer } from "../support/process.js";

/**
 * The edge refuses abuse before it costs anything: no App credentials without a webhook
 * secret, no body past GitHub's 25 MB cap read into memory, no setup pages for strangers,
 * no unbounded repository config, no driver messages in /healthz.
 */

let db: TestDatabase;
let app: TestApp;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url, { OVERSEER_OUTBOX_RETRY_BASE: "20ms" });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

const MB = 1024 * 1024;
/** As test/support/network.ts allows it. */
const LOOPBACK = /^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/;

describe("App credentials need a webhook secret", () => {
  const { privateKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  });

  it.each([
    ["unset", {}],
    ["Probot's public default", { WEBHOOK_SECRET: "development" }],
  ])(
    "WEBHOOK_SECRET %s: the process refuses to start with one line naming it",
    async (_, secret) => {
      const result = await runOverseer(["start"], {
        APP_ID: "123",
        PRIVATE_KEY: privateKey,
        // Unreachable on purpose: the secret must be refused before anything connects.
        DATABASE_URL: "postgres://overseer:pw@127.0.0.1:1/overseer",
        ...secret,
      });
      expect(result.code).toBe(78);
      const lines = result.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^overseer: Invalid environment: WEBHOOK_SECRET: /);
    },
  );
});

describe("request bodies past 25 MB", () => {
  function openWebhookRequest(headers: Record<string, string | number>) {
    const url = new URL(app.url);
    return http.request({
      host: url.hostname,
      port: url.port,
      method: "POST",
      path: "/api/github/webhooks",
      headers: {
        "content-type": "application/json",
        "x-github-event": "issues",
        "x-github-delivery": `big-${Date.now()}`,
        "x-hub-signature-256": `sha256=${"0".repeat(64)}`,
        ...headers,
      },
    });
  }

  it("are refused with 413 from their Content-Length, before a byte of the body is sent", async () => {
    const request = openWebhookRequest({ "content-length": 30 * MB });
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      request.on("response", resolve);
      request.on("error", reject);
      request.flushHeaders();
    });
    expect(response.statusCode).toBe(413);
    response.resume();
    request.destroy();
  });

  it("are refused with 413 as soon as the count passes 25 MB, the rest unread, memory flat", async () => {
    const sendUpTo = 256 * MB;
    const chunk = Buffer.alloc(MB, "a");
    const chunkFrame = Buffer.concat([
      Buffer.from(`${chunk.length.toString(16)}\r\n`),
      chunk,
      Buffer.from("\r\n"),
    ]);
    const baseline = process.memoryUsage.rss();
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss());
    }, 5);
    // A raw socket, so that what the client could send is what the server let in: a write
    // that does not drain means the server stopped reading.
    const url = new URL(app.url);
    const socket = net.connect(Number(url.port), url.hostname);
    await once(socket, "connect");
    let answer = "";
    const answered = new Promise<void>((resolve) => {
      socket.on("data", (data) => {
        answer += data;
        if (answer.includes("\r\n\r\n")) resolve();
      });
      socket.on("close", () => resolve());
      socket.on("error", () => resolve());
    });
    let done = false;
    void answered.then(() => {
      done = true;
    });
    socket.write(
      [
        "POST /api/github/webhooks HTTP/1.1",
        `Host: ${url.host}`,
        "Content-Type: application/json",
        "X-GitHub-Event: issues",
        "X-GitHub-Delivery: big-stream",
        `X-Hub-Signature-256: sha256=${"0".repeat(64)}`,
        "Transfer-Encoding: chunked",
        "",
        "",
      ].join("\r\n"),
    );
    let sent = 0;
    while (!done && sent < sendUpTo) {
      sent += chunk.length;
      if (!socket.write(chunkFrame)) {
        await Promise.race([once(socket, "drain"), answered]);
      }
    }
    await answered;
    clearInterval(sampler);
    socket.destroy();
    const grewMb = (peak - baseline) / MB;
    console.log(
      `body limit: client sent ${Math.round(sent / MB)} MB of ${sendUpTo / MB} MB before the 413; RSS grew ${grewMb.toFixed(1)} MB`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    // The server stopped reading: TCP pushed back long before the client could send it all.
    expect(sent).toBeLessThan(sendUpTo);
    // Nothing near the body's size was held: at most the 25 MB cap and buffers.
    expect(grewMb).toBeLessThan(100);
  });
});

describe("setup mode", () => {
  const external = Object.values(os.networkInterfaces())
    .flat()
    .find((address) => address && address.family === "IPv4" && !address.internal)?.address;
  let home: string;
  let setup: Awaited<ReturnType<typeof startOverseer>> | undefined;
  const logged: string[] = [];

  beforeAll(async () => {
    // This machine's other address plays "another machine"; GitHub stays blocked.
    nock.enableNetConnect(
      (host) => LOOPBACK.test(host) || (external !== undefined && host.startsWith(`${external}:`)),
    );
    home = await mkdtemp(path.join(os.tmpdir(), "overseer-setup-"));
    // Probot's setup app reads this from the process environment: no smee.io channel.
    process.env.NO_SMEE_SETUP = "true";
    const sink = new Writable({
      write(line, _encoding, callback) {
        logged.push(String(line));
        callback();
      },
    });
    setup = await startOverseer(
      readEnv({ DATABASE_URL: db.url, PORT: "0", HOST: "0.0.0.0", OVERSEER_HOME: home }),
      pino({ level: "info" }, sink),
      "serve",
    );
  });
  afterAll(async () => {
    nock.enableNetConnect(LOOPBACK);
    await setup?.stop();
    if (home) await rm(home, { recursive: true, force: true });
  });

  const at = (host: string, route: string) => `http://${host}:${setup?.port}${route}`;

  it("answers this machine", async () => {
    expect(setup?.mode).toBe("setup");
    const page = await fetch(at("127.0.0.1", "/probot"));
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("Register GitHub App");
  });

  it.runIf(external)(
    "refuses POST /probot/import from another address, and lets the printed setup token through",
    async () => {
      const host = external as string;
      const planted = await fetch(at(host, "/probot/import"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({}),
      });
      expect(planted.status).toBe(403);
      expect((await fetch(at(host, "/probot"))).status).toBe(403);
      // Relayed by a proxy on this machine: not local, whatever the socket says.
      const relayed = await fetch(at("127.0.0.1", "/probot/import"), {
        method: "POST",
        headers: { "content-type": "application/json", "x-forwarded-for": "203.0.113.9" },
        body: JSON.stringify({}),
      });
      expect(relayed.status).toBe(403);

      const token = /setup_token=([A-Za-z0-9_-]+)/.exec(logged.join(""))?.[1];
      expect(token).toBeDefined();
      const page = await fetch(at(host, `/probot?setup_token=${token}`));
      expect(page.status).toBe(200);
      const cookie = page.headers.get("set-cookie")?.split(";")[0] ?? "";
      // With the token's cookie the request reaches Probot, which wants its fields (and
      // writes nothing without them).
      const imported = await fetch(at(host, "/probot/import"), {
        method: "POST",
        headers: { "content-type": "application/json", cookie },
        body: JSON.stringify({}),
      });
      expect(imported.status).toBe(400);
      const wrong = await fetch(at(host, "/probot?setup_token=guess"));
      expect(wrong.status).toBe(403);
    },
  );
});

describe("repository config limits", () => {
  it("a .github/overseer.yml over 64 KB is refused with one comment, and nothing is queued", async () => {
    mockInstallationToken().persist();
    const issue = 901;
    const padding = `# ${"x".repeat(100)}\n`.repeat(700);
    mockRepoConfig(OWNER, REPO, `label: overseer\n${padding}`);
    const told = mockReplies(issue);
    const payload = examplePayload("issues", "labeled");
    payload.issue.number = issue;
    payload.label = { ...payload.label, name: "overseer" };
    payload.issue.labels = [payload.label];
    expect((await app.send("issues", payload)).status).toBe(202);
    await app.settleOutbox();
    expect(told.bodies).toHaveLength(1);
    expect(told.bodies[0]).toContain("Overseer reads at most 64 KB");
    const tasks = await db.pool.query("SELECT 1 FROM tasks WHERE issue_number = $1", [issue]);
    expect(tasks.rowCount).toBe(0);
  });
});

describe("/healthz", () => {
  it("says database: down without the driver's message, which goes to the log", async () => {
    const pool = createPool("postgres://overseer:pw@127.0.0.1:1/overseer");
    const logged: string[] = [];
    const log = pino(
      { level: "info" },
      new Writable({
        write(line, _encoding, callback) {
          logged.push(String(line));
          callback();
        },
      }),
    );
    const server = createHttpServer([healthHandler(pool, () => "app", log)], log);
    const port = await listen(server, 0, "127.0.0.1");
    try {
      const response = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(response.status).toBe(503);
      expect(await response.json()).toEqual({
        status: "unavailable",
        database: "down",
        mode: "app",
      });
      expect(logged.join("")).toContain("ECONNREFUSED");
    } finally {
      await closeServer(server);
      await pool.end();
    }
  });
});
