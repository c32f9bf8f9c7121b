import type http from "node:http";
import type { Logger } from "pino";
import type { OverseerEnv } from "../config/env.js";
import type { Pool } from "../db/pool.js";
import type { LogNotifications } from "../db/run-log-follow.js";
import type { Principal } from "./access.js";
import type { FindingsSource } from "./findings.js";
import { sendJson } from "./http.js";
import type { PageContext } from "./layout.js";
import { sendText } from "./layout.js";
import type { OverseerMetrics } from "./metrics.js";

/** What the dashboard's routes are given, and what a route is. */

export interface DashboardDependencies {
  pool: Pool;
  databaseUrl: string;
  env: Pick<OverseerEnv, "adminToken" | "githubApiUrl" | "runnerStaleAfterMs">;
  log: Logger;
  findings: FindingsSource;
  metrics: OverseerMetrics;
  mode(): "app" | "setup";
}

/** What a route handler gets: the request, who made it, and the CSRF token for its forms. */
export interface RouteRequest {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  url: URL;
  params: string[];
  principal: Principal;
  /** For POST routes: the form, already read and CSRF-checked. */
  form: URLSearchParams;
  page(current: PageContext["current"]): PageContext;
  /** Cookies the response must set (a fresh CSRF token). */
  cookies: (string | null)[];
  deps: DashboardRuntime;
}

export interface DashboardRuntime extends DashboardDependencies {
  notifications(): Promise<LogNotifications>;
  /** Aborted when the server shuts down: long-lived responses (event streams) end. */
  closing: AbortSignal;
}

export interface Route {
  method: "GET" | "POST";
  path: RegExp;
  handle(request: RouteRequest): Promise<void>;
}

export function notFound(res: http.ServerResponse, what: string, json: boolean): void {
  if (json) sendJson(res, 404, { error: `no ${what}` });
  else sendText(res, 404, `no ${what}\n`);
}
