import type { Probot } from "probot";
import type { RepoConfig } from "../config/repo-config.js";
import { enqueueOutbox } from "../db/outbox.js";
import type { PoolClient } from "../db/pool.js";
import type { RepoRow } from "../db/repos.js";
import { changeTaskIn, queueTaskFor } from "../db/task-changes.js";
import { appendTaskEvent } from "../db/task-events.js";
import { setWorkerProfile, type TaskRow } from "../db/tasks.js";
import { actor } from "../domain/actors.js";
import { AGENT_LABEL_PREFIX, agentProfileFromLabels } from "../domain/labels.js";
import { STATE_LABEL_PREFIX } from "../domain/transitions.js";
import {
  type Delivery,
  findTaskForIssue,
  type HandlerDependencies,
  oncePerDelivery,
  readRepoConfig,
  recordDeliveryIn,
} from "./deliveries.js";
import { issueEventSchema, parsePayload } from "./payloads.js";

/** The trigger label Overseer answers when a repository's config cannot be read. */
const DEFAULT_TRIGGER_LABEL = "overseer";

/**
 * Issue intake: the trigger label creates (or re-queues) a task; removing it, or closing
 * the issue, cancels. Each handler reads what it needs from GitHub first (the config),
 * then records the delivery and every change in one transaction and answers; GitHub
 * writes go to the outbox.
 */
export function registerIntake(app: Probot, deps: HandlerDependencies): void {
  app.on("issues.labeled", (context) =>
    oncePerDelivery(deps, context, (delivery) => onLabeled(deps, delivery)),
  );
  app.on("issues.unlabeled", (context) =>
    oncePerDelivery(deps, context, (delivery) => onCancelled(deps, delivery, "unlabeled")),
  );
  app.on("issues.closed", (context) =>
    oncePerDelivery(deps, context, (delivery) => onCancelled(deps, delivery, "issue_closed")),
  );
}

async function onLabeled(deps: HandlerDependencies, delivery: Delivery): Promise<void> {
  const event = parsePayload(issueEventSchema, delivery.context.payload, "issues.labeled");
  const labelName = event.label?.name ?? "";
  // Overseer's own state labels arrive as labeled events too; they never trigger anything.
  if (labelName === "" || labelName.startsWith(STATE_LABEL_PREFIX)) return;
  const existing = await findTaskForIssue(deps, event);
  if (existing && isAgentLabel(labelName)) return onAgentLabel(deps, delivery, existing);
  const triggerLabel = (existing?.config as Partial<RepoConfig> | undefined)?.label;
  // A label that cannot be the trigger (per the task's config) costs no config read.
  if (existing && triggerLabel && triggerLabel !== labelName) return;
  const config = await readRepoConfig(delivery.context);
  const installationId = event.installation?.id ?? null;
  if (!config.ok) {
    if (labelName !== DEFAULT_TRIGGER_LABEL && !existing) return;
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
  await recordDeliveryIn(deps, delivery, event.repository, installationId, async (client, repo) => {
    const queued = await queueTaskFor(
      client,
      repo,
      { ...event.issue, labels: event.issue.labels.map((label) => label.name) },
      config.config,
      {
        actor: actor.github(event.sender.login),
        login: event.sender.login,
        cause: `delivery:${delivery.id}`,
      },
    );
    const labels = event.issue.labels.map((label) => label.name);
    await replyIfAgentLabelsConflict(client, repo, queued.task, labels, delivery);
    delivery.log.info(
      {
        task: queued.task.id,
        state: queued.task.state,
        ...(queued.ok ? {} : { refused: queued.reason }),
      },
      "trigger label handled",
    );
  });
}

async function onCancelled(
  deps: HandlerDependencies,
  delivery: Delivery,
  type: "unlabeled" | "issue_closed",
): Promise<void> {
  const event = parsePayload(issueEventSchema, delivery.context.payload, `issues.${type}`);
  const existing = await findTaskForIssue(deps, event);
  if (!existing) return;
  if (type === "unlabeled" && isAgentLabel(event.label?.name ?? "")) {
    return onAgentLabel(deps, delivery, existing);
  }
  const trigger = (existing.config as Partial<RepoConfig>).label ?? DEFAULT_TRIGGER_LABEL;
  if (type === "unlabeled" && event.label?.name !== trigger) return;
  const cause = { actor: actor.github(event.sender.login), cause: `delivery:${delivery.id}` };
  await recordDeliveryIn(
    deps,
    delivery,
    event.repository,
    event.installation?.id ?? null,
    async (client) => {
      const result = await changeTaskIn(
        client,
        { id: existing.id },
        { type, actor: event.sender.login },
        cause,
      );
      delivery.log.info(
        { task: existing.id, ...(result && !result.ok ? { refused: result.reason } : {}) },
        `${type} handled`,
      );
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
  task: TaskRow,
): Promise<void> {
  const action = (delivery.context.payload as { action?: string }).action ?? "labeled";
  const event = parsePayload(issueEventSchema, delivery.context.payload, `issues.${action}`);
  const labels = event.issue.labels.map((label) => label.name);
  const configured = (task.config as Partial<RepoConfig>).worker ?? null;
  const profile = agentProfileFromLabels(labels).profile ?? configured;
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
      await replyIfAgentLabelsConflict(client, repo, task, labels, delivery);
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
  delivery: Delivery,
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
    key: { dedupe: `reply:${delivery.id}` },
  });
}
