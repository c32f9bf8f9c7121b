import { withTransaction } from "../../db/pool.js";
import type { RepoRow } from "../../db/repos.js";
import { type ChangeResult, changeTaskIn } from "../../db/task-changes.js";
import type { Cause } from "../../db/task-events.js";
import type { TaskChanges } from "../../db/tasks.js";
import { actor } from "../../domain/actors.js";
import type { TaskEvent } from "../../domain/types.js";
import { classify } from "../../errors.js";
import type { GithubRequester } from "../../github/octokit.js";
import type { DetectedFinding, Detector, WatchdogContext } from "../detector.js";

/** The repository as the API's route parameters and the decisions in src/github name it. */
export function repositoryOf(repo: RepoRow): {
  id: number;
  name: string;
  full_name: string;
  clone_url: string;
  default_branch: string;
  owner: { login: string };
} {
  const [owner = "", name = ""] = repo.fullName.split("/");
  return {
    id: repo.githubId,
    name,
    full_name: repo.fullName,
    clone_url: repo.cloneUrl,
    default_branch: repo.defaultBranch,
    owner: { login: owner },
  };
}

/** The audit trail's actor and cause for a repair: `watchdog:<kind>`, `finding:<id>`. */
export function repairCause(kind: string, finding: DetectedFinding, by: string): Cause {
  return {
    actor: actor.watchdog(kind),
    cause: `finding:${finding.id}`,
    detail: { requestedBy: by, evidence: finding.evidence },
  };
}

/** Requesters by installation for one detection (Probot caches the tokens themselves). */
export function installations(ctx: WatchdogContext) {
  const github = ctx.github;
  if (!github) throw new Error("GitHub findings need a GitHub reader");
  const made = new Map<number, Promise<GithubRequester>>();
  return (installationId: number): Promise<GithubRequester> => {
    let requester = made.get(installationId);
    if (!requester) {
      requester = github.forInstallation(installationId);
      made.set(installationId, requester);
    }
    return requester;
  };
}

/** Applies one event to the task through the one write path, in a transaction of its own. */
export async function applyRepair(
  ctx: WatchdogContext,
  taskId: number,
  event: TaskEvent,
  cause: Cause,
  changes?: TaskChanges,
): Promise<ChangeResult | null> {
  return withTransaction(ctx.pool, (client) =>
    changeTaskIn(client, { id: taskId }, event, cause, changes),
  );
}

export function outcomeOf(result: ChangeResult | null, done: string) {
  if (!result) return { repaired: false, moot: true, detail: "the task no longer exists" };
  if (!result.ok) return { repaired: false, moot: true, detail: `refused: ${result.reason}` };
  return { repaired: true, detail: done };
}

/**
 * GitHub refused to show the repository for good (the installation removed, the repository
 * deleted, access withdrawn: a 4xx that no retry fixes). Not an outage, so it must not
 * stop the other repositories' reconciliation: it becomes a finding of its own.
 */
export function isUnreadable(error: unknown): boolean {
  const classified = classify(error);
  return (
    classified.kind === "github" &&
    !classified.retryable &&
    classified.status !== undefined &&
    classified.status >= 400 &&
    classified.status < 500
  );
}

/** The finding for a repository GitHub will not show: for a human, never repaired. */
export function unreadableFinding(kind: string, repo: RepoRow, error: unknown): DetectedFinding {
  return {
    id: `${kind}:unreadable:${repo.fullName}`,
    kind,
    subject: repo.fullName,
    taskId: null,
    evidence: `GitHub refuses to show ${repo.fullName} (${classify(error).message}): its missed webhooks cannot be found`,
    repair:
      "nothing automatic: check that the App is still installed on the repository, with read access to issues and pull requests",
    safe: false,
    issue: null,
    facts: { unreadable: true },
  };
}

export const UNREADABLE_OUTCOME = {
  repaired: false,
  detail: "GitHub refuses to show the repository; nothing to repair from here",
};

/**
 * Runs one repository's part of a detection; a repository GitHub will not show becomes a
 * finding, anything else (an outage, a database error) fails the detection.
 */
export async function perRepository(
  kind: string,
  repo: RepoRow,
  detect: () => Promise<DetectedFinding[]>,
): Promise<DetectedFinding[]> {
  try {
    return await detect();
  } catch (error) {
    if (isUnreadable(error)) return [unreadableFinding(kind, repo, error)];
    throw error;
  }
}

/**
 * Without a GitHub reader (no App credentials in this process) there is nothing to poll:
 * the detector finds nothing instead of failing every tick.
 */
export function needsGithub(detector: Detector): Detector {
  return {
    kind: detector.kind,
    detect: (ctx) => (ctx.github ? detector.detect(ctx) : Promise.resolve([])),
    repair: (ctx, finding, by) => {
      if (finding.facts.unreadable === true) return Promise.resolve(UNREADABLE_OUTCOME);
      if (!ctx.github) {
        return Promise.resolve({
          repaired: false,
          detail: "no GitHub credentials in this process",
        });
      }
      return detector.repair(ctx, finding, by);
    },
  };
}
