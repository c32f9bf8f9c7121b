import type { Probot } from "probot";
import { DEFAULT_REPO_CONFIG, type RepoConfig } from "../config/repo-config.js";
import { enqueueOutbox } from "../db/outbox.js";
import type { PoolClient } from "../db/pool.js";
import type { RepoRow } from "../db/repos.js";
import { type ChangeResult, changeTaskIn, queueTaskFor } from "../db/task-changes.js";
import { appendTaskEvent, type Cause } from "../db/task-events.js";
import { setWorkerProfile, type TaskRow } from "../db/tasks.js";
import { actor } from "../domain/actors.js";
import { type Decision, newestDecision } from "../domain/decisions.js";
import {
  AGENT_LABEL_PREFIX,
  agentProfileFromLabels,
  hasRiskLabel,
  priorityFromLabels,
} from "../domain/labels.js";
import { STATE_LABEL_PREFIX } from "../domain/transitions.js";
import {
  decidedAt,
  decideInOrder,
  HANDLED,
  orderAgainst,
  recordDecision,
  type SeenIssue,
} from "./decisions.js";
import {
  type Delivery,
  findTaskForIssue,
  type HandlerDependencies,
  onDelivery,
  readRepoConfig,
  recordDeliveryIn,
  rememberRepository,
} from "./deliveries.js";
import { type IssueEvent, issueEventSchema, parsePayload } from "./payloads.js";
import { judgeSender, replyRefusalOnce, type SenderVerdict, senderRefusalText } from "./senders.js";

/** The trigger label Overseer answers when a repository's config cannot be read. */
export const DEFAULT_TRIGGER_LABEL = "overseer";

/**
 * Issue intake: the trigger label creates (or re-queues) a task; removing it, or closing
 * the issue, cancels; an `agent:` label picks the worker profile; any other label change
 * recomputes the risk flag. Each handler reads
 * what it needs from GitHub first (the config, the sender's permission), then records the
 * delivery and every change in one transaction and answers; GitHub writes go to the outbox.
 * The trigger label's additions and removals and the issue's closing are applied in the
 * order GitHub says they happened, whatever order their deliveries arrive in
 * (src/github/decisions.ts).
 *
 * Starting, cancelling and picking the agent are commands by other means, so the sender
 * needs `commanders` permission (bots: `trusted_bots`), as for a comment.
 */
export function registerIntake(app: Probot, deps: HandlerDependencies): void {
  onDelivery(
    app,
    deps,
    "issues.labeled",
    { schema: issueEventSchema, ignores: isOwnStateLabel },
    (delivery) => onLabeled(deps, delivery),
  );
  onDelivery(
    app,
    deps,
    "issues.unlabeled",
    { schema: issueEventSchema, ignores: removesOwnStateLabel },
    (delivery) => onUnlabeled(deps, delivery),
  );
  onDelivery(app, deps, "issues.closed", { schema: issueEventSchema }, (delivery) =>
    cancelInOrder(
      deps,
      delivery,
      parsePayload(issueEventSchema, delivery.context.payload, "issues.closed"),
      "issue_closed",
    ),
  );
}

/** Overseer's own state labels come back as labeled events; they cost no query. */
function isOwnStateLabel(event: IssueEvent): boolean {
  const name = event.label?.name ?? "";
  return name === "" || name.startsWith(STATE_LABEL_PREFIX);
}

/** And as unlabeled events, when a state label makes way for the next. */
function removesOwnStateLabel(event: IssueEvent): boolean {
  return (event.label?.name ?? "").startsWith(STATE_LABEL_PREFIX);
}

async function onLabeled(deps: HandlerDependencies, delivery: Delivery): Promise<void> {
  const event = parsePayload(issueEventSchema, delivery.context.payload, "issues.labeled");
  const labelName = event.label?.name ?? "";
  // Overseer's own state labels arrive as labeled events too; they never trigger anything.
  if (labelName === "" || labelName.startsWith(STATE_LABEL_PREFIX)) return;
  await rememberRepository(deps, event.repository, event.installation?.id ?? null);
  const existing = await findTaskForIssue(deps, event);
  if (existing && isAgentLabel(labelName)) {
    await onAgentLabel(deps, delivery, event, existing);
    return;
  }
  const triggerLabel = existing ? taskConfig(existing).label : undefined;
  // A label that cannot be the trigger (per the task's config) costs no config read.
  if (existing && triggerLabel !== labelName) {
    await recomputeRisk(deps, delivery, event, existing, "labeled");
    return;
  }
  const config = await readRepoConfig(deps.pool, delivery.context);
  const installationId = event.installation?.id ?? null;
  if (!config.ok) {
    if (labelName !== DEFAULT_TRIGGER_LABEL && !existing) return;
    // Whoever could not start a task does not get Overseer to comment either.
    const verdict = await judgeSender(deps, delivery.context.octokit, event, DEFAULT_REPO_CONFIG);
    if (!verdict.allowed) {
      await refuseSender(deps, delivery, event, existing, verdict, {
        config: DEFAULT_REPO_CONFIG,
        what: "start Overseer by labelling",
      });
      return;
    }
    await recordDeliveryIn(deps, delivery, event.repository, installationId, (client, repo) =>
      enqueueOutbox(client, {
        taskId: existing?.id ?? null,
        installationId: repo.installationId ?? 0,
        repoFullName: repo.fullName,
        kind: "reply",
        payload: { issueNumber: event.issue.number, body: config.body },
        key: { dedupe: `config-error:${repo.id}:${event.issue.number}:${config.key}` },
      }),
    );
    delivery.log.info({ issue: event.issue.number }, "repository config is invalid; replied");
    return;
  }
  if (labelName !== config.config.label) return;
  const verdict = await judgeSender(deps, delivery.context.octokit, event, config.config);
  if (!verdict.allowed) {
    await refuseSender(deps, delivery, event, existing, verdict, {
      config: config.config,
      what: "start Overseer by labelling",
    });
    return;
  }
  await queueInOrder(deps, delivery, event, config.config, labelName);
}

/**
 * The trigger label added by someone who may start tasks: the task is queued, unless a
 * newer decision on the issue was recorded (the label removed or the issue closed after
 * this event, their deliveries having overtaken this one). On an issue with a task that
 * decision has been applied to it, or will be. On an issue without one it found nothing
 * to cancel, so the task is queued and at once cancelled in the name of whoever removed the
 * label or closed the issue, as in-order delivery would have left it; if they may not
 * cancel, their removal never counted and the task stays queued.
 */
async function queueInOrder(
  deps: HandlerDependencies,
  delivery: Delivery,
  event: IssueEvent,
  config: RepoConfig,
  label: string,
): Promise<void> {
  const at = decidedAt(event, "labeled");
  const login = event.sender.login;
  await decideInOrder(deps, delivery, event, {
    labelFor: () => label,
    prepare: async (seen) => {
      const overtaken = overtakingDecision(seen, at);
      if (!overtaken) return { overtaken: null, mayCancel: false };
      const verdict = await judgeSender(
        deps,
        delivery.context.octokit,
        { ...event, sender: { login: overtaken.login } },
        config,
      );
      return { overtaken, mayCancel: verdict.allowed };
    },
    apply: async (client, repo, seen, { overtaken, mayCancel }) => {
      const order = orderAgainst(seen, { action: "labeled", at });
      if (order === "same" || (order === "stale" && seen.task)) {
        delivery.log.info(
          { task: seen.task?.id, order },
          "labeled after a newer decision; ignored",
        );
        return;
      }
      if (order === "newer" && at) {
        const target = { repoId: repo.id, issueNumber: event.issue.number, label };
        await recordDecision(client, target, {
          action: "labeled",
          at,
          login,
          deliveryId: delivery.id,
        });
      }
      const queued = await queueFromTriggerLabel(
        client,
        repo,
        { ...event.issue, labels: labelNames(event) },
        config,
        { actor: actor.github(login), login, cause: `delivery:${delivery.id}` },
        `reply:${delivery.id}`,
      );
      const cancelled =
        overtaken && mayCancel
          ? await cancelOnIssue(client, queued.task.id, cancelTypeOf(overtaken), overtaken.login, {
              actor: actor.github(overtaken.login),
              cause: `delivery:${overtaken.deliveryId ?? delivery.id}`,
              detail: { after: `delivery:${delivery.id}` },
            })
          : null;
      delivery.log.info(
        {
          task: queued.task.id,
          state: cancelled?.task.state ?? queued.task.state,
          ...(queued.ok ? {} : { refused: queued.reason }),
          ...(overtaken ? { overtakenBy: overtaken.action } : {}),
        },
        "trigger label handled",
      );
    },
  });
}

/** The newer removal or close a stale `labeled` delivery on an issue without a task follows. */
function overtakingDecision(seen: SeenIssue, at: Date | null): Decision | null {
  if (seen.task || orderAgainst(seen, { action: "labeled", at }) !== "stale") return null;
  const newest = newestDecision([seen.recorded.label, seen.recorded.closed]);
  return newest && newest.action !== "labeled" ? newest : null;
}

function cancelTypeOf(decision: Decision): CancelOnIssue {
  return decision.action === "closed" ? "issue_closed" : "unlabeled";
}

/**
 * The trigger label is on the issue and its labeller may start tasks: the task is created
 * or re-queued (see queueTaskFor), and conflicting agent labels are pointed out once
 * (`replyKey` deduplicates the reply). A delivery and the watchdog's poll both queue here.
 */
export async function queueFromTriggerLabel(
  client: PoolClient,
  repo: RepoRow,
  issue: { number: number; title: string; labels: readonly string[] },
  config: RepoConfig,
  cause: Cause & { login: string },
  replyKey: string,
): Promise<ChangeResult> {
  const queued = await queueTaskFor(client, repo, issue, config, cause);
  await replyIfAgentLabelsConflict(client, repo, queued.task, [...issue.labels], replyKey);
  return queued;
}

async function onUnlabeled(deps: HandlerDependencies, delivery: Delivery): Promise<void> {
  const event = parsePayload(issueEventSchema, delivery.context.payload, "issues.unlabeled");
  const name = event.label?.name ?? "";
  // Overseer's own state labels, swapped as a task moves on, decide nothing.
  if (name === "" || name.startsWith(STATE_LABEL_PREFIX)) return;
  await cancelInOrder(deps, delivery, event, "unlabeled", name);
}

/**
 * Removing the trigger label or closing the issue: a cancel, if the sender may command and
 * no newer decision was recorded (the label added again after this event). On an issue
 * without a task the decision is recorded all the same, for the `labeled` delivery it may
 * have overtaken; which label is the trigger is known only once a task has a config, so
 * there any removed label is recorded.
 */
async function cancelInOrder(
  deps: HandlerDependencies,
  delivery: Delivery,
  event: IssueEvent,
  type: CancelOnIssue,
  removed?: string,
): Promise<void> {
  const action = type === "issue_closed" ? "closed" : "unlabeled";
  const at = decidedAt(event, action);
  const login = event.sender.login;
  await decideInOrder(deps, delivery, event, {
    labelFor: (task) => (task ? taskConfig(task).label : (removed ?? null)),
    prepare: async ({ task }) => {
      if (task && removed !== undefined && removed !== taskConfig(task).label) {
        await onOtherLabelRemoved(deps, delivery, event, task, removed);
        return HANDLED;
      }
      // Nothing to cancel costs no permission lookup; the transition records the refusal.
      if (!task || task.state === "done" || task.state === "cancelled") return null;
      const config = taskConfig(task);
      const verdict = await judgeSender(deps, delivery.context.octokit, event, config);
      if (verdict.allowed) return null;
      await refuseSender(deps, delivery, event, task, verdict, {
        config,
        what: cancelAttempt(type),
      });
      return HANDLED;
    },
    apply: async (client, repo, seen) => {
      const order = orderAgainst(seen, { action, at });
      if (order !== "newer") {
        delivery.log.info(
          { task: seen.task?.id, order },
          `${type} after a newer decision; ignored`,
        );
        return;
      }
      if (at) {
        const target = {
          repoId: repo.id,
          issueNumber: event.issue.number,
          label: seen.label ?? "",
        };
        await recordDecision(client, target, { action, at, login, deliveryId: delivery.id });
      }
      if (!seen.task) return;
      const cause = { actor: actor.github(login), cause: `delivery:${delivery.id}` };
      const result = await cancelOnIssue(client, seen.task.id, type, login, cause);
      delivery.log.info(
        { task: seen.task.id, ...(result && !result.ok ? { refused: result.reason } : {}) },
        `${type} handled`,
      );
    },
  });
}

/** A label other than the task's trigger label removed: the agent, or the risk flag. */
async function onOtherLabelRemoved(
  deps: HandlerDependencies,
  delivery: Delivery,
  event: IssueEvent,
  task: TaskRow,
  name: string,
): Promise<void> {
  if (isAgentLabel(name)) await onAgentLabel(deps, delivery, event, task);
  else await recomputeRisk(deps, delivery, event, task, "unlabeled");
}

/** What a sender who may not cancel was trying to do, in the refusal's words. */
export function cancelAttempt(type: CancelOnIssue): string {
  return type === "issue_closed"
    ? "cancel the Overseer task by closing the issue"
    : "cancel the Overseer task by removing its label";
}

export type CancelOnIssue = "unlabeled" | "issue_closed";

/** The trigger label removed or the issue closed, by someone who may: the task is cancelled. */
export function cancelOnIssue(
  client: PoolClient,
  taskId: number,
  type: CancelOnIssue,
  login: string,
  cause: Cause,
): Promise<ChangeResult | null> {
  return changeTaskIn(client, { id: taskId }, { type, actor: login }, cause);
}

/**
 * Any other label change: the risk flag is recomputed from the labels now on the issue. A
 * risk label added (by anyone: it only makes Overseer more careful) parks the task and
 * withdraws its approval. Lifting the gate is the other direction: the API's list of
 * labels decides (a stale or reordered delivery must not), and only a commander may.
 */
async function recomputeRisk(
  deps: HandlerDependencies,
  delivery: Delivery,
  event: IssueEvent,
  existing: TaskRow,
  action: "labeled" | "unlabeled",
): Promise<void> {
  const config = taskConfig(existing);
  const labelName = event.label?.name ?? "";
  let labels = labelNames(event);
  let riskLabelled = hasRiskLabel(labels, config.riskLabels);
  const riskLabelAdded = action === "labeled" && config.riskLabels.includes(labelName);
  if (existing.state === "done") return;
  if (riskLabelled === existing.riskLabelled && !riskLabelAdded) return;
  if (existing.riskLabelled && !riskLabelled) {
    labels = await currentLabels(delivery, event);
    riskLabelled = hasRiskLabel(labels, config.riskLabels);
    if (riskLabelled) return;
    const verdict = await judgeSender(deps, delivery.context.octokit, event, config);
    if (!verdict.allowed) {
      await refuseSender(deps, delivery, event, existing, verdict, {
        config,
        what: "lift the risk gate by removing a risk label",
      });
      return;
    }
  }
  const changes = { labels, priority: priorityFromLabels(labels) };
  await recordDeliveryIn(
    deps,
    delivery,
    event.repository,
    event.installation?.id ?? null,
    async (client) => {
      const result = await changeTaskIn(
        client,
        { id: existing.id },
        { type: "labels_changed", actor: event.sender.login, riskLabelled, riskLabelAdded },
        { actor: actor.github(event.sender.login), cause: `delivery:${delivery.id}` },
        changes,
      );
      delivery.log.info(
        { task: existing.id, riskLabelled, riskLabelAdded, state: result?.task.state },
        "risk flag recomputed",
      );
    },
  );
}

/** The issue's labels as the API has them now (GitHub allows at most 100 per issue). */
async function currentLabels(delivery: Delivery, event: IssueEvent): Promise<string[]> {
  const response = await delivery.context.octokit.request(
    "GET /repos/{owner}/{repo}/issues/{issue_number}/labels",
    {
      owner: event.repository.owner.login,
      repo: event.repository.name,
      issue_number: event.issue.number,
      per_page: 100,
    },
  );
  return (response.data as { name: string }[]).map((label) => label.name);
}

/** Nothing happens for a sender who may not act; a person is told why (rate-limited). */
async function refuseSender(
  deps: HandlerDependencies,
  delivery: Delivery,
  event: IssueEvent,
  existing: TaskRow | null,
  verdict: Exclude<SenderVerdict, { allowed: true }>,
  refusal: { config: Pick<RepoConfig, "commanders">; what: string },
): Promise<void> {
  const login = event.sender.login;
  delivery.log.info({ user: login, refused: verdict.reason }, "sender may not act; ignored");
  if (verdict.reason !== "permission") return;
  await recordDeliveryIn(
    deps,
    delivery,
    event.repository,
    event.installation?.id ?? null,
    async (client, repo) => {
      await replyRefusalOnce(client, repo, {
        issueNumber: event.issue.number,
        taskId: existing?.id ?? null,
        login,
        body: senderRefusalText(login, verdict, refusal.config, refusal.what),
        deliveryId: delivery.id,
      });
    },
  );
}

function isAgentLabel(name: string): boolean {
  return name.toLowerCase().startsWith(AGENT_LABEL_PREFIX);
}

/**
 * An `agent:<profile>` label added to or removed from an issue with a task: the task's next
 * run uses the profile the labels now pick (none: the repository's `worker`). A run under
 * way keeps its profile. Which profiles a repository may use is the operator's call
 * (`repositories` in the profile); the runner refuses one not allowed.
 */
async function onAgentLabel(
  deps: HandlerDependencies,
  delivery: Delivery,
  event: IssueEvent,
  task: TaskRow,
): Promise<void> {
  const action = (delivery.context.payload as { action?: string }).action ?? "labeled";
  const config = taskConfig(task);
  if (task.state !== "done") {
    const verdict = await judgeSender(deps, delivery.context.octokit, event, config);
    if (!verdict.allowed) {
      await refuseSender(deps, delivery, event, task, verdict, {
        config,
        what: "pick the agent with an agent: label",
      });
      return;
    }
  }
  const labels = labelNames(event);
  const profile = agentProfileFromLabels(labels).profile ?? config.worker ?? null;
  await recordDeliveryIn(
    deps,
    delivery,
    event.repository,
    event.installation?.id ?? null,
    async (client, repo) => {
      await setWorkerProfile(client, task.id, { workerProfile: profile, labels });
      await appendTaskEvent(client, {
        taskId: task.id,
        event: "profile_selected",
        fromState: null,
        toState: null,
        actor: actor.github(event.sender.login),
        cause: `delivery:${delivery.id}`,
        detail: { profile, label: event.label?.name ?? null, action },
      });
      await enqueueOutbox(client, {
        taskId: task.id,
        installationId: repo.installationId ?? 0,
        repoFullName: repo.fullName,
        kind: "status_comment",
        payload: { issueNumber: task.issueNumber },
        key: { coalesce: `status:${task.id}` },
      });
      await replyIfAgentLabelsConflict(client, repo, task, labels, `reply:${delivery.id}`);
    },
  );
  delivery.log.info({ task: task.id, profile }, "agent label handled");
}

/** Several `agent:` labels pick no profile: say so once, on the issue. */
async function replyIfAgentLabelsConflict(
  client: PoolClient,
  repo: RepoRow,
  task: TaskRow,
  labels: string[],
  replyKey: string,
): Promise<void> {
  const { conflicting } = agentProfileFromLabels(labels);
  if (conflicting.length === 0) return;
  const names = conflicting.map((name) => `\`${AGENT_LABEL_PREFIX}${name}\``).join(", ");
  await enqueueOutbox(client, {
    taskId: task.id,
    installationId: repo.installationId ?? 0,
    repoFullName: repo.fullName,
    kind: "reply",
    payload: {
      issueNumber: task.issueNumber,
      body: `This issue has several agent labels (${names}), so none of them picks the worker. Keep one; until then the repository's worker runs.`,
    },
    key: { dedupe: replyKey },
  });
}

/** A task keeps the config it was queued with. */
export function taskConfig(task: TaskRow): RepoConfig {
  return { ...DEFAULT_REPO_CONFIG, ...task.config } as RepoConfig;
}

function labelNames(event: IssueEvent): string[] {
  return event.issue.labels.map((label) => label.name);
}
