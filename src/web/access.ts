import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type http from "node:http";

/**
 * Who may use the dashboard, its API and /metrics.
 *
 * With OVERSEER_ADMIN_TOKEN: whoever presents it, as `Authorization: Bearer <token>` or
 * through the login form, which sets an HttpOnly session cookie. The cookie is the expiry
 * signed with the token (HMAC-SHA256), so every process that shares the token accepts it
 * and changing the token ends every session.
 *
 * Without it: loopback clients only, and narrowly: the peer address must be 127.0.0.1 or
 * ::1 (not the rest of 127.0.0.0/8, which some container runtimes and proxies use for
 * traffic they forward from elsewhere), the request must not carry proxy headers (a
 * reverse proxy on this host forwards other people's requests from loopback), and the
 * Host must be a loopback name (a page on another site whose name resolves to 127.0.0.1,
 * "DNS rebinding", must not read the dashboard in the operator's browser).
 *
 * Forms that change something also need a CSRF token (see checkCsrf).
 */

export type Principal = { via: "bearer" | "session" | "loopback" };

export type AccessDecision =
  | { ok: true; principal: Principal }
  | { ok: false; status: 401 | 403; reason: string; login: boolean };

export const SESSION_COOKIE = "overseer_session";
export const CSRF_COOKIE = "overseer_csrf";
export const SESSION_MS = 12 * 3_600_000;

const LOOPBACK_ADDRESSES = new Set(["127.0.0.1", "::1", "::ffff:127.0.0.1"]);
const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);
const PROXY_HEADERS = ["forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip"];

export const ENABLE_ACCESS_HINT =
  "Set OVERSEER_ADMIN_TOKEN (16 characters or more) to allow access from elsewhere, then send `Authorization: Bearer <token>` or log in at /login.";

export function authenticate(
  req: http.IncomingMessage,
  adminToken: string | undefined,
): AccessDecision {
  if (adminToken !== undefined) return withToken(req, adminToken);
  const peer = req.socket.remoteAddress ?? "";
  if (!LOOPBACK_ADDRESSES.has(peer)) {
    return refuse(
      `Forbidden: without OVERSEER_ADMIN_TOKEN only loopback clients (127.0.0.1, ::1) may use the dashboard, its API and /metrics, and this request came from ${peer || "an unknown address"}.`,
    );
  }
  const proxied = PROXY_HEADERS.find((name) => req.headers[name] !== undefined);
  if (proxied) {
    return refuse(
      `Forbidden: this request came through a proxy (${proxied} header), so it is not from this host's loopback.`,
    );
  }
  const host = hostName(req.headers.host);
  if (!LOOPBACK_HOSTS.has(host) && !host.endsWith(".localhost")) {
    return refuse(
      `Forbidden: without OVERSEER_ADMIN_TOKEN the dashboard answers only to localhost, 127.0.0.1 or [::1], not to the host name ${JSON.stringify(host)}.`,
    );
  }
  return { ok: true, principal: { via: "loopback" } };
}

function refuse(reason: string): AccessDecision {
  return { ok: false, status: 403, reason: `${reason} ${ENABLE_ACCESS_HINT}`, login: false };
}

function withToken(req: http.IncomingMessage, adminToken: string): AccessDecision {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
    if (bearer && sameSecret(bearer, adminToken)) return { ok: true, principal: { via: "bearer" } };
    return {
      ok: false,
      status: 401,
      reason:
        "Unauthorized: the Authorization header does not carry OVERSEER_ADMIN_TOKEN as a bearer token.",
      login: false,
    };
  }
  const session = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
  if (session && verifySession(adminToken, session, Date.now())) {
    return { ok: true, principal: { via: "session" } };
  }
  return {
    ok: false,
    status: 401,
    reason:
      "Unauthorized: send `Authorization: Bearer <OVERSEER_ADMIN_TOKEN>`, or log in at /login.",
    login: true,
  };
}

/** The host name of a Host header, without port; IPv6 literals keep their brackets. */
function hostName(header: string | undefined): string {
  const host = (header ?? "").trim().toLowerCase();
  if (host.startsWith("[")) return host.slice(0, host.indexOf("]") + 1);
  return host.split(":")[0] ?? "";
}

/** Compares secrets in time independent of where they differ (digests make lengths equal). */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (!cookies.has(name)) cookies.set(name, part.slice(eq + 1).trim());
  }
  return cookies;
}

function sign(adminToken: string, payload: string): string {
  return createHmac("sha256", adminToken).update(`overseer-session:${payload}`).digest("base64url");
}

/** `v1.<expiry ms>.<signature>` */
export function issueSession(adminToken: string, nowMs: number): string {
  const expires = String(nowMs + SESSION_MS);
  return `v1.${expires}.${sign(adminToken, `v1.${expires}`)}`;
}

export function verifySession(adminToken: string, value: string, nowMs: number): boolean {
  const match = /^v1\.(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(value);
  if (!match?.[1] || !match[2]) return false;
  if (Number(match[1]) <= nowMs) return false;
  return sameSecret(match[2], sign(adminToken, `v1.${match[1]}`));
}

/** Secure only over HTTPS (directly, or as a proxy in front says when a token is in use). */
function cookieAttributes(req: http.IncomingMessage, maxAgeSeconds: number): string {
  const tls = Boolean((req.socket as { encrypted?: boolean }).encrypted);
  return `Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${tls ? "; Secure" : ""}`;
}

export function sessionCookieHeader(req: http.IncomingMessage, value: string): string {
  return `${SESSION_COOKIE}=${value}; ${cookieAttributes(req, SESSION_MS / 1_000)}`;
}

export function clearSessionCookieHeader(req: http.IncomingMessage): string {
  return `${SESSION_COOKIE}=; ${cookieAttributes(req, 0)}`;
}

/**
 * The request's CSRF token, issuing one (as a cookie to set) when it has none. Forms carry
 * it back in a hidden field: a page on another site can neither read the cookie nor make
 * the browser send it (SameSite=Strict), so it cannot fill the field in.
 */
export function csrfTokenFor(req: http.IncomingMessage): {
  token: string;
  setCookie: string | null;
} {
  const existing = parseCookies(req.headers.cookie).get(CSRF_COOKIE);
  if (existing && /^[0-9a-f]{64}$/.test(existing)) return { token: existing, setCookie: null };
  const token = randomBytes(32).toString("hex");
  return {
    token,
    setCookie: `${CSRF_COOKIE}=${token}; ${cookieAttributes(req, 7 * 86_400)}`,
  };
}

/**
 * Null when a state-changing request may go ahead, else why not. A bearer token is not
 * something a browser attaches on its own, so such requests need no CSRF token; everything
 * riding on ambient authority (the session cookie, being on loopback) does, and must come
 * from our own origin when the browser says where it came from.
 */
export function checkCsrf(
  req: http.IncomingMessage,
  principal: Principal,
  submitted: string | null,
): string | null {
  if (principal.via === "bearer") return null;
  const site = req.headers["sec-fetch-site"];
  if (site !== undefined && site !== "same-origin" && site !== "none") {
    return `request came from another site (Sec-Fetch-Site: ${String(site)})`;
  }
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== "null") {
    let originHost: string;
    try {
      originHost = new URL(origin).host;
    } catch {
      return "unreadable Origin header";
    }
    if (originHost !== (req.headers.host ?? "")) return `request came from ${origin}`;
  } else if (origin === "null") {
    return "request came from an opaque origin";
  }
  const cookie = parseCookies(req.headers.cookie).get(CSRF_COOKIE);
  if (!cookie || !submitted) return "missing CSRF token (reload the page and try again)";
  return sameSecret(submitted, cookie)
    ? null
    : "CSRF token does not match (reload the page and try again)";
}

/** A redirect target after login: a path on this site, never another origin. */
export function safeNext(next: string | null | undefined): string {
  if (!next?.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return "/";
  return /^[\x21-\x7e]+$/.test(next) ? next : "/";
}
