import { randomBytes, timingSafeEqual } from "node:crypto";
import type http from "node:http";
import { type RequestHandler, sendJson } from "./http.js";

/**
 * Probot's setup pages register the App and write its credentials to `.env` (`POST
 * /probot/import` takes any App's): whoever reaches them owns the installation. They
 * answer clients on this machine, and anyone else only with the one-time token printed in
 * the log at start-up (`?setup_token=…` once; a cookie keeps it for the manifest flow's
 * redirects).
 */

const COOKIE = "overseer_setup";
const QUERY = "setup_token";

export function createSetupToken(): string {
  return randomBytes(24).toString("base64url");
}

export function setupUrl(base: string, token: string): string {
  return `${base}/probot?${QUERY}=${token}`;
}

export function guardSetupPages(
  inner: RequestHandler,
  token: string,
): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<boolean> {
  return async (req, res) => {
    if (isLocalClient(req) || presentsToken(req, res, token)) return inner(req, res);
    sendJson(res, 403, {
      error:
        "Overseer's setup pages answer this machine only; from elsewhere, open the setup address printed in Overseer's log",
    });
    return true;
  };
}

/**
 * A client on this machine, talking to us directly: a request relayed by a proxy (which
 * says so in Forwarded / X-Forwarded-For) may come from anywhere, whatever its socket says.
 */
export function isLocalClient(req: http.IncomingMessage): boolean {
  if (req.headers.forwarded !== undefined || req.headers["x-forwarded-for"] !== undefined) {
    return false;
  }
  const address = req.socket.remoteAddress ?? "";
  return address === "::1" || /^(?:::ffff:)?127\.\d+\.\d+\.\d+$/.test(address);
}

function presentsToken(req: http.IncomingMessage, res: http.ServerResponse, token: string) {
  const query = new URL(req.url ?? "/", "http://localhost").searchParams.get(QUERY);
  if (query !== null && sameSecret(query, token)) {
    res.setHeader("set-cookie", `${COOKIE}=${token}; HttpOnly; SameSite=Lax; Path=/`);
    return true;
  }
  const cookie = cookieValue(req.headers.cookie, COOKIE);
  return cookie !== null && sameSecret(cookie, token);
}

function cookieValue(header: string | undefined, name: string): string | null {
  for (const part of (header ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return value.join("=");
  }
  return null;
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
