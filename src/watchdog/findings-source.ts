import os from "node:os";
import type { Logger } from "pino";
import type { OverseerEnv } from "../config/env.js";
import type { WorkerProfiles } from "../config/workers.js";
import type { Pool } from "../db/pool.js";
import { readWatchdogState } from "../db/watchdog.js";
import type { DetectedFinding, GithubReader, WatchdogContext } from "./detector.js";
import { diagnose, handle } from "./diagnosis.js";
import type { FindingsSource, WatchdogHealth } from "./findings.js";
import { allDetectors, needsGithub } from "./index.js";

export interface WatchdogSourceDependencies {
  pool: Pool;
  env: OverseerEnv;
  log: Logger;
  github?: GithubReader | null;
  workers?: WorkerProfiles;
  workspaceToken?: (installationId: number) => Promise<string | undefined>;
  /** This process's watchdog, when it runs one: its counts feed /metrics. */
  counts?: () => Record<string, number>;
}

/** The context detectors run in, for this process and host. */
export function watchdogContext(deps: WatchdogSourceDependencies): WatchdogContext {
  return {
    pool: deps.pool,
    env: deps.env,
    log: deps.log,
    host: os.hostname(),
    github: deps.github ?? null,
    now: () => new Date(),
    ...(deps.workers ? { workers: deps.workers } : {}),
    ...(deps.workspaceToken ? { workspaceToken: deps.workspaceToken } : {}),
  };
}

/**
 * The dashboard's, `overseer status`'s and /metrics' view of the watchdog: findings
 * diagnosed afresh (as this host sees them), the one-click repair of a safe finding named
 * by its id, and the elected watchdog's health as it recorded its last tick.
 */
export function watchdogFindingsSource(deps: WatchdogSourceDependencies): FindingsSource {
  const ctx = watchdogContext(deps);
  const detectors = allDetectors();
  const current = async (): Promise<DetectedFinding[]> =>
    (await diagnose(ctx, detectors, needsGithub)).found.map((item) => item.finding);
  return {
    async diagnose() {
      return (await current()).map(({ facts: _facts, issue: _issue, ...finding }) => finding);
    },
    async repair(findingId, actor) {
      const found = (await diagnose(ctx, detectors, needsGithub)).found.find(
        (item) => item.finding.id === findingId,
      );
      if (!found)
        return { repaired: false, detail: "no such finding now (it may be repaired already)" };
      if (found.finding.notice) return { repaired: false, detail: found.finding.repair };
      if (!found.finding.safe) {
        return {
          repaired: false,
          detail:
            "not safe to repair in one click: run overseer doctor --apply --force on the host",
        };
      }
      const [handled] = await handle(ctx, [found], { apply: "safe", escalate: false, by: actor });
      const applied = handled?.applied;
      return applied && "outcome" in applied
        ? applied.outcome
        : { repaired: false, detail: "not repaired" };
    },
    health: () => watchdogHealth(deps.pool, deps.env.tickIntervalMs),
    countsByKind: () => deps.counts?.() ?? {},
  };
}

/** Late: no tick for two intervals (the leader died and nobody took over, or ticks hang). */
export async function watchdogHealth(pool: Pool, tickIntervalMs: number): Promise<WatchdogHealth> {
  const state = await readWatchdogState(pool);
  if (!state) {
    return {
      available: true,
      status: "late",
      lastTickAt: null,
      leader: null,
      detail: "no watchdog has ticked yet (it runs in overseer start, serve and runner)",
    };
  }
  const late = state.ageSeconds * 1_000 > 2 * tickIntervalMs;
  const failed = Object.keys(state.failures);
  const parts = [
    `${state.findings} finding(s) on the last tick`,
    ...(failed.length > 0 ? [`detectors failing: ${failed.join(", ")}`] : []),
    ...(late ? [`no tick for ${Math.round(state.ageSeconds)}s`] : []),
  ];
  return {
    available: true,
    status: late ? "late" : "ok",
    lastTickAt: state.lastTickAt,
    leader: state.leader,
    detail: parts.join(" · "),
  };
}
