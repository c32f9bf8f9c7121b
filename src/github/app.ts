import type { ApplicationFunction } from "probot";
import type { Pool } from "../db/pool.js";

export interface AppDependencies {
  pool: Pool;
}

/** The Probot application: webhook handlers that persist and answer. */
export function overseerApp(_deps: AppDependencies): ApplicationFunction {
  return (app) => {
    app.onError((error) => {
      app.log.error({ err: error }, "webhook handler failed");
    });
  };
}
