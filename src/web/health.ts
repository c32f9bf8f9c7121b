import type { Logger } from "pino";
import { schemaVersion } from "../db/migrate.js";
import type { Pool } from "../db/pool.js";
import { pathOf, type RequestHandler, sendJson } from "./http.js";

const HEALTH_QUERY_TIMEOUT_MS = 2_000;

/**
 * GET /healthz: 200 while the database answers, 503 `database: down` when it does not.
 * Anyone who can reach the port may ask, so the driver's message (which names internal
 * hosts and ports) goes to the log, not into the answer.
 */
export function healthHandler(
  pool: Pool,
  mode: () => "setup" | "app",
  log: Logger,
): RequestHandler {
  return async (req, res) => {
    if (pathOf(req) !== "/healthz" || (req.method !== "GET" && req.method !== "HEAD")) {
      return false;
    }
    try {
      const schema = await withTimeout(schemaVersion(pool), HEALTH_QUERY_TIMEOUT_MS);
      sendJson(res, 200, { status: "ok", database: "up", schema, mode: mode() });
    } catch (error) {
      log.error({ err: error }, "health check: the database did not answer");
      sendJson(res, 503, { status: "unavailable", database: "down", mode: mode() });
    }
    return true;
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`database did not answer in ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
