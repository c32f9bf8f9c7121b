import type http from "node:http";
import { LogNotifications } from "../db/run-log-follow.js";
import { classify, errorMessage } from "../errors.js";
import {
  type AccessDecision,
  authenticate,
  checkCsrf,
  clearSessionCookieHeader,
  csrfTokenFor,
  issueSession,
  safeNext,
  sameSecret,
  sessionCookieHeader,
} from "./access.js";
import { SCRIPT, STYLESHEET } from "./assets.js";
import { pathOf, type RequestHandler } from "./http.js";
import { redirect, sendHtml, sendText } from "./layout.js";
import { loginPage } from "./pages/login.js";
import { readForm, wantsHtml } from "./requests.js";
import { API_ROUTES } from "./routes-api.js";
import { PAGE_ROUTES } from "./routes-pages.js";
import type { DashboardDependencies, DashboardRuntime, Route } from "./routing.js";

export type { DashboardDependencies } from "./routing.js";

/**
 * The dashboard, its JSON API and /metrics, on Overseer's own HTTP server (so they answer in
 * setup mode too). Every route but the assets and the login form is behind `authenticate`;
 * every POST is also checked by `checkCsrf`. Anything that is not one of these routes falls
 * through to the next handler (the webhook endpoint, Probot's setup pages).
 */

export interface Dashboard {
  handler: RequestHandler;
  /** Ends event streams and the log notifications connection. */
  close(): Promise<void>;
}

export function createDashboard(deps: DashboardDependencies): Dashboard {
  const closing = new AbortController();
  let notifications: Promise<LogNotifications> | undefined;
  const runtime: DashboardRuntime = {
    ...deps,
    closing: closing.signal,
    notifications() {
      // One LISTEN connection per process, opened when the first live tail is watched.
      notifications ??= LogNotifications.start(deps.databaseUrl, (error) =>
        deps.log.warn(
          { err: error },
          "log notifications lost; live tails poll until they are back",
        ),
      );
      return notifications;
    },
  };
  const routes = [...PAGE_ROUTES, ...API_ROUTES];
  return {
    handler: (req, res) => handle(runtime, routes, req, res),
    async close() {
      closing.abort();
      await (await notifications)?.close();
    },
  };
}

async function handle(
  deps: DashboardRuntime,
  routes: readonly Route[],
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<boolean> {
  const path = pathOf(req);
  if (req.method === "GET" && path === "/assets/overseer.css")
    return asset(res, STYLESHEET, "text/css");
  if (req.method === "GET" && path === "/assets/overseer.js")
    return asset(res, SCRIPT, "text/javascript");
  if (path === "/login" || path === "/logout") return loginRoutes(deps, req, res, path);
  const match = matchRoute(routes, req.method ?? "GET", path);
  if (!match) return false;
  const decision = authenticate(req, deps.env.adminToken);
  if (!decision.ok) return refuse(req, res, decision);
  const csrf = csrfTokenFor(req);
  let form = new URLSearchParams();
  if (req.method === "POST") {
    form = await readForm(req);
    const why = checkCsrf(
      req,
      decision.principal,
      form.get("csrf") ?? headerValue(req, "x-csrf-token"),
    );
    if (why) {
      sendText(res, 403, `Forbidden: ${why}\n`);
      return true;
    }
  }
  const url = new URL(req.url ?? "/", "http://overseer.invalid");
  try {
    await match.route.handle({
      req,
      res,
      url,
      params: match.params,
      principal: decision.principal,
      form,
      cookies: [csrf.setCookie],
      deps,
      page: (current) => ({
        csrf: csrf.token,
        tokenMode: deps.env.adminToken !== undefined,
        setupMode: deps.mode() === "setup",
        current,
      }),
    });
  } catch (error) {
    const failure = classify(error);
    if (failure.kind !== "input") throw error;
    sendText(res, failure.status ?? 400, `${errorMessage(error)}\n`);
  }
  return true;
}

function matchRoute(routes: readonly Route[], method: string, path: string) {
  for (const route of routes) {
    if (route.method !== method) continue;
    const found = route.path.exec(path);
    if (found) return { route, params: found.slice(1) };
  }
  return null;
}

function refuse(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  decision: Extract<AccessDecision, { ok: false }>,
): true {
  if (decision.login && req.method === "GET" && wantsHtml(req)) {
    redirect(res, `/login?next=${encodeURIComponent(req.url ?? "/")}`);
    return true;
  }
  const headers: Record<string, string> =
    decision.status === 401 ? { "www-authenticate": 'Bearer realm="overseer"' } : {};
  sendText(res, decision.status, `${decision.reason}\n`, headers);
  return true;
}

function asset(res: http.ServerResponse, body: string, type: string): true {
  res.writeHead(200, {
    "content-type": `${type}; charset=utf-8`,
    "content-length": Buffer.byteLength(body),
    "cache-control": "public, max-age=300",
    "x-content-type-options": "nosniff",
  });
  res.end(body);
  return true;
}

/**
 * GET /login shows the form; POST /login exchanges the admin token for a session cookie;
 * POST /logout clears it. Without an admin token there is nothing to log in to.
 */
async function loginRoutes(
  deps: DashboardRuntime,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  path: string,
): Promise<boolean> {
  const token = deps.env.adminToken;
  const csrf = csrfTokenFor(req);
  const url = new URL(req.url ?? "/", "http://overseer.invalid");
  if (token === undefined) {
    if (req.method !== "GET") return false;
    redirect(res, safeNext(url.searchParams.get("next")));
    return true;
  }
  if (req.method === "GET" && path === "/login") {
    sendHtml(res, 200, loginPage(csrf.token, safeNext(url.searchParams.get("next")), null), [
      csrf.setCookie,
    ]);
    return true;
  }
  if (req.method !== "POST") return false;
  const form = await readForm(req);
  // Login CSRF: a page elsewhere must not log the operator's browser into its own session.
  const why = checkCsrf(req, { via: "session" }, form.get("csrf"));
  if (why) {
    sendText(res, 403, `Forbidden: ${why}\n`);
    return true;
  }
  if (path === "/logout") {
    redirect(res, "/login", [clearSessionCookieHeader(req)]);
    return true;
  }
  const next = safeNext(form.get("next"));
  if (!sameSecret(form.get("token") ?? "", token)) {
    deps.log.warn({ peer: req.socket.remoteAddress }, "dashboard login with a wrong token");
    sendHtml(res, 401, loginPage(csrf.token, next, "That is not the admin token."), [
      csrf.setCookie,
    ]);
    return true;
  }
  redirect(res, next, [sessionCookieHeader(req, issueSession(token, Date.now()))]);
  return true;
}

function headerValue(req: http.IncomingMessage, name: string): string | null {
  const value = req.headers[name];
  return typeof value === "string" ? value : null;
}
