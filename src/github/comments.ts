import type { Probot } from "probot";
import { DEFAULT_REPO_CONFIG, type RepoConfig } from "../config/repo-config.js";
import { enqueueOutbox } from "../db/outbox.js";
import type { PoolClient } from "../db/pool.js";
import { claimRefusalReply } from "../db/refusals.js";
import { findRepoByGithubId, type RepoRow } from "../db/repos.js";
import { addRevisionRequest, type RevisionSource } from "../db/revisions.js";
import { changeTaskIn, enqueueAutoMerge, queueTaskFor } from "../db/task-changes.js";
import type { Cause } from "../db/task-events.js";
import { findTaskByPullRequest, type TaskRow } from "../db/tasks.js";
import { actor } from "../domain/actors.js";
import { helpText, parseCommands } from "../domain/commands.js";
import { describeState } from "../domain/transitions.js";
import type { CommandName } from "../domain/types.js";
import {
  type Delivery,
  findTaskForIssue,
  type HandlerDependencies,
  onDelivery,
  type RepoConfigRead,
  readRepoConfig,
  recordDeliveryIn,
} from "./deliveries.js";
import { type IssueCommentEvent, issueCommentSchema, parsePayload } from "./payloads.js";
import { hasCommandPermission, refusalText } from "./permissions.js";

/**
 * Commands in new comments (`/retry`, `/stop`, …). Steps: ignore bots and Overseer's own
 * comments; parse; find the task and its config; check the commenter may command; then
 * apply every command, the reaction and the reply in the delivery's transaction.
 */
export function registerCommands(app: Probot, deps: HandlerDependencies): void {
  onDelivery(
    app,
    deps,
    "issue_comment.created",
    { schema: issueCommentSchema, ignores: asksNothing },
    (delivery) =>
      onComment(
        deps,
        delivery,
        parsePayload(issueCommentSchema, delivery.context.payload, "issue_comment.created"),
        ISSUE_COMMENT,
      ),
  );
}

/**
 * A well-formed comment that onComment would return from at once: a bot's, Overseer's
 * own, or one without a command line. Most comments are conversation; they cost no query.
 */
function asksNothing(event: IssueCommentEvent): boolean {
  if (isFromBotOrOverseer(event)) return true;
  const { commands, unknown } = parseCommands(event.comment.body);
  return commands.length === 0 && unknown.length === 0;
}

/** Where a comment carrying commands was written; review comments answer in their own way. */
export interface CommentOrigin {
  /** The revision request's source, when the comment says `/revise`. */
  source: RevisionSource;
  /** Prefixed to the revision request (a review comment's file and line). */
  context?: string;
  /** Where the 👍 goes. */
  reaction: "issue_comment" | "review_comment";
}

const ISSUE_COMMENT: CommentOrigin = { source: "command", reaction: "issue_comment" };

export async function onComment(
  deps: HandlerDependencies,
  delivery: Delivery,
  event: IssueCommentEvent,
  origin: CommentOrigin,
): Promise<void> {
  if (isFromBotOrOverseer(event)) return;
  const parsed = parseCommands(event.comment.body);
  if (parsed.commands.length === 0 && parsed.unknown.length === 0) return;

  const existing = await findTaskForComment(deps, delivery, event);
  const config = await configFor(deps, delivery, existing);
  const replies = new Replies(event, existing, delivery);
  const record = (work: (client: PoolClient, repo: RepoRow) => Promise<void>) =>
    recordDeliveryIn(deps, delivery, event.repository, event.installation?.id ?? null, work);

  if (!config.ok) {
    replies.add(config.body);
    await record((client, repo) => replies.send(client, repo));
    return;
  }
  const username = event.comment.user.login;
  const permission = await hasCommandPermission(delivery.context.octokit, {
    owner: event.repository.owner.login,
    repo: event.repository.name,
    username,
    required: config.config.commanders,
    cache: deps.permissions,
    installationId: event.installation?.id ?? null,
    userId: event.comment.user.id,
    repoOwner: event.repository.owner,
  });
  if (!permission.allowed) {
    delivery.log.info({ user: username, permission: permission.permission }, "command refused");
    await record(async (client, repo) => {
      const target = { repoId: repo.id, issueNumber: event.issue.number, login: username };
      if (await claimRefusalReply(client, target)) {
        replies.add(refusalText(username, permission.permission, config.config.commanders));
      }
      await replies.send(client, repo);
    });
    return;
  }
  const headSha = parsed.commands.includes("approve")
    ? await approvedHeadSha(delivery, event, existing)
    : null;
  await record(async (client, repo) => {
    if (parsed.unknown.length > 0) {
      replies.add(
        `I don't know ${parsed.unknown.map((word) => `\`${word}\``).join(", ")}.\n\n${helpText()}`,
      );
    }
    let accepted = false;
    for (const command of parsed.commands) {
      const outcome = await runCommand(client, repo, event, existing?.id ?? null, config.config, {
        command,
        headSha,
        cause: {
          actor: actor.github(username),
          cause: `delivery:${delivery.id}`,
          detail: { command: `/${command}`, commentId: event.comment.id },
        },
        ...(command === "revise" ? { revision: revisionRequestOf(parsed, event, origin) } : {}),
      });
      if (outcome.reply) replies.add(outcome.reply);
      accepted ||= outcome.accepted;
      delivery.log.info({ command, accepted: outcome.accepted, task: existing?.id }, "command");
    }
    if (accepted) await acknowledge(client, repo, event, existing, origin);
    await replies.send(client, repo);
  });
}

/** What `/revise` asks for, as a revision request of the task (recorded when it is accepted). */
function revisionRequestOf(
  parsed: ReturnType<typeof parseCommands>,
  event: IssueCommentEvent,
  origin: CommentOrigin,
): Omit<Parameters<typeof addRevisionRequest>[1], "taskId"> {
  const text = parsed.revisionRequest ?? "";
  return {
    source: origin.source,
    author: event.comment.user.login,
    body: origin.context ? `${origin.context}\n\n${text}`.trim() : text,
    githubId: event.comment.id,
  };
}

/**
 * Bots and Apps (Overseer included) are never commands. A marker in a person's comment
 * means nothing: markers count only on comments the App itself wrote.
 */
function isFromBotOrOverseer(event: IssueCommentEvent): boolean {
  const { comment } = event;
  return (
    comment.user.type === "Bot" ||
    event.sender.type === "Bot" ||
    Boolean(comment.performed_via_github_app)
  );
}

/**
 * An approval given while the task has a PR covers that PR's head commit, as the API
 * reports it now; auto-merge merges nothing else (see auto-merge.ts).
 */
async function approvedHeadSha(
  delivery: Delivery,
  event: IssueCommentEvent,
  task: TaskRow | null,
): Promise<string | null> {
  const approvable = task?.state === "awaiting_approval" || task?.state === "awaiting_merge";
  if (!approvable || task.prNumber === null) return null;
  const pull = await delivery.context.octokit.request(
    "GET /repos/{owner}/{repo}/pulls/{pull_number}",
    {
      owner: event.repository.owner.login,
      repo: event.repository.name,
      pull_number: task.prNumber,
    },
  );
  return (pull.data as { head: { sha: string } }).head.sha;
}

/** A known task keeps the config it was queued with; otherwise the repository's is read. */
async function configFor(
  deps: HandlerDependencies,
  delivery: Delivery,
  task: TaskRow | null,
): Promise<RepoConfigRead> {
  if (task) {
    return { ok: true, config: { ...DEFAULT_REPO_CONFIG, ...task.config } as RepoConfig };
  }
  return readRepoConfig(deps.pool, delivery.context);
}

/** The replies one comment gets, sent as one comment (once per delivery). */
class Replies {
  readonly #parts: string[] = [];
  constructor(
    private readonly event: IssueCommentEvent,
    private readonly task: TaskRow | null,
    private readonly delivery: Delivery,
  ) {}

  add(text: string): void {
    this.#parts.push(text);
  }

  async send(client: PoolClient, repo: RepoRow): Promise<void> {
    if (this.#parts.length === 0) return;
    await enqueueOutbox(client, {
      taskId: this.task?.id ?? null,
      installationId: repo.installationId ?? 0,
      repoFullName: repo.fullName,
      kind: "reply",
      payload: { issueNumber: this.event.issue.number, body: this.#parts.join("\n\n") },
      key: { dedupe: `reply:${this.delivery.id}` },
    });
  }
}

/** A 👍 on the comment: every accepted command is acknowledged. */
function acknowledge(
  client: PoolClient,
  repo: RepoRow,
  event: IssueCommentEvent,
  task: TaskRow | null,
  origin: CommentOrigin,
): Promise<void> {
  return enqueueOutbox(client, {
    taskId: task?.id ?? null,
    installationId: repo.installationId ?? 0,
    repoFullName: repo.fullName,
    kind: "reaction",
    payload: {
      commentId: event.comment.id,
      content: "+1",
      ...(origin.reaction === "review_comment" ? { on: "review_comment" } : {}),
    },
    key: {
      dedupe:
        origin.reaction === "review_comment"
          ? `reaction:review:${event.comment.id}`
          : `reaction:${event.comment.id}`,
    },
  });
}

async function runCommand(
  client: PoolClient,
  repo: RepoRow,
  event: IssueCommentEvent,
  knownTaskId: number | null,
  config: RepoConfig,
  request: {
    command: CommandName;
    headSha: string | null;
    cause: Cause;
    revision?: Omit<Parameters<typeof addRevisionRequest>[1], "taskId">;
  },
): Promise<{ accepted: boolean; reply?: string }> {
  const { command, cause } = request;
  if (command === "help") return { accepted: true, reply: helpText() };
  const login = event.comment.user.login;
  // The task was looked up before the transaction; an issue's task may have been created since.
  const ref =
    knownTaskId !== null
      ? { id: knownTaskId }
      : event.issue.pull_request
        ? null
        : { repoId: repo.id, issueNumber: event.issue.number };
  const headSha = command === "approve" ? request.headSha : undefined;
  const result = ref
    ? await changeTaskIn(client, ref, { type: "command", command, actor: login, headSha }, cause)
    : null;
  if (result) {
    if (command === "status") return { accepted: true, reply: statusReply(result.task) };
    if (result.ok && request.revision) {
      await addRevisionRequest(client, { ...request.revision, taskId: result.task.id });
    }
    // Approving a PR Overseer declined to merge (a later push, a risk label) lets it try again.
    if (command === "approve" && result.ok) await enqueueAutoMerge(client, repo, result.task);
    return result.ok ? { accepted: true } : { accepted: false, reply: result.reason };
  }
  if (command === "run" && !event.issue.pull_request) {
    const queued = await queueTaskFor(
      client,
      repo,
      { ...event.issue, labels: event.issue.labels.map((label) => label.name) },
      config,
      { ...cause, login },
    );
    return queued.ok ? { accepted: true } : { accepted: false, reply: queued.reason };
  }
  return { accepted: false, reply: noTaskReply(config) };
}

function statusReply(task: TaskRow): string {
  return `Task is **${describeState(task.state)}** (attempt ${task.attempts} of ${task.maxAttempts})${
    task.lastError ? `; last error: ${task.lastError.split("\n")[0]}` : ""
  }. The status comment above has the details.`;
}

function noTaskReply(config: RepoConfig): string {
  return `There is no Overseer task here. Add the \`${config.label}\` label (or comment \`/run\`) to start one.`;
}

/** A comment on a PR addresses the task that owns the PR (by number, else by head branch). */
async function findTaskForComment(
  deps: HandlerDependencies,
  delivery: Delivery,
  event: IssueCommentEvent,
): Promise<TaskRow | null> {
  if (!event.issue.pull_request) return findTaskForIssue(deps, event);
  const repo = await findRepoByGithubId(deps.pool, event.repository.id);
  if (!repo) return null;
  const byNumber = await findTaskByPullRequest(deps.pool, repo.id, {
    number: event.issue.number,
    headRef: null,
  });
  if (byNumber) return byNumber;
  const pull = await delivery.context.octokit.request(
    "GET /repos/{owner}/{repo}/pulls/{pull_number}",
    {
      owner: event.repository.owner.login,
      repo: event.repository.name,
      pull_number: event.issue.number,
    },
  );
  return findTaskByPullRequest(deps.pool, repo.id, {
    number: event.issue.number,
    headRef: pull.data.head.ref,
  });
}
