import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { recordRejectedDelivery } from "../db/deliveries.js";
import type { Queryable } from "../db/pool.js";
import { classify, errorMessage } from "../errors.js";
import {
  BodyTooLargeError,
  REQUEST_BODY_LIMIT_BYTES,
  readBodyWithin,
  refuseTooLarge,
} from "../web/body-limit.js";
import { pathOf, sendJson } from "../web/http.js";
import type { DeliveryMetrics } from "./deliveries.js";
import type { Stored } from "./delivery-queue.js";
import { actionOf, type DeliveryRoutes, subjectOf } from "./delivery-routes.js";

export interface WebhookDoorOptions {
  path: string;
  /** Probot's signature check (the App's WEBHOOK_SECRET, compared in constant time). */
  verify(body: string, signature: string): Promise<boolean>;
  routes: DeliveryRoutes;
  store(delivery: {
    id: string;
    event: string;
    action: string | null;
    subject: string | null;
    body: string;
    payload: unknown;
  }): Promise<Stored>;
  pool: Queryable;
  log: Logger;
  metrics?: DeliveryMetrics;
}

const JSON_CONTENT_TYPE = /^\s*application\/json\s*(?:;|$)/u;
const WEBHOOK_HEADERS = ["x-github-event", "x-hub-signature-256", "x-github-delivery"] as const;

/**
 * The webhook endpoint: persist, answer, and leave the work to the delivery queue. In
 * order, each refusal with its status, as Probot's own middleware answers them: path and
 * method (404), content type (415), GitHub's headers (400), the body within GitHub's 25 MB
 * cap (413), the signature (400), JSON (400). Then:
 * - no handler acts on it (a conversation comment, Overseer's own label): 200, not stored;
 * - not the shape its handler reads: recorded as rejected, 400 (GitHub will not fix it);
 * - stored, in one INSERT: 202, before any handler runs or GitHub is asked anything;
 * - a redelivery of a stored id: 200, nothing changes;
 * - the database refused the INSERT: 5xx, and nothing was stored (GitHub shows the
 *   delivery as failed; its "Redeliver" sends it again under the same id).
 * So every delivery is either stored once or refused with a 5xx.
 */
export function createWebhookDoor(options: WebhookDoorOptions) {
  const webhookPath = withoutTrailingSlashes(options.path);
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = withoutTrailingSlashes(pathOf(req));
    if (path !== webhookPath) return false;
    if (req.method !== "POST") {
      sendJson(res, 404, { error: `Unknown route: ${req.method} ${path}` });
      return true;
    }
    const contentType = req.headers["content-type"];
    if (typeof contentType !== "string" || !JSON_CONTENT_TYPE.test(contentType)) {
      sendJson(res, 415, {
        error: 'Unsupported "Content-Type" header value. Must be "application/json"',
      });
      return true;
    }
    const missing = WEBHOOK_HEADERS.filter((header) => typeof req.headers[header] !== "string");
    if (missing.length > 0) {
      sendJson(res, 400, { error: `Required headers missing: ${missing.join(", ")}` });
      return true;
    }
    const body = await readBody(req, res);
    if (body === null) return true;
    const headers = req.headers as Record<(typeof WEBHOOK_HEADERS)[number], string>;
    const id = headers["x-github-delivery"];
    const name = headers["x-github-event"];
    const signature = headers["x-hub-signature-256"];
    if (!(await options.verify(body, signature).catch(() => false))) {
      options.log.warn({ delivery: id }, "webhook signature does not match WEBHOOK_SECRET");
      sendJson(res, 400, { error: "signature does not match event payload and secret" });
      return true;
    }
    let payload: unknown;
    try {
      payload = JSON.parse(body);
    } catch {
      sendJson(res, 400, { error: "Invalid JSON" });
      return true;
    }
    await admit(options, res, { id, name, body, payload });
    return true;
  };
}

async function admit(
  options: WebhookDoorOptions,
  res: ServerResponse,
  request: { id: string; name: string; body: string; payload: unknown },
): Promise<void> {
  const { id, name, body, payload } = request;
  const action = actionOf(payload);
  const log = options.log.child({ delivery: id, event: action ? `${name}.${action}` : name });
  let admission: "store" | "ignore";
  try {
    admission = options.routes.admit(name, payload);
  } catch (error) {
    if (classify(error).kind !== "input") throw error;
    const recorded = await writeOrRefuse(options, log, res, () =>
      recordRejectedDelivery(options.pool, { id, event: name, action }, errorMessage(error)),
    );
    if (!recorded.ok) return;
    options.metrics?.delivery("rejected");
    log.warn({ err: error }, "malformed payload rejected");
    sendJson(res, 400, { error: errorMessage(error) });
    return;
  }
  if (admission === "ignore") {
    options.metrics?.delivery("ignored");
    sendJson(res, 200, { status: "ignored" });
    return;
  }
  const stored = await writeOrRefuse(options, log, res, () =>
    options.store({ id, event: name, action, subject: subjectOf(payload), body, payload }),
  );
  if (!stored.ok) return;
  if (stored.value === "duplicate") {
    options.metrics?.delivery("duplicate");
    log.info("redelivery ignored");
    sendJson(res, 200, { status: "duplicate" });
    return;
  }
  sendJson(res, 202, { status: "accepted" });
}

/** Runs a write the answer depends on; when it fails, answers 5xx (nothing was stored). */
async function writeOrRefuse<T>(
  options: WebhookDoorOptions,
  log: Logger,
  res: ServerResponse,
  write: () => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false }> {
  try {
    return { ok: true, value: await write() };
  } catch (error) {
    const status = classify(error).status ?? 500;
    options.metrics?.delivery("failed");
    log.error({ err: error }, "delivery not stored; answered 5xx so GitHub shows it as failed");
    sendJson(res, status >= 500 ? status : 500, { error: "the delivery could not be stored" });
    return { ok: false };
  }
}

/** The body as text, or null once it was refused with 413 (over GitHub's cap). */
async function readBody(req: IncomingMessage, res: ServerResponse): Promise<string | null> {
  try {
    return (await readBodyWithin(req, REQUEST_BODY_LIMIT_BYTES)).toString("utf8");
  } catch (error) {
    if (!(error instanceof BodyTooLargeError)) throw error;
    refuseTooLarge(req, res, REQUEST_BODY_LIMIT_BYTES);
    return null;
  }
}

function withoutTrailingSlashes(path: string): string {
  return path.replace(/\/+$/, "") || "/";
}
