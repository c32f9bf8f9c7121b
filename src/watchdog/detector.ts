import type { Logger } from "pino";
import type { OverseerEnv } from "../config/env.js";
import type { WorkerProfiles } from "../config/workers.js";
import type { Pool } from "../db/pool.js";
import type { GithubRequester } from "../github/octokit.js";
import type { Finding, RepairOutcome } from "./findings.js";

export type { Finding, RepairOutcome };

/**
 * Everything the watchdog knows about a finding beyond what the operator surface shows:
 * the facts its repair needs, so a repair re-checks them instead of trusting a stale
 * description.
 */
export interface DetectedFinding extends Finding {
  /** Escalation is addressed to this issue when the repair is not safe or fails. */
  issue?: { installationId: number; repoFullName: string; number: number } | null;
  /** Detector-private facts (ids, SHAs, paths) that the repair re-reads and re-checks. */
  facts: Record<string, unknown>;
  /** What a person should do when the watchdog cannot (said in the escalation comment). */
  advice?: string;
  /** Escalate even when the repair succeeds: the repair only stops the damage. */
  escalate?: boolean;
  /** Nothing to repair: reported so people know (a paused profile resumes by itself). */
  notice?: boolean;
}

/**
 * Reads GitHub for reconciliation. Conditional requests (ETag / If-None-Match) are the
 * reader's job: a 304 costs no rate limit and answers `unchanged`.
 */
export interface GithubReader {
  /** An authenticated requester for the installation (ETag-aware requests go through it). */
  forInstallation(installationId: number): Promise<GithubRequester>;
}

export interface WatchdogContext {
  pool: Pool;
  env: OverseerEnv;
  log: Logger;
  /** This process's host name (process findings only apply to processes on this host). */
  host: string;
  /** Absent in processes without GitHub credentials: GitHub findings are then skipped. */
  github: GithubReader | null;
  now: () => Date;
  /**
   * Diagnosis only (`overseer doctor` without `--apply`): detection writes nothing, not even
   * the ETags of GitHub's answers (stored ones are still sent, so unchanged answers stay
   * free).
   */
  readOnly?: boolean;
  /** The worker profiles this process knows (their timeouts); absent: OVERSEER_MAX_RUN only. */
  workers?: WorkerProfiles;
  /** An installation token for git (recreating a worktree fetches); absent: none is sent. */
  workspaceToken?: (installationId: number) => Promise<string | undefined>;
}

/**
 * One kind of finding: a query or check that detects it, and a repair that goes through
 * the one write path (`src/db/task-changes.ts`) with actor `watchdog:<kind>`.
 */
export interface Detector {
  kind: string;
  detect(ctx: WatchdogContext): Promise<DetectedFinding[]>;
  /** Re-checks the finding's facts, then repairs; never repairs what no longer stands. */
  repair(ctx: WatchdogContext, finding: DetectedFinding, by: string): Promise<RepairOutcome>;
}
