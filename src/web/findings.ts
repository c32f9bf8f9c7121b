import type { FindingsSource } from "../watchdog/findings.js";
import {
  type WatchdogSourceDependencies,
  watchdogFindingsSource,
} from "../watchdog/findings-source.js";

export type {
  Finding,
  FindingsSource,
  RepairOutcome,
  WatchdogHealth,
} from "../watchdog/findings.js";
export { UNAVAILABLE_WATCHDOG } from "../watchdog/findings.js";

export type FindingsDependencies = WatchdogSourceDependencies;

/**
 * The one place that picks the findings source for a process (the dashboard, `overseer
 * status`, /metrics): the watchdog's. Health comes from the elected watchdog's record in
 * the database, so a process that does not lead (or runs no watchdog, like `overseer
 * status`) reports it all the same.
 */
export function findingsSourceFor(deps: FindingsDependencies): FindingsSource {
  return watchdogFindingsSource(deps);
}
