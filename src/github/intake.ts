import type { Probot } from "probot";
import type { RepoConfig } from "../config/repo-config.js";
import { enqueueOutbox } from "../db/outbox.js";
import { changeTaskIn, queueTaskFor } from "../db/task-changes.js";
import { actor } from "../domain/actors.js";
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
