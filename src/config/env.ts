import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { durationSchema } from "./durations.js";

/**
 * Operator configuration, read once from the environment at start-up. A bad value stops
 * the process with one line naming the variable; inside, these types are trusted.
 */

function duration(example: string, rule: { allowZero?: boolean } = {}) {
  return durationSchema({ examples: example, ...rule });
}

const port = z
  .string()
  .regex(/^\d+$/, { error: (issue) => `expected a TCP port number, got "${issue.input}"` })
  .transform(Number)
  .refine((n) => n >= 0 && n <= 65_535, { error: "expected a TCP port number from 0 to 65535" });

const postgresUrl = z.string().refine(
  (raw) => {
    try {
      const url = new URL(raw);
      return (url.protocol === "postgres:" || url.protocol === "postgresql:") && url.host !== "";
    } catch {
      return false;
    }
  },
  { error: "expected a URL like postgres://user:password@host:5432/database" },
);

const publicUrl = z.string().refine(
  (raw) => {
    try {
      const url = new URL(raw);
      return (url.protocol === "https:" || url.protocol === "http:") && url.search === "";
    } catch {
      return false;
    }
  },
  {
    error: "expected the dashboard's address as people reach it, like https://overseer.example.com",
  },
);

const positiveInt = z
  .string()
  .regex(/^\d+$/, { error: (issue) => `expected a positive whole number, got "${issue.input}"` })
  .transform(Number)
  .refine((n) => n > 0, { error: "expected a positive whole number" });

const envSchema = z.object({
  APP_ID: positiveInt.optional(),
  PRIVATE_KEY: z.string().min(1).optional(),
  PRIVATE_KEY_PATH: z
    .string()
    .refine((file) => existsSync(file), { error: (issue) => `no such file: ${issue.input}` })
    .optional(),
  WEBHOOK_SECRET: z.string().min(1).optional(),
  WEBHOOK_PATH: z.string().startsWith("/").default("/api/github/webhooks"),
  GHE_HOST: z
    .string()
    .regex(/^[A-Za-z0-9.-]+(:\d+)?$/, {
      error: "expected a host name (and optional :port), without protocol or path",
    })
    .optional(),
  GHE_PROTOCOL: z.enum(["http", "https"]).default("https"),
  PORT: port.default(3000),
  HOST: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  DATABASE_URL: postgresUrl.optional(),
  OVERSEER_HOME: z.string().min(1).default(".overseer"),
  OVERSEER_WORKERS: z
    .string()
    .refine((file) => existsSync(file), { error: (issue) => `no such file: ${issue.input}` })
    .optional(),
  OVERSEER_ADMIN_TOKEN: z
    .string()
    .min(16, { error: "expected at least 16 characters, so it cannot be guessed" })
    .optional(),
  OVERSEER_RUNNER_CAPACITY: positiveInt.default(2),
  OVERSEER_HEARTBEAT_INTERVAL: duration("10s").default(10_000),
  /** Default: three heartbeats, so one late heartbeat never loses a lease. */
  OVERSEER_LEASE: duration("30s").optional(),
  OVERSEER_POLL_INTERVAL: duration("5s").default(5_000),
  OVERSEER_DELIVERY_LEASE: duration("60s").default(60_000),
  OVERSEER_TICK_INTERVAL: duration("30s").default(30_000),
  OVERSEER_RUNNER_STALE_AFTER: duration("60s").default(60_000),
  OVERSEER_MAX_RUN: duration("2h").default(2 * 3_600_000),
  OVERSEER_OUTBOX_RETRY_BASE: duration("1s").default(1_000),
  OVERSEER_REQUEUE_BACKOFF: duration("30s").default(30_000),
  OVERSEER_OUTBOX_SETTLE: duration("2s", { allowZero: true }).default(2_000),
  OVERSEER_PUBLIC_URL: publicUrl.optional(),
  OVERSEER_USAGE_LIMIT_BACKOFF: duration("5m").default(5 * 60_000),
});

export interface OverseerEnv {
  appId: number | undefined;
  /** PEM text, from PRIVATE_KEY (possibly base64 or with escaped newlines) or PRIVATE_KEY_PATH. */
  privateKey: string | undefined;
  /** Where the key was read from, if from a file: workers must never see it. */
  privateKeyPath: string | undefined;
  /** Set whenever App credentials are (readEnv refuses them without it). */
  webhookSecret: string | undefined;
  webhookPath: string;
  /** GitHub REST base URL, honouring GHE_HOST/GHE_PROTOCOL. */
  githubApiUrl: string;
  /**
   * Where git finds repositories: `https://github.com`, or `<GHE_PROTOCOL>://<GHE_HOST>`.
   * Clone and push URLs are built from it and a repository's full name, never taken from a
   * payload.
   */
  githubUrl: string;
  port: number;
  host: string | undefined;
  logLevel: "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";
  databaseUrl: string | undefined;
  home: string;
  workersFile: string | undefined;
  adminToken: string | undefined;
  runnerCapacity: number;
  heartbeatIntervalMs: number;
  leaseMs: number;
  /**
   * How long a webhook delivery taken for processing is its process's alone: another
   * process takes it over after this long if that process died. An attempt may take half.
   */
  deliveryLeaseMs: number;
  pollIntervalMs: number;
  tickIntervalMs: number;
  runnerStaleAfterMs: number;
  maxRunMs: number;
  /** First retry delay of a failed GitHub write; doubles per attempt. */
  outboxRetryBaseMs: number;
  /** How long a status comment or label must stay unchanged before it is sent. */
  outboxSettleMs: number;
  /** First wait before a task requeued after an infrastructure failure runs again. */
  requeueBackoffMs: number;
  /** The dashboard's public base URL, for links from GitHub (check runs). */
  publicUrl: string | undefined;
  /** Pause of a profile whose agent hit a limit without saying when it resets (doubles). */
  usageLimitBackoffMs: number;
}

export class EnvError extends ConfigError {
  override name = "EnvError";
}

/** Probot's default secret: public, so a webhook "signed" with it proves nothing. */
const PROBOT_DEFAULT_WEBHOOK_SECRET = "development";

export function readEnv(
  source: Record<string, string | undefined> = process.env,
  readFile: (file: string) => string = defaultReadFile,
): OverseerEnv {
  // Empty strings are how shells and .env files say "unset".
  const present = Object.fromEntries(Object.entries(source).filter(([, value]) => value !== ""));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const variable = issue?.path.join(".") ?? "environment";
    throw new EnvError(`Invalid environment: ${variable}: ${issue?.message ?? "invalid value"}`);
  }
  const env = parsed.data;
  if (env.APP_ID !== undefined && !env.PRIVATE_KEY && !env.PRIVATE_KEY_PATH) {
    throw new EnvError(
      "Invalid environment: PRIVATE_KEY: APP_ID is set, so PRIVATE_KEY or PRIVATE_KEY_PATH is required",
    );
  }
  const privateKey = env.PRIVATE_KEY
    ? decodePrivateKey(env.PRIVATE_KEY)
    : env.PRIVATE_KEY_PATH
      ? readFile(env.PRIVATE_KEY_PATH)
      : undefined;
  if (privateKey !== undefined && !privateKey.includes("-----BEGIN")) {
    throw new EnvError(
      `Invalid environment: ${env.PRIVATE_KEY ? "PRIVATE_KEY" : "PRIVATE_KEY_PATH"}: expected a PEM private key (-----BEGIN ... PRIVATE KEY-----)`,
    );
  }
  if (env.APP_ID !== undefined && !env.WEBHOOK_SECRET) {
    throw new EnvError(
      "Invalid environment: WEBHOOK_SECRET: APP_ID is set, so WEBHOOK_SECRET is required (the secret the App's webhook was registered with)",
    );
  }
  if (env.WEBHOOK_SECRET === PROBOT_DEFAULT_WEBHOOK_SECRET) {
    throw new EnvError(
      `Invalid environment: WEBHOOK_SECRET: "${PROBOT_DEFAULT_WEBHOOK_SECRET}" is Probot's public default; use the secret the App's webhook was registered with`,
    );
  }
  const leaseMs = env.OVERSEER_LEASE ?? env.OVERSEER_HEARTBEAT_INTERVAL * 3;
  if (leaseMs <= env.OVERSEER_HEARTBEAT_INTERVAL) {
    throw new EnvError(
      "Invalid environment: OVERSEER_LEASE: must be longer than OVERSEER_HEARTBEAT_INTERVAL (about three heartbeats)",
    );
  }
  return {
    appId: env.APP_ID,
    privateKey,
    privateKeyPath: env.PRIVATE_KEY_PATH ? path.resolve(env.PRIVATE_KEY_PATH) : undefined,
    webhookSecret: env.WEBHOOK_SECRET,
    webhookPath: env.WEBHOOK_PATH,
    githubApiUrl: env.GHE_HOST
      ? `${env.GHE_PROTOCOL}://${env.GHE_HOST}/api/v3`
      : "https://api.github.com",
    githubUrl: env.GHE_HOST ? `${env.GHE_PROTOCOL}://${env.GHE_HOST}` : "https://github.com",
    port: env.PORT,
    host: env.HOST,
    logLevel: env.LOG_LEVEL,
    databaseUrl: env.DATABASE_URL,
    home: path.resolve(env.OVERSEER_HOME),
    workersFile: env.OVERSEER_WORKERS,
    adminToken: env.OVERSEER_ADMIN_TOKEN,
    runnerCapacity: env.OVERSEER_RUNNER_CAPACITY,
    heartbeatIntervalMs: env.OVERSEER_HEARTBEAT_INTERVAL,
    leaseMs,
    deliveryLeaseMs: env.OVERSEER_DELIVERY_LEASE,
    pollIntervalMs: env.OVERSEER_POLL_INTERVAL,
    tickIntervalMs: env.OVERSEER_TICK_INTERVAL,
    runnerStaleAfterMs: env.OVERSEER_RUNNER_STALE_AFTER,
    maxRunMs: env.OVERSEER_MAX_RUN,
    outboxRetryBaseMs: env.OVERSEER_OUTBOX_RETRY_BASE,
    outboxSettleMs: env.OVERSEER_OUTBOX_SETTLE,
    requeueBackoffMs: env.OVERSEER_REQUEUE_BACKOFF,
    publicUrl: env.OVERSEER_PUBLIC_URL,
    usageLimitBackoffMs: env.OVERSEER_USAGE_LIMIT_BACKOFF,
  };
}

/** Accepts the PEM as is, with `\n` escapes (one-line .env files), or base64-encoded. */
function decodePrivateKey(raw: string): string {
  if (raw.includes("-----BEGIN")) return raw.replace(/\\n/g, "\n");
  const decoded = Buffer.from(raw, "base64").toString("utf8");
  return decoded.includes("-----BEGIN") ? decoded : raw;
}

function defaultReadFile(file: string): string {
  return readFileSync(file, "utf8");
}
