import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { Context, Probot } from "probot";
import {
  DEFAULT_REPO_CONFIG,
  loadRepoConfig,
  REPO_CONFIG_FILE,
  type RepoConfig,
  renderConfigProblem,
} from "../config/repo-config.js";
import { isDeliverySeen, recordDelivery } from "../db/deliveries.js";
import { applyTaskEvent, performEffects } from "../db/lifecycle.js";
import { enqueueOutbox } from "../db/outbox.js";
import { type Pool, type PoolClient, withTransaction } from "../db/pool.js";
import { type RepoRow, upsertRepo } from "../db/repos.js";
import { appendTaskEvent, type Cause } from "../db/task-events.js";
import {
  findTask,
  findTaskByPullRequest,
  insertTaskIfAbsent,
  lockTask,
  type TaskChanges,
  type TaskRow,
} from "../db/tasks.js";
import { branchName } from "../domain/branch.js";
import { helpText, parseCommands } from "../domain/commands.js";
import { createTask, describeState, STATE_LABEL_PREFIX } from "../domain/transitions.js";
import type { CommandName, TaskEvent } from "../domain/types.js";
import {
  type IssueCommentEvent,
  issueCommentSchema,
  issueEventSchema,
  parsePayload,
  priorityFromLabels,
  type Repository,
} from "./payloads.js";
import { hasCommandPermission, type PermissionCache, refusalText } from "./permissions.js";

export interface IntakeDependencies {
  pool: Pool;
  log: Logger;
  permissions: PermissionCache;
}

/** Marks every comment Overseer writes, so its own comments never count as commands. */
export const OVERSEER_COMMENT_MARKER = "<!-- overseer:";

/**
 * Issue intake: labels create and cancel tasks, comments steer them. Each handler reads
 * what it needs from GitHub first (config, permission), then records the delivery and
 * every change in one transaction and answers; GitHub writes go to the outbox.
 */
export function registerIntake(app: Probot, deps: IntakeDependencies): void {
  app.on("issues.labeled", (context) =>
    oncePerDelivery(deps, context, () => onLabeled(deps, context)),
  );
  app.on("issues.unlabeled", (context) =>
    oncePerDelivery(deps, context, () => onCancelled(deps, context, "unlabeled")),
  );
  app.on("issues.closed", (context) =>
    oncePerDelivery(deps, context, () => onCancelled(deps, context, "issue_closed")),
  );
  app.on("issue_comment.created", (context) =>
    oncePerDelivery(deps, context, () => onComment(deps, context)),
  );
}

/** A redelivery (same X-GitHub-Delivery id) is dropped before any API call. */
export async function oncePerDelivery(
  deps: Pick<IntakeDependencies, "pool" | "log">,
  context: Context,
  handle: () => Promise<void>,
): Promise<void> {
  if (await isDeliverySeen(deps.pool, context.id)) {
    deps.log.info({ delivery: context.id, event: context.name }, "redelivery ignored");
    return;
  }
  await handle();
}

/**
 * Runs `work` in a transaction that first records the delivery id; a concurrent duplicate
 * of the same delivery loses the insert and changes nothing.
 */
export async function recordDeliveryIn(
  deps: IntakeDependencies,
  context: Context,
  repository: Repository,
  installationId: number | null,
  work: (client: PoolClient, repo: RepoRow) => Promise<void>,
): Promise<void> {
  await withTransaction(deps.pool, async (client) => {
    const repo = await upsertRepo(client, {
      githubId: repository.id,
      fullName: repository.full_name,
      installationId,
      cloneUrl: repository.clone_url,
      defaultBranch: repository.default_branch,
    });
    const payload = context.payload as { action?: string };
    const fresh = await recordDelivery(client, {
      id: context.id,
      event: context.name,
      action: payload.action ?? null,
      repoId: repo.id,
    });
    if (!fresh) return;
    await work(client, repo);
  });
}

/** Locks the task and applies one event to it, in the delivery's transaction. */
export async function applyInDelivery(
  deps: IntakeDependencies,
  context: Context,
  event: { repository: Repository; installation?: { id: number } | null },
  taskId: number,
  taskEvent: TaskEvent,
  cause: Cause,
  changes?: TaskChanges,
): Promise<void> {
  await recordDeliveryIn(
    deps,
    context,
    event.repository,
    event.installation?.id ?? null,
    async (client, repo) => {
      const task = await lockTask(client, { id: taskId });
      if (task) await applyTaskEvent(client, repo, task, taskEvent, cause, changes);
    },
  );
}

async function readRepoConfig(
  context: Context,
): Promise<{ ok: true; config: RepoConfig } | { ok: false; body: string; key: string }> {
  const result = await loadRepoConfig(() => context.config(REPO_CONFIG_FILE));
  if (result.ok) return result;
  const body = renderConfigProblem(result.problems);
  return { ok: false, body, key: createHash("sha256").update(body).digest("hex").slice(0, 16) };
}

async function onLabeled(deps: IntakeDependencies, context: Context): Promise<void> {
  const event = parsePayload(issueEventSchema, context.payload, "issues.labeled");
  const labelName = event.label?.name ?? "";
  // Overseer's own state labels arrive as labeled events too; they never trigger anything.
  if (labelName === "" || labelName.startsWith(STATE_LABEL_PREFIX)) return;
  const existing = await findTaskForIssue(deps, event);
  const triggerLabel = (existing?.config as Partial<RepoConfig> | undefined)?.label;
  // A label that cannot be the trigger (per the task's config) costs no config read.
  if (existing && triggerLabel && triggerLabel !== labelName) return;
  const config = await readRepoConfig(context);
  const installationId = event.installation?.id ?? null;
  if (!config.ok) {
    if (labelName !== "overseer" && !existing) return;
    await recordDeliveryIn(
      deps,
      context,
      event.repository,
      installationId,
      async (client, repo) => {
        await enqueueOutbox(client, {
          taskId: existing?.id ?? null,
          installationId: repo.installationId ?? 0,
          repoFullName: repo.fullName,
          kind: "reply",
          payload: { issueNumber: event.issue.number, body: config.body },
          key: { dedupe: `config-error:${repo.id}:${event.issue.number}:${config.key}` },
        });
      },
    );
    return;
  }
  if (labelName !== config.config.label) return;
  await recordDeliveryIn(deps, context, event.repository, installationId, (client, repo) =>
    queueTask(client, repo, event, config.config, {
      actor: event.sender.login,
      cause: `delivery:${context.id}`,
    }).then(() => undefined),
  );
}

async function findTaskForIssue(
  deps: IntakeDependencies,
  event: { repository: Repository; issue: { number: number } },
): Promise<TaskRow | null> {
  const result = await deps.pool.query<{ id: number }>(
    "SELECT id FROM repos WHERE github_id = $1",
    [event.repository.id],
  );
  const repoId = result.rows[0]?.id;
  return repoId === undefined ? null : findTask(deps.pool, repoId, event.issue.number);
}

/**
 * Creates the task (queued, or awaiting approval when risk-labelled) or re-queues an
 * existing one. Concurrent deliveries for one issue race on the (repository, issue)
 * constraint: one creates, the others find an active task and change nothing.
 */
async function queueTask(
  client: PoolClient,
  repo: RepoRow,
  event: { issue: { number: number; title: string; labels: { name: string }[] } },
  config: RepoConfig,
  cause: Cause,
): Promise<{ ok: boolean; reason?: string }> {
  const labels = event.issue.labels.map((label) => label.name);
  const riskLabelled = labels.some((label) => config.riskLabels.includes(label));
  const facts = {
    title: event.issue.title,
    labels,
    config: { ...config } as Record<string, unknown>,
    maxAttempts: config.maxAttempts,
    riskLabelled,
    priority: priorityFromLabels(labels),
    workerProfile: config.worker,
    baseBranch: config.base ?? repo.defaultBranch,
  };
  const fresh = createTask({ maxAttempts: config.maxAttempts, riskLabelled });
  const inserted = await insertTaskIfAbsent(client, {
    repoId: repo.id,
    issueNumber: event.issue.number,
    state: fresh.task.state,
    branch: branchName(event.issue.number, event.issue.title),
    ...facts,
  });
  if (inserted.task) {
    await appendTaskEvent(client, {
      taskId: inserted.task.id,
      event: "labeled",
      fromState: null,
      toState: inserted.task.state,
      ...cause,
    });
    await performEffects(client, repo, inserted.task, fresh.effects, cause);
    return { ok: true };
  }
  const task = await lockTask(client, { repoId: repo.id, issueNumber: event.issue.number });
  if (!task) throw new Error(`task for ${repo.fullName}#${event.issue.number} vanished`);
  const result = await applyTaskEvent(
    client,
    repo,
    { ...task, riskLabelled, maxAttempts: config.maxAttempts },
    { type: "labeled", actor: cause.actor },
    cause,
    facts,
  );
  return result.ok ? { ok: true } : { ok: false, reason: result.reason };
}

async function onCancelled(
  deps: IntakeDependencies,
  context: Context,
  type: "unlabeled" | "issue_closed",
): Promise<void> {
  const event = parsePayload(issueEventSchema, context.payload, `issues.${type}`);
  const existing = await findTaskForIssue(deps, event);
  if (!existing) return;
  const trigger = (existing.config as Partial<RepoConfig>).label ?? "overseer";
  if (type === "unlabeled" && event.label?.name !== trigger) return;
  const cause = { actor: event.sender.login, cause: `delivery:${context.id}` };
  await applyInDelivery(deps, context, event, existing.id, { type, actor: cause.actor }, cause);
}

async function onComment(deps: IntakeDependencies, context: Context): Promise<void> {
  const event = parsePayload(issueCommentSchema, context.payload, "issue_comment.created");
  const { comment } = event;
  if (
    comment.user.type === "Bot" ||
    event.sender.type === "Bot" ||
    comment.performed_via_github_app ||
    comment.body.includes(OVERSEER_COMMENT_MARKER)
  ) {
    return;
  }
  const parsed = parseCommands(comment.body);
  if (parsed.commands.length === 0 && parsed.unknown.length === 0) return;

  const existing = await findTaskForComment(deps, context, event);
  const config = existing
    ? { ok: true as const, config: { ...DEFAULT_REPO_CONFIG, ...existing.config } as RepoConfig }
    : await readRepoConfig(context);
  const installationId = event.installation?.id ?? null;
  const username = comment.user.login;
  const cause = (command: string) => ({
    actor: username,
    cause: `delivery:${context.id}`,
    detail: { command: `/${command}`, commentId: comment.id },
  });
  const replies: string[] = [];
  const reply = (client: PoolClient, repo: RepoRow) =>
    replies.length === 0
      ? Promise.resolve()
      : enqueueOutbox(client, {
          taskId: existing?.id ?? null,
          installationId: repo.installationId ?? 0,
          repoFullName: repo.fullName,
          kind: "reply",
          payload: { issueNumber: event.issue.number, body: replies.join("\n\n") },
          key: { dedupe: `reply:${context.id}` },
        });

  if (!config.ok) {
    replies.push(config.body);
    await recordDeliveryIn(deps, context, event.repository, installationId, reply);
    return;
  }
  const permission = await hasCommandPermission(context.octokit, {
    owner: event.repository.owner.login,
    repo: event.repository.name,
    username,
    required: config.config.commanders,
    cache: deps.permissions,
    installationId: installationId ?? undefined,
  });
  if (!permission.allowed) {
    replies.push(refusalText(username, permission.permission, config.config.commanders));
    await recordDeliveryIn(deps, context, event.repository, installationId, reply);
    return;
  }

  await recordDeliveryIn(deps, context, event.repository, installationId, async (client, repo) => {
    let accepted = false;
    if (parsed.unknown.length > 0) {
      replies.push(
        `I don't know ${parsed.unknown.map((word) => `\`${word}\``).join(", ")}.\n\n${helpText()}`,
      );
    }
    for (const command of parsed.commands) {
      const outcome = await runCommand(
        client,
        repo,
        event,
        existing?.id ?? null,
        config.config,
        command,
        cause(command),
      );
      if (outcome.reply) replies.push(outcome.reply);
      accepted ||= outcome.accepted;
    }
    if (accepted) {
      await enqueueOutbox(client, {
        taskId: existing?.id ?? null,
        installationId: repo.installationId ?? 0,
        repoFullName: repo.fullName,
        kind: "reaction",
        payload: { commentId: comment.id, content: "+1" },
        key: { dedupe: `reaction:${comment.id}` },
      });
    }
    await reply(client, repo);
  });
}

async function runCommand(
  client: PoolClient,
  repo: RepoRow,
  event: IssueCommentEvent,
  taskId: number | null,
  config: RepoConfig,
  command: CommandName,
  cause: Cause,
): Promise<{ accepted: boolean; reply?: string }> {
  // The task was found before the transaction; an issue's task may have been created since.
  const task =
    taskId !== null
      ? await lockTask(client, { id: taskId })
      : event.issue.pull_request
        ? null
        : await lockTask(client, { repoId: repo.id, issueNumber: event.issue.number });
  if (command === "help") return { accepted: true, reply: helpText() };
  if (!task) {
    if (command === "run" && !event.issue.pull_request) {
      const queued = await queueTask(client, repo, event, config, cause);
      return { accepted: queued.ok, reply: queued.reason };
    }
    return {
      accepted: false,
      reply: `There is no Overseer task here. Add the \`${config.label}\` label (or comment \`/run\`) to start one.`,
    };
  }
  if (command === "status") {
    return {
      accepted: true,
      reply: `Task is **${describeState(task.state)}** (attempt ${task.attempts} of ${task.maxAttempts})${
        task.lastError ? `; last error: ${task.lastError.split("\n")[0]}` : ""
      }. The status comment above has the details.`,
    };
  }
  const result = await applyTaskEvent(
    client,
    repo,
    task,
    { type: "command", command, actor: cause.actor },
    cause,
  );
  return result.ok ? { accepted: true } : { accepted: false, reply: result.reason };
}

/** A comment on a PR addresses the task that owns the PR (by number, else by head branch). */
async function findTaskForComment(
  deps: IntakeDependencies,
  context: Context,
  event: IssueCommentEvent,
): Promise<TaskRow | null> {
  if (!event.issue.pull_request) return findTaskForIssue(deps, event);
  const repo = await deps.pool.query<{ id: number }>("SELECT id FROM repos WHERE github_id = $1", [
    event.repository.id,
  ]);
  const repoId = repo.rows[0]?.id;
  if (repoId === undefined) return null;
  const byNumber = await findTaskByPullRequest(deps.pool, repoId, {
    number: event.issue.number,
    headRef: null,
  });
  if (byNumber) return byNumber;
  const pull = await context.octokit.request("GET /repos/{owner}/{repo}/pulls/{pull_number}", {
    owner: event.repository.owner.login,
    repo: event.repository.name,
    pull_number: event.issue.number,
  });
  return findTaskByPullRequest(deps.pool, repoId, {
    number: event.issue.number,
    headRef: pull.data.head.ref,
  });
}
