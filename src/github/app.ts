import type { Logger } from "pino";
import type { ApplicationFunction } from "probot";
import type { Pool } from "../db/pool.js";
import { registerIntake } from "./intake.js";
import { registerMergeHandlers } from "./merges.js";
import { PayloadError } from "./payloads.js";
import { PermissionCache } from "./permissions.js";

export interface AppDependencies {
  pool: Pool;
  log: Logger;
}

/** The Probot application: webhook handlers that persist and answer. */
export function overseerApp(deps: AppDependencies): ApplicationFunction {
  return (app) => {
    const intake = { ...deps, permissions: new PermissionCache() };
    registerIntake(app, intake);
    registerMergeHandlers(app, intake);
    app.onError((error) => {
      // Probot wraps handler errors in an AggregateError with the event attached.
      const errors = "errors" in error ? [...(error as AggregateError).errors] : [error];
      for (const inner of errors) {
        const level = inner instanceof PayloadError ? "warn" : "error";
        deps.log[level]({ err: inner, delivery: error.event?.id }, "webhook handler failed");
      }
    });
  };
}
