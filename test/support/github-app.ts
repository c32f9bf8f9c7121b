import { createHmac, generateKeyPairSync, randomUUID } from "node:crypto";
import nock from "nock";
import { pino } from "pino";
import { readEnv } from "../../src/config/env.js";
import { createPool, type Pool, type Queryable } from "../../src/db/pool.js";
import { type Overseer, type ProcessMode, startOverseer } from "../../src/index.js";
import { type DeliveryRow, settledDelivery } from "./deliveries.js";
import { type LoosePayload, nextEventTime, webhookExample } from "./webhook-examples.js";

/**
 * GitHub's REST API as the app under test sees it: api.github.com, or, once a test file
 * hosts its repository on the git stand-in (`useGithubHost`), GitHub Enterprise on the
 * stand-in's host, where git goes too (Overseer's git only ever talks to the configured
 * host). A live binding: read it when mocking, not at import.
 */
export let API = "https://api.github.com";
let githubHostEnv: Record<string, string> = {};

/** Makes `server` the GitHub host of this test file: API mocks and the app's GHE_HOST. */
export function useGithubHost(server: { host: string; url: string }): void {
  API = `${server.url}/api/v3`;
  githubHostEnv = { GHE_HOST: server.host, GHE_PROTOCOL: "http" };
}

/** A path as the mocks match it, without the Enterprise API prefix. */
export function apiPath(uri: string): string {
  return uri.replace(/^\/api\/v3(?=\/)/, "");
}
export const WEBHOOK_SECRET = "test-webhook-secret";
export const INSTALLATION_ID = 4242;

const { privateKey } = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  privateKeyEncoding: { type: "pkcs1", format: "pem" },
  publicKeyEncoding: { type: "spki", format: "pem" },
});

/**
 * A deep copy of GitHub's own example payload for `event.action`, with our installation.
 * Its issue was updated now (after every payload built before), as the event's would be.
 */
export function examplePayload(event: string, action: string): LoosePayload {
  const payload = webhookExample(event, action);
  payload.installation = {
    id: INSTALLATION_ID,
    node_id: "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==",
  };
  if (payload.issue) payload.issue.updated_at = nextEventTime();
  return payload;
}

export interface TestApp {
  overseer: Overseer;
  url: string;
  /**
   * Delivers a webhook as GitHub does (signed, with event and delivery headers) and, once
   * it is answered, waits until the attempt it was stored for has ended (see
   * settledDelivery), so the test reads the database after the delivery's effect.
   * `settle: false` returns with the answer.
   */
  send(
    event: string,
    payload: unknown,
    options?: { id?: string; secret?: string | null; settle?: boolean },
  ): Promise<{ status: number; id: string }>;
  /** Waits for a delivery's attempt to end, through a pool of the test's own. */
  settled(id: string): Promise<DeliveryRow | null>;
  /** Waits until the outbox has nothing pending (or throws after `timeoutMs`). */
  settleOutbox(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startTestApp(
  databaseUrl: string,
  extraEnv: Record<string, string> = {},
  mode: ProcessMode = "serve",
): Promise<TestApp> {
  const env = readEnv({
    APP_ID: "123",
    PRIVATE_KEY: privateKey,
    WEBHOOK_SECRET,
    DATABASE_URL: databaseUrl,
    PORT: "0",
    HOST: "127.0.0.1",
    OVERSEER_POLL_INTERVAL: "200ms",
    OVERSEER_OUTBOX_SETTLE: "0",
    // The app's own watchdog stays out of tests that stage their faults for others to
    // find; the watchdog's tests set their own interval.
    OVERSEER_TICK_INTERVAL: "1h",
    ...githubHostEnv,
    ...extraEnv,
  });
  const overseer = await startOverseer(
    env,
    pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    mode,
  );
  const url = `http://127.0.0.1:${overseer.port}`;
  // The test's own connection: a test may take the app's pool away to stage an outage.
  let observer: Pool | undefined;
  const settled = (id: string) => {
    observer ??= createPool(databaseUrl, undefined, 2);
    return settledDelivery(observer, id);
  };
  return {
    overseer,
    url,
    settled,
    async send(event, payload, options = {}) {
      const id = options.id ?? randomUUID();
      const body = JSON.stringify(payload);
      const headers: Record<string, string> = {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": id,
        "user-agent": "GitHub-Hookshot/test",
      };
      if (options.secret !== null) {
        const signature = createHmac("sha256", options.secret ?? WEBHOOK_SECRET)
          .update(body)
          .digest("hex");
        headers["x-hub-signature-256"] = `sha256=${signature}`;
      }
      const response = await fetch(`${url}/api/github/webhooks`, { method: "POST", headers, body });
      await response.text();
      if (response.ok && options.settle !== false) await settled(id);
      return { status: response.status, id };
    },
    async settleOutbox(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const pending = await overseer.db.pool.query<{ count: number }>(
          "SELECT count(*)::int AS count FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL",
        );
        if (pending.rows[0]?.count === 0) return;
        if (Date.now() > deadline) {
          throw new Error(`outbox still has ${pending.rows[0]?.count} pending entries`);
        }
        overseer.dispatcher?.wake();
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    async stop() {
      await overseer.stop();
      await observer?.end();
    },
  };
}

/**
 * The installation token exchange every installation-authenticated call starts with.
 * Optional: Probot caches the token, so whether a test exchanges one depends on the tests
 * before it; it is plumbing, not a call a test asserts.
 */
export function mockInstallationToken(times = 1): nock.Scope {
  return nock(API)
    .post(`/app/installations/${INSTALLATION_ID}/access_tokens`)
    .times(times)
    .optionally()
    .reply(201, {
      token: "ghs_testinstallationtoken",
      expires_at: new Date(Date.now() + 3_600_000).toISOString(),
      permissions: { issues: "write", pull_requests: "write", contents: "write" },
      repository_selection: "all",
    });
}

/**
 * Ages what Overseer stored of earlier config reads (github_conditional_reads) past
 * ABSENT_CONFIG_TRUST_MS, as if the next event came minutes later: a missing file is asked
 * for again instead of trusted. For tests whose events each read the config afresh.
 */
export async function ageConfigReads(db: Queryable): Promise<void> {
  await db.query(
    `UPDATE github_conditional_reads SET fetched_at = fetched_at - interval '1 hour'
      WHERE key LIKE 'config:%'`,
  );
}

/** Probot reads .github/overseer.yml from the repository, then from the owner's .github repo. */
export function mockRepoConfig(owner: string, repo: string, yaml: string | null): nock.Scope {
  const scope = nock(API);
  const path = /\/contents\/\.github(%2F|\/)overseer\.yml/;
  if (yaml === null) {
    scope
      .get((uri) => apiPath(uri).startsWith(`/repos/${owner}/${repo}/contents/`) && path.test(uri))
      .reply(404, { message: "Not Found" })
      .get((uri) => apiPath(uri).startsWith(`/repos/${owner}/.github/contents/`) && path.test(uri))
      .reply(404, { message: "Not Found" });
  } else {
    scope
      .get((uri) => apiPath(uri).startsWith(`/repos/${owner}/${repo}/contents/`) && path.test(uri))
      .reply(200, yaml, { "content-type": "text/plain; charset=utf-8" });
  }
  return scope;
}
