import { withTransaction } from "../../db/pool.js";
import type { RepoRow } from "../../db/repos.js";
import { type ChangeResult, changeTaskIn } from "../../db/task-changes.js";
import type { Cause } from "../../db/task-events.js";
import type { TaskChanges } from "../../db/tasks.js";
import { actor } from "../../domain/actors.js";
import type { TaskEvent } from "../../domain/types.js";
import type { GithubRequester } from "../../github/octokit.js";
import type { DetectedFinding, WatchdogContext } from "../detector.js";

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
  if (!result) return { repaired: false, detail: "the task no longer exists" };
  if (!result.ok) return { repaired: false, detail: `refused: ${result.reason}` };
  return { repaired: true, detail: done };
}
