import type { Logger } from "pino";
import type { ApplicationFunction } from "probot";
import type { Pool } from "../db/pool.js";
import { classify } from "../errors.js";
import { registerCommands } from "./comments.js";
import type { DeliveryMetrics } from "./deliveries.js";
import { registerIntake } from "./intake.js";
import { registerMergeHandlers } from "./merges.js";
import { PermissionCache } from "./permissions.js";
import { registerPullSync } from "./pull-sync.js";
import { registerReviewHandlers } from "./reviews.js";

export interface WebhookDependencies {
  pool: Pool;
  log: Logger;
  metrics?: DeliveryMetrics;
}

/**
 * The Probot application: webhook handlers that persist and answer. A handler that throws
 * fails the delivery with the error's HTTP status (400 for a malformed payload, 500 for
 * anything else), so nothing is acknowledged that was not stored.
 */
export function overseerApp(deps: WebhookDependencies): ApplicationFunction {
  return (app) => {
    const handlers = { ...deps, permissions: new PermissionCache() };
    registerIntake(app, handlers);
    registerCommands(app, handlers);
    registerMergeHandlers(app, handlers);
    registerReviewHandlers(app, handlers);
    registerPullSync(app, handlers);
    app.onError((error) => {
      // Probot wraps handler errors in an AggregateError with the event attached.
      const errors = "errors" in error ? [...(error as AggregateError).errors] : [error];
      for (const inner of errors) {
        const level = classify(inner).kind === "input" ? "warn" : "error";
        deps.log[level]({ err: inner, delivery: error.event?.id }, "webhook handler failed");
      }
    });
  };
}
