import { describe, expect, it } from "vitest";
import { EnvError, readEnv } from "../../src/config/env.js";

const PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n";

describe("readEnv", () => {
  it("applies defaults to an empty environment", () => {
    const env = readEnv({});
    expect(env).toMatchObject({
      port: 3000,
      appId: undefined,
      webhookSecret: undefined,
      githubApiUrl: "https://api.github.com",
      runnerCapacity: 2,
      heartbeatIntervalMs: 10_000,
      leaseMs: 30_000,
      tickIntervalMs: 30_000,
    });
    expect(env.home).toMatch(/\.overseer$/);
  });

  it("builds the API URL from GHE_HOST and GHE_PROTOCOL", () => {
    const env = readEnv({ GHE_HOST: "127.0.0.1:8443", GHE_PROTOCOL: "http" });
    expect(env.githubApiUrl).toBe("http://127.0.0.1:8443/api/v3");
  });

  it("reads durations with units", () => {
    const env = readEnv({ OVERSEER_HEARTBEAT_INTERVAL: "2s", OVERSEER_TICK_INTERVAL: "1m" });
    expect(env.heartbeatIntervalMs).toBe(2_000);
    expect(env.leaseMs).toBe(6_000);
    expect(env.tickIntervalMs).toBe(60_000);
  });

  it("decodes a private key given with escaped newlines or base64", () => {
    const secret = { WEBHOOK_SECRET: "s3cret" };
    const escaped = readEnv({ APP_ID: "1", PRIVATE_KEY: PEM.replace(/\n/g, "\\n"), ...secret });
    expect(escaped.privateKey).toBe(PEM);
    const base64 = readEnv({
      APP_ID: "1",
      PRIVATE_KEY: Buffer.from(PEM).toString("base64"),
      ...secret,
    });
    expect(base64.privateKey).toBe(PEM);
  });

  it.each([
    [{ PORT: "abc" }, /^Invalid environment: PORT: expected a TCP port number, got "abc"$/],
    [{ PORT: "70000" }, /^Invalid environment: PORT: expected a TCP port number from 0 to 65535$/],
    [
      { DATABASE_URL: "nonsense" },
      /^Invalid environment: DATABASE_URL: expected a URL like postgres:/,
    ],
    [{ DATABASE_URL: "mysql://h/db" }, /^Invalid environment: DATABASE_URL: /],
    [{ APP_ID: "twelve" }, /^Invalid environment: APP_ID: expected a positive whole number/],
    [{ APP_ID: "12" }, /^Invalid environment: PRIVATE_KEY: APP_ID is set/],
    [
      { APP_ID: "12", PRIVATE_KEY: "not a key" },
      /^Invalid environment: PRIVATE_KEY: expected a PEM/,
    ],
    [
      { PRIVATE_KEY_PATH: "/nonexistent/key.pem" },
      /^Invalid environment: PRIVATE_KEY_PATH: no such file/,
    ],
    [{ GHE_PROTOCOL: "ftp" }, /^Invalid environment: GHE_PROTOCOL: /],
    [
      { GHE_HOST: "https://ghe.example.com" },
      /^Invalid environment: GHE_HOST: expected a host name/,
    ],
    [{ LOG_LEVEL: "loud" }, /^Invalid environment: LOG_LEVEL: /],
    [
      { OVERSEER_ADMIN_TOKEN: "short" },
      /^Invalid environment: OVERSEER_ADMIN_TOKEN: expected at least 16/,
    ],
    [{ OVERSEER_RUNNER_CAPACITY: "0" }, /^Invalid environment: OVERSEER_RUNNER_CAPACITY: /],
    [
      { OVERSEER_HEARTBEAT_INTERVAL: "soon" },
      /^Invalid environment: OVERSEER_HEARTBEAT_INTERVAL: expected a duration like 10s/,
    ],
    // A bare number was once read as milliseconds here while worker profiles refused it.
    [
      { OVERSEER_HEARTBEAT_INTERVAL: "600" },
      /^Invalid environment: OVERSEER_HEARTBEAT_INTERVAL: expected a duration like 10s, got "600"/,
    ],
    [
      { OVERSEER_MAX_RUN: "7200" },
      /^Invalid environment: OVERSEER_MAX_RUN: expected a duration like 2h, got "7200"/,
    ],
    [
      { OVERSEER_OUTBOX_SETTLE: "250" },
      /^Invalid environment: OVERSEER_OUTBOX_SETTLE: expected a duration like 2s, or 0, got "250"/,
    ],
    [{ OVERSEER_TICK_INTERVAL: "0" }, /^Invalid environment: OVERSEER_TICK_INTERVAL: /],
    [
      { OVERSEER_HEARTBEAT_INTERVAL: "10s", OVERSEER_LEASE: "5s" },
      /^Invalid environment: OVERSEER_LEASE: must be longer/,
    ],
    [
      { OVERSEER_WORKERS: "/nonexistent/workers.yml" },
      /^Invalid environment: OVERSEER_WORKERS: no such file/,
    ],
  ])("rejects %o with one line naming the variable", (source, message) => {
    let thrown: unknown;
    try {
      readEnv(source);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(EnvError);
    const text = (thrown as Error).message;
    expect(text).toMatch(message);
    expect(text).not.toContain("\n");
  });

  it("takes 0 where a setting allows zero, and fractions with a unit", () => {
    expect(readEnv({ OVERSEER_OUTBOX_SETTLE: "0" }).outboxSettleMs).toBe(0);
    expect(readEnv({ OVERSEER_OUTBOX_SETTLE: "1.5s" }).outboxSettleMs).toBe(1_500);
    expect(readEnv({ OVERSEER_POLL_INTERVAL: "250ms" }).pollIntervalMs).toBe(250);
  });

  it("treats empty values as unset", () => {
    expect(readEnv({ PORT: "", DATABASE_URL: "" }).port).toBe(3000);
  });
});
