import type { Logger } from "pino";
import type { ApplicationFunction } from "probot";
import type { Pool } from "../db/pool.js";
import { classify } from "../errors.js";
import { registerCommands } from "./comments.js";
import type { DeliveryMetrics } from "./deliveries.js";
import type { DeliveryRoutes } from "./delivery-routes.js";
import { registerIntake } from "./intake.js";
import { registerMergeHandlers } from "./merges.js";
import { PermissionCache } from "./permissions.js";
import { registerPullSync } from "./pull-sync.js";
import { registerReviewHandlers } from "./reviews.js";

export interface WebhookDependencies {
  pool: Pool;
  log: Logger;
  /** Filled in as the handlers register: the door reads it before storing a delivery. */
  routes: DeliveryRoutes;
  metrics?: DeliveryMetrics;
}

/**
 * The Probot application: the handlers that process stored deliveries (the door has
 * answered GitHub already). A handler that throws fails the attempt: a malformed payload
 * is recorded as rejected, anything else is attempted again (src/github/delivery-queue.ts).
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
