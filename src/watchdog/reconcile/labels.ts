import type { RepoConfig } from "../../config/repo-config.js";
import { findConditionalRead, markActedOn } from "../../db/github-conditional-reads.js";
import { withTransaction } from "../../db/pool.js";
import { getRepo, type RepoRow } from "../../db/repos.js";
import { findTask, getTask, type TaskRow } from "../../db/tasks.js";
import {
  cancellableTasks,
  installedRepos,
  issuesWithTasks,
  type PolledTask,
} from "../../db/tasks-polled.js";
import type { Decision } from "../../domain/decisions.js";
import { decideRepair } from "../../github/decisions.js";
import {
  type CancelOnIssue,
  cancelAttempt,
  cancelOnIssue,
  queueFromTriggerLabel,
  taskConfig,
} from "../../github/intake.js";
import type { GithubRequester } from "../../github/octokit.js";
import { PermissionCache } from "../../github/permissions.js";
import { judgeSender, replyRefusalOnce, senderRefusalText } from "../../github/senders.js";
import type { DetectedFinding, Detector, RepairOutcome, WatchdogContext } from "../detector.js";
import { inBatches } from "./batches.js";
import {
  eventsKey,
  type IssueEventRecord,
  issueEvents,
  lastDecision,
  lastLabelling,
  openIssuesLabelled,
  readIssue,
  readPolledConfig,
} from "./issues.js";
import { readPull } from "./pulls.js";
import { installations, outcomeOf, perRepository, repairCause, repositoryOf } from "./shared.js";

/**
 * The trigger label added, removed, or the issue closed, while the webhook was missed (or
 * failed: a `labeled` delivery during an API outage is answered 5xx and never redelivered).
 * One conditional list of the open issues carrying the trigger label per repository and
 * label; an issue's events are read (conditionally too) only for an issue the list
 * disagrees with, to learn who acted: the same permission rule as the webhook's then
 * decides (src/github/senders.ts), and the same write decides (src/github/intake.ts).
 */

export const MISSED_LABEL = "missed_label";
export const MISSED_CANCEL = "missed_cancel";

/** Who may act is asked of GitHub at most once a minute per person, as for deliveries. */
const permissions = new PermissionCache();

type Actor = NonNullable<IssueEventRecord["actor"]>;

function senderEvent(repo: RepoRow, who: Actor) {
  return {
    sender: { login: who.login, ...(who.id !== undefined ? { id: who.id } : {}), type: who.type },
    repository: repositoryOf(repo),
    installation: { id: repo.installationId ?? 0 },
  };
}

async function wasActedOn(ctx: WatchdogContext, repo: RepoRow, number: number, eventId: number) {
  const stored = await findConditionalRead(ctx.pool, `${eventsKey(repo, number)}:1`);
  return stored?.actedOn === String(eventId);
}

/**
 * A person who may not do what they did is refused as a delivery would refuse them (one
 * reply, rate-limited per person), and the event is marked so no later tick asks again.
 */
async function refuse(
  ctx: WatchdogContext,
  github: GithubRequester,
  repo: RepoRow,
  refusal: {
    issueNumber: number;
    taskId: number | null;
    who: Actor;
    eventId: number;
    config: RepoConfig;
    what: string;
  },
): Promise<RepairOutcome | null> {
  const verdict = await judgeSender(
    { permissions },
    github,
    senderEvent(repo, refusal.who),
    refusal.config,
  );
  if (verdict.allowed) return null;
  await withTransaction(ctx.pool, async (client) => {
    await markActedOn(client, `${eventsKey(repo, refusal.issueNumber)}:1`, String(refusal.eventId));
    if (verdict.reason !== "permission") return;
    await replyRefusalOnce(client, repo, {
      issueNumber: refusal.issueNumber,
      taskId: refusal.taskId,
      login: refusal.who.login,
      body: senderRefusalText(refusal.who.login, verdict, refusal.config, refusal.what),
      deliveryId: `watchdog-event:${refusal.eventId}`,
    });
  });
  return {
    repaired: false,
    moot: true,
    detail: `refused: ${refusal.who.login} may not ${refusal.what} (${verdict.reason})`,
  };
}

/** One repository's open issues with its trigger label and no task. */
async function labelledWithoutTask(
  ctx: WatchdogContext,
  requesterFor: (installationId: number) => Promise<GithubRequester>,
  repo: RepoRow,
): Promise<DetectedFinding[]> {
  const github = await requesterFor(repo.installationId ?? 0);
  const config = await readPolledConfig(ctx, github, repo);
  if (!config.ok) {
    ctx.log.info(
      { repo: repo.fullName, reason: config.reason },
      "trigger label not polled for this repository",
    );
    return [];
  }
  const label = config.config.label;
  const listed = await openIssuesLabelled(ctx, github, repo, label);
  const known = await issuesWithTasks(
    ctx.pool,
    repo.id,
    listed.map((issue) => issue.number),
  );
  const missing = listed.filter((issue) => !known.has(issue.number));
  const found = await inBatches(missing, async (issue) => {
    const labelling = lastLabelling(await issueEvents(ctx, github, repo, issue.number), label);
    if (labelling && (await wasActedOn(ctx, repo, issue.number, labelling.id))) return null;
    const by = labelling?.actor?.login;
    const finding: DetectedFinding = {
      id: `${MISSED_LABEL}:${repo.fullName}#${issue.number}`,
      kind: MISSED_LABEL,
      subject: `${repo.fullName}#${issue.number}`,
      taskId: null,
      evidence: `issue #${issue.number} is open with the trigger label \`${label}\`${by ? ` (added by ${by} at ${labelling?.created_at})` : ""} but has no task: its labeled webhook never arrived or failed`,
      repair: by
        ? `queue the task as the labeled webhook would, if ${by} may start tasks`
        : "nothing automatic: GitHub's events do not say who added the label; add it again",
      safe: by !== undefined,
      issue: {
        installationId: repo.installationId ?? 0,
        repoFullName: repo.fullName,
        number: issue.number,
      },
      facts: { repoId: repo.id, issueNumber: issue.number, label },
    };
    return finding;
  });
  return found.filter((finding): finding is DetectedFinding => finding !== null);
}

export const missedLabel: Detector = {
  kind: MISSED_LABEL,
  async detect(ctx) {
    const requesterFor = installations(ctx);
    const findings: DetectedFinding[] = [];
    for (const repo of await installedRepos(ctx.pool)) {
      findings.push(
        ...(await perRepository(MISSED_LABEL, repo, () =>
          labelledWithoutTask(ctx, requesterFor, repo),
        )),
      );
    }
    return findings;
  },

  async repair(ctx, finding, by) {
    const repo = await getRepo(ctx.pool, Number(finding.facts.repoId));
    const number = Number(finding.facts.issueNumber);
    if (repo.installationId === null) return { repaired: false, detail: "not installed" };
    if (await findTask(ctx.pool, repo.id, number)) {
      return { repaired: false, moot: true, detail: "no longer stands: the issue has a task" };
    }
    const github = await installations(ctx)(repo.installationId);
    const config = await readPolledConfig(ctx, github, repo);
    if (!config.ok) return { repaired: false, detail: config.reason };
    const label = config.config.label;
    const issue = await readIssue(ctx, github, repo, number);
    if (
      issue?.state !== "open" ||
      issue.pull_request !== undefined ||
      !issue.labels.some((each) => each.name === label)
    ) {
      return {
        repaired: false,
        moot: true,
        detail: `no longer stands: the issue is not open with \`${label}\``,
      };
    }
    const labelling = lastLabelling(await issueEvents(ctx, github, repo, number), label);
    const who = labelling?.actor;
    if (!labelling || !who) {
      return { repaired: false, detail: "GitHub's events do not say who added the label" };
    }
    const refused = await refuse(ctx, github, repo, {
      issueNumber: number,
      taskId: null,
      who,
      eventId: labelling.id,
      config: config.config,
      what: "start Overseer by labelling",
    });
    if (refused) return refused;
    const cause = repairCause(MISSED_LABEL, finding, by);
    const labelled: Decision = {
      action: "labeled",
      at: new Date(labelling.created_at),
      login: who.login,
      deliveryId: null,
    };
    const queued = await withTransaction(ctx.pool, async (client) => {
      // The same order as deliveries keep: a removal or close recorded after this labelling
      // (its delivery arrived; this one never did) stands.
      const target = { repoId: repo.id, issueNumber: number, label };
      const order = await decideRepair(client, target, labelled);
      if (order !== "newer") return null;
      return queueFromTriggerLabel(
        client,
        repo,
        { number, title: issue.title, labels: issue.labels.map((each) => each.name) },
        config.config,
        { ...cause, login: who.login },
        `reply:watchdog-event:${labelling.id}`,
      );
    });
    if (!queued) {
      return {
        repaired: false,
        moot: true,
        detail: "no longer stands: a newer decision is recorded",
      };
    }
    return outcomeOf(
      queued,
      `task ${queued.task.id} ${queued.task.state}, labelled by ${who.login}`,
    );
  },
};

/** The newest decision, if it is a cancel made since the task was last queued. */
function cancelSince(
  events: readonly IssueEventRecord[],
  task: TaskRow,
  label: string,
): { type: CancelOnIssue; event: IssueEventRecord } | null {
  const decision = lastDecision(events, label);
  if (!decision || new Date(decision.created_at) < task.queuedAt) return null;
  if (decision.event === "closed") return { type: "issue_closed", event: decision };
  if (decision.event === "unlabeled") return { type: "unlabeled", event: decision };
  return null;
}

/**
 * A merged PR that closes the issue closes it too: that is the merge's to settle (done),
 * never a cancel. The PR is read again (conditionally: unchanged costs nothing).
 */
async function pullMerged(
  ctx: WatchdogContext,
  github: GithubRequester,
  polled: PolledTask,
): Promise<boolean> {
  if (polled.task.prNumber === null) return false;
  return (await readPull(ctx, github, polled))?.merged === true;
}

/** One repository's tasks whose trigger label was removed or whose issue was closed. */
async function cancelledOnGithub(
  ctx: WatchdogContext,
  requesterFor: (installationId: number) => Promise<GithubRequester>,
  repo: RepoRow,
  tasks: PolledTask[],
): Promise<DetectedFinding[]> {
  const github = await requesterFor(repo.installationId ?? 0);
  // Each task keeps the label it was queued with: usually one list for the repository.
  const openByLabel = new Map<string, Set<number>>();
  for (const label of new Set(tasks.map(({ task }) => taskConfig(task).label))) {
    const listed = await openIssuesLabelled(ctx, github, repo, label);
    openByLabel.set(label, new Set(listed.map((issue) => issue.number)));
  }
  const missing = tasks.filter(
    ({ task }) => !openByLabel.get(taskConfig(task).label)?.has(task.issueNumber),
  );
  const found = await inBatches(missing, async (polled) => {
    const { task } = polled;
    const label = taskConfig(task).label;
    const events = await issueEvents(ctx, github, repo, task.issueNumber);
    const cancel = cancelSince(events, task, label);
    if (!cancel?.event.actor) return null;
    if (await wasActedOn(ctx, repo, task.issueNumber, cancel.event.id)) return null;
    if (cancel.type === "issue_closed" && (await pullMerged(ctx, github, polled))) return null;
    const what =
      cancel.type === "issue_closed"
        ? `the issue was closed by ${cancel.event.actor.login}`
        : `the trigger label \`${label}\` was removed by ${cancel.event.actor.login}`;
    const finding: DetectedFinding = {
      id: `${MISSED_CANCEL}:task:${task.id}:event:${cancel.event.id}`,
      kind: MISSED_CANCEL,
      subject: `${repo.fullName}#${task.issueNumber}`,
      taskId: task.id,
      evidence: `the task is ${task.state} but ${what} at ${cancel.event.created_at}; no webhook recorded it`,
      repair: `cancel the task as the webhook would, if ${cancel.event.actor.login} may cancel`,
      safe: true,
      issue: {
        installationId: repo.installationId ?? 0,
        repoFullName: repo.fullName,
        number: task.issueNumber,
      },
      facts: { taskId: task.id, type: cancel.type, eventId: cancel.event.id },
    };
    return finding;
  });
  return found.filter((finding): finding is DetectedFinding => finding !== null);
}

export const missedCancel: Detector = {
  kind: MISSED_CANCEL,
  async detect(ctx) {
    const requesterFor = installations(ctx);
    const byRepo = new Map<number, PolledTask[]>();
    for (const polled of await cancellableTasks(ctx.pool)) {
      byRepo.set(polled.repo.id, [...(byRepo.get(polled.repo.id) ?? []), polled]);
    }
    const findings: DetectedFinding[] = [];
    for (const tasks of byRepo.values()) {
      const repo = (tasks[0] as PolledTask).repo;
      findings.push(
        ...(await perRepository(MISSED_CANCEL, repo, () =>
          cancelledOnGithub(ctx, requesterFor, repo, tasks),
        )),
      );
    }
    return findings;
  },

  async repair(ctx, finding, by) {
    const task = await getTask(ctx.pool, Number(finding.facts.taskId));
    if (!task || task.state === "done" || task.state === "cancelled") {
      return { repaired: false, moot: true, detail: "no longer stands: the task is settled" };
    }
    const repo = await getRepo(ctx.pool, task.repoId);
    if (repo.installationId === null) return { repaired: false, detail: "not installed" };
    const github = await installations(ctx)(repo.installationId);
    const label = taskConfig(task).label;
    const cancel = cancelSince(await issueEvents(ctx, github, repo, task.issueNumber), task, label);
    if (!cancel || cancel.event.id !== finding.facts.eventId || !cancel.event.actor) {
      return {
        repaired: false,
        moot: true,
        detail: "no longer stands: the issue's events changed",
      };
    }
    const issue = await readIssue(ctx, github, repo, task.issueNumber);
    const stands =
      cancel.type === "issue_closed"
        ? issue?.state === "closed"
        : issue !== null && !issue.labels.some((each) => each.name === label);
    if (!stands)
      return { repaired: false, moot: true, detail: "no longer stands: the issue changed back" };
    if (cancel.type === "issue_closed" && (await pullMerged(ctx, github, { task, repo }))) {
      return { repaired: false, moot: true, detail: "no longer stands: the task's PR merged" };
    }
    const who = cancel.event.actor;
    const refused = await refuse(ctx, github, repo, {
      issueNumber: task.issueNumber,
      taskId: task.id,
      who,
      eventId: cancel.event.id,
      config: taskConfig(task),
      what: cancelAttempt(cancel.type),
    });
    if (refused) return refused;
    const cause = repairCause(MISSED_CANCEL, finding, by);
    const decision: Decision = {
      action: cancel.type === "issue_closed" ? "closed" : "unlabeled",
      at: new Date(cancel.event.created_at),
      login: who.login,
      deliveryId: null,
    };
    const result = await withTransaction(ctx.pool, async (client) => {
      const target = { repoId: repo.id, issueNumber: task.issueNumber, label };
      const order = await decideRepair(client, target, decision);
      if (order !== "newer") return "stale" as const;
      return cancelOnIssue(client, task.id, cancel.type, who.login, cause);
    });
    if (result === "stale") {
      return {
        repaired: false,
        moot: true,
        detail: "no longer stands: a newer decision is recorded",
      };
    }
    return outcomeOf(result, `task cancelled (${cancel.type.replace("_", " ")} by ${who.login})`);
  },
};
