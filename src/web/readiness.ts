import { readdirSync } from "node:fs";
import { MIGRATIONS_DIR, schemaVersion } from "../db/migrate.js";
import type { Pool } from "../db/pool.js";
import { errorMessage } from "../errors.js";
import { pathOf, type RequestHandler, sendJson } from "./http.js";

/** The newest migration this code knows, as node-pg-migrate records its name. */
const EXPECTED_SCHEMA =
  readdirSync(MIGRATIONS_DIR)
    .filter((file) => file.endsWith(".sql"))
    .sort()
    .at(-1)
    ?.replace(/\.sql$/, "") ?? null;

const READY_QUERY_TIMEOUT_MS = 2_000;

/**
 * GET /readyz: may this process take traffic? 200 when the database answers with the
 * schema this code expects and the process is not shutting down; 503 with the reason
 * otherwise. (/healthz says whether it is alive; this says whether it is ready.) It says
 * which mode it is in but is ready in both: the dashboard and /healthz work in setup mode,
 * and only webhooks wait for credentials.
 */
export function readinessHandler(
  pool: Pool,
  state: { mode(): "setup" | "app"; stopping(): boolean },
): RequestHandler {
  return async (req, res) => {
    if (pathOf(req) !== "/readyz" || (req.method !== "GET" && req.method !== "HEAD")) return false;
    const checks: Record<string, string> = { mode: state.mode() };
    let ready = !state.stopping();
    if (!ready) checks.process = "shutting down";
    try {
      const schema = await Promise.race([
        schemaVersion(pool),
        new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new Error(`database did not answer in ${READY_QUERY_TIMEOUT_MS} ms`)),
            READY_QUERY_TIMEOUT_MS,
          ).unref(),
        ),
      ]);
      checks.database = "up";
      checks.schema = schema ?? "none";
      if (schema !== EXPECTED_SCHEMA) {
        ready = false;
        checks.schema = `${schema ?? "none"}, expected ${EXPECTED_SCHEMA} (run: overseer migrate)`;
      }
    } catch (error) {
      ready = false;
      checks.database = `down: ${errorMessage(error)}`;
    }
    sendJson(res, ready ? 200 : 503, { status: ready ? "ready" : "not ready", ...checks });
    return true;
  };
}
