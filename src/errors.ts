/**
 * One error model. Every failure Overseer raises on purpose carries its kind from where it
 * is created, and anything else (a driver's error, Octokit's RequestError, a bug) is
 * classified once, here. Callers decide by kind and `retryable`, never by listing classes.
 *
 * - `config`: the operator's or a repository's settings are wrong; retrying will not help.
 * - `input`: a request or payload is malformed; the sender will not fix it by retrying.
 * - `infrastructure`: the database, the disk, git or the network failed; worth retrying.
 * - `github`: GitHub answered with an error (retryable for 5xx and rate limits).
 * - `worker`: the agent's own doing (exit status, timeout, no changes).
 * - `bug`: none of the above; a defect in Overseer, never retried automatically.
 */

export type ErrorKind = "config" | "input" | "infrastructure" | "github" | "worker" | "bug";

export interface ErrorFacts {
  /** The HTTP status to answer with (webhooks) or the one received (GitHub). */
  status?: number;
  retryable?: boolean;
  /** When the other side asked us to come back (Retry-After, rate-limit reset). */
  retryAfterMs?: number;
  cause?: unknown;
}

export class OverseerError extends Error {
  override name = "OverseerError";
  readonly kind: ErrorKind;
  readonly status: number | undefined;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(kind: ErrorKind, message: string, facts: ErrorFacts = {}) {
    super(message, facts.cause === undefined ? undefined : { cause: facts.cause });
    this.kind = kind;
    this.status = facts.status;
    this.retryable = facts.retryable ?? kind === "infrastructure";
    this.retryAfterMs = facts.retryAfterMs;
  }
}

/** Settings are wrong (environment, worker profiles, repository config). */
export class ConfigError extends OverseerError {
  override name = "ConfigError";
  constructor(message: string, facts: Omit<ErrorFacts, "retryable"> = {}) {
    super("config", message, { ...facts, retryable: false });
  }
}

/** A request or payload that no retry will fix: answered 400 by default. */
export class InputError extends OverseerError {
  override name = "InputError";
  constructor(message: string, facts: Omit<ErrorFacts, "retryable"> = {}) {
    super("input", message, { status: 400, ...facts, retryable: false });
  }
}

/** Something Overseer depends on failed or is busy; the same work may succeed later. */
export class InfrastructureError extends OverseerError {
  override name = "InfrastructureError";
  constructor(message: string, facts: ErrorFacts = {}) {
    super("infrastructure", message, { status: 503, retryable: true, ...facts });
  }
}

/** The message of anything thrown, for logs and recorded reasons. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === "string") return error;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** The HTTP status an error carries (Octokit's RequestError, ours), if any. */
export function httpStatusOf(error: unknown): number | undefined {
  return isRecord(error) && typeof error.status === "number" ? error.status : undefined;
}

export interface Classified {
  kind: ErrorKind;
  retryable: boolean;
  /** When to try again if the other side said so; null to use our own backoff. */
  retryAfterMs: number | null;
  status: number | undefined;
  message: string;
}

/** Connection-level failures (Node's system errors) worth retrying. */
const TRANSIENT_SYSTEM_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "ENETDOWN",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/**
 * PostgreSQL SQLSTATE classes and codes that mean "the server, not the statement": 08
 * connection, 53 insufficient resources, 57P0x shutdown, 40001/40P01 retry the transaction.
 */
function isTransientSqlState(code: string): boolean {
  return (
    code.startsWith("08") ||
    code.startsWith("53") ||
    /^57P0[1-4]$/.test(code) ||
    code === "40001" ||
    code === "40P01"
  );
}

/** Retry-After (seconds), or the primary rate limit's reset time once it is exhausted. */
function retryAfterFrom(headers: Record<string, unknown>, now: number): number | null {
  const retryAfter = Number(headers["retry-after"]);
  if (headers["retry-after"] !== undefined && Number.isFinite(retryAfter) && retryAfter >= 0) {
    return retryAfter * 1000;
  }
  const resetAt = Number(headers["x-ratelimit-reset"]) * 1000;
  if (String(headers["x-ratelimit-remaining"]) === "0" && Number.isFinite(resetAt)) {
    return Math.max(0, resetAt - now);
  }
  return null;
}

function classifyHttp(error: Record<string, unknown>, status: number, now: number): Classified {
  const response = isRecord(error.response) ? error.response : {};
  const headers = isRecord(response.headers) ? response.headers : {};
  const message = `HTTP ${status}: ${errorMessage(error)}`;
  const retryAfterMs = retryAfterFrom(headers, now);
  // GitHub answers secondary rate limits with 403 (sometimes 429), with or without
  // Retry-After; an exhausted primary limit is 403 with x-ratelimit-remaining: 0.
  const rateLimited =
    status === 429 ||
    (status === 403 && (retryAfterMs !== null || /rate limit/i.test(errorMessage(error))));
  const retryable = status >= 500 || status === 408 || rateLimited;
  return {
    kind: "github",
    retryable,
    retryAfterMs: retryable ? retryAfterMs : null,
    status,
    message,
  };
}

/** How a failure should be treated: by whom it was caused and whether to try again. */
export function classify(error: unknown, now = Date.now()): Classified {
  const message = errorMessage(error);
  if (error instanceof OverseerError) {
    return {
      kind: error.kind,
      retryable: error.retryable,
      retryAfterMs: error.retryAfterMs ?? null,
      status: error.status,
      message,
    };
  }
  if (error instanceof AggregateError && error.errors.length > 0) {
    // A connection attempt to several addresses fails as one aggregate of the same kind.
    const inner = classify(error.errors[0], now);
    return { ...inner, message };
  }
  if (!isRecord(error))
    return { kind: "bug", retryable: false, retryAfterMs: null, status: undefined, message };
  const status = httpStatusOf(error);
  if (status !== undefined && ("response" in error || "request" in error)) {
    return classifyHttp(error, status, now);
  }
  const code = typeof error.code === "string" ? error.code : "";
  if (
    TRANSIENT_SYSTEM_CODES.has(code) ||
    (/^[0-9A-Z]{5}$/.test(code) && isTransientSqlState(code))
  ) {
    return { kind: "infrastructure", retryable: true, retryAfterMs: null, status: 503, message };
  }
  if (
    /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
      message,
    )
  ) {
    // node-postgres reports a lost or unobtainable connection without a code.
    return { kind: "infrastructure", retryable: true, retryAfterMs: null, status: 503, message };
  }
  return { kind: "bug", retryable: false, retryAfterMs: null, status: undefined, message };
}
