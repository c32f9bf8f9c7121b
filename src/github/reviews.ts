import type { Probot } from "probot";
import { DEFAULT_REPO_CONFIG, type RepoConfig } from "../config/repo-config.js";
import { enqueueOutbox } from "../db/outbox.js";
import { findRepoByGithubId } from "../db/repos.js";
import {
  addRevisionRequest,
  recordThreadResolved,
  recordThreadUnresolved,
} from "../db/revisions.js";
import { changeTaskIn } from "../db/task-changes.js";
import { findTaskByPullRequest, type TaskRow } from "../db/tasks.js";
import { actor } from "../domain/actors.js";
import { codeSpan } from "../domain/markdown.js";
import { onComment } from "./comments.js";
import {
  type Delivery,
  type HandlerDependencies,
  onDelivery,
  recordDeliveryIn,
} from "./deliveries.js";
import {
  type IssueCommentEvent,
  type PullRequestReviewEvent,
  parsePayload,
  pullRequestReviewCommentSchema,
  pullRequestReviewSchema,
  pullRequestReviewThreadSchema,
  type Repository,
} from "./payloads.js";
import { hasCommandPermission } from "./permissions.js";

/**
 * Reviews of a task's PR steer its agent:
 * - a review submitted with "changes requested" starts a revision when the repository
 *   sets `revise_on_review: true`, if the reviewer may command Overseer (`commanders`);
 * - a review comment (on a line of the diff) may carry commands like any comment, and a
 *   `/revise` there takes the file and line along;
 * - resolving or unresolving a review thread is recorded, so a revision's prompt leaves
 *   resolved threads out (GitHub's REST API does not say which threads are resolved).
 */
export function registerReviewHandlers(app: Probot, deps: HandlerDependencies): void {
  onDelivery(
    app,
    deps,
    "pull_request_review.submitted",
    { schema: pullRequestReviewSchema, ignores: asksNoChanges },
    (delivery) => onReviewSubmitted(deps, delivery),
  );
  onDelivery(
    app,
    deps,
    "pull_request_review_comment.created",
    // Most review comments hold no command, and need no lookup at all.
    {
      schema: pullRequestReviewCommentSchema,
      ignores: (event) => !event.comment.body.includes("/"),
    },
    (delivery) => onReviewComment(deps, delivery),
  );
  onDelivery(
    app,
    deps,
    ["pull_request_review_thread.resolved", "pull_request_review_thread.unresolved"],
    { schema: pullRequestReviewThreadSchema },
    (delivery) => onThread(deps, delivery),
  );
}

/** The task owning a PR, from what the payload says (no API call). */
async function taskForPull(
  deps: HandlerDependencies,
  repository: Repository,
  pull: { number: number; head?: { ref: string } },
): Promise<TaskRow | null> {
  const repo = await findRepoByGithubId(deps.pool, repository.id);
  if (!repo) return null;
  return findTaskByPullRequest(deps.pool, repo.id, {
    number: pull.number,
    headRef: pull.head?.ref ?? null,
  });
}

/** A bot's review, or one that does not request changes: nothing for Overseer to do. */
function asksNoChanges(event: PullRequestReviewEvent): boolean {
  if (event.sender.type === "Bot" || event.review.user?.type === "Bot") return true;
  return event.review.state.toLowerCase() !== "changes_requested";
}

async function onReviewSubmitted(deps: HandlerDependencies, delivery: Delivery): Promise<void> {
  const event = parsePayload(
    pullRequestReviewSchema,
    delivery.context.payload,
    "pull_request_review.submitted",
  );
  const reviewer = event.review.user?.login ?? event.sender.login;
  if (asksNoChanges(event)) return;
  const task = await taskForPull(deps, event.repository, event.pull_request);
  if (!task) return;
  const config = { ...DEFAULT_REPO_CONFIG, ...task.config } as RepoConfig;
  if (!config.reviseOnReview) return;
  const permission = await hasCommandPermission(delivery.context.octokit, {
    owner: event.repository.owner.login,
    repo: event.repository.name,
    username: reviewer,
    required: config.commanders,
    cache: deps.permissions,
    installationId: event.installation?.id ?? null,
    ...(event.review.user?.id === undefined ? {} : { userId: event.review.user.id }),
    repoOwner: event.repository.owner,
  });
  const installationId = event.installation?.id ?? null;
  if (!permission.allowed) {
    // A review is not a command: anyone may leave one on a public repository, and an
    // answer to each would be noise. It is recorded (the delivery) and logged.
    delivery.log.info(
      { user: reviewer, permission: permission.permission, task: task.id },
      "review asking for changes ignored: the reviewer may not command",
    );
    await recordDeliveryIn(deps, delivery, event.repository, installationId, async () => {});
    return;
  }
  const cause = {
    actor: actor.github(reviewer),
    cause: `delivery:${delivery.id}`,
    detail: { review: event.review.id, pr: event.pull_request.number },
  };
  await recordDeliveryIn(deps, delivery, event.repository, installationId, async (client, repo) => {
    const result = await changeTaskIn(
      client,
      { id: task.id },
      { type: "revision_requested", actor: reviewer },
      cause,
    );
    if (!result) return;
    if (result.ok) {
      await addRevisionRequest(client, {
        taskId: task.id,
        source: "review",
        author: reviewer,
        body: event.review.body,
        githubId: event.review.id,
      });
    } else {
      await enqueueOutbox(client, {
        taskId: task.id,
        installationId: repo.installationId ?? 0,
        repoFullName: repo.fullName,
        kind: "reply",
        payload: {
          issueNumber: event.pull_request.number,
          body: `@${reviewer}, your review asked for changes, but no revision starts: ${result.reason}.`,
        },
        key: { dedupe: `reply:${delivery.id}` },
      });
    }
    delivery.log.info(
      { task: task.id, ...(result.ok ? {} : { refused: result.reason }) },
      "review asking for changes handled",
    );
  });
}

/** Commands in a review comment, answered like those in any comment on the PR. */
async function onReviewComment(deps: HandlerDependencies, delivery: Delivery): Promise<void> {
  const event = parsePayload(
    pullRequestReviewCommentSchema,
    delivery.context.payload,
    "pull_request_review_comment.created",
  );
  const { comment, pull_request: pull } = event;
  // Cheap first: most review comments hold no command, and need no lookup at all.
  if (!comment.body.includes("/")) return;
  const asComment: IssueCommentEvent = {
    repository: event.repository,
    installation: event.installation,
    sender: event.sender,
    issue: { number: pull.number, title: pull.title, labels: [], pull_request: {} },
    comment: {
      id: comment.id,
      body: comment.body,
      user: comment.user,
      performed_via_github_app: comment.performed_via_github_app,
    },
  };
  const line = comment.line ?? null;
  const where = `${codeSpan(comment.path.slice(0, 300) || "(a file)")}${line === null ? "" : ` line ${line}`}`;
  await onComment(deps, delivery, asComment, {
    source: "review_comment",
    reaction: "review_comment",
    context: `(Written as a review comment on ${where}.)`,
  });
}

async function onThread(deps: HandlerDependencies, delivery: Delivery): Promise<void> {
  const action = (delivery.context.payload as { action?: string }).action;
  const event = parsePayload(
    pullRequestReviewThreadSchema,
    delivery.context.payload,
    `pull_request_review_thread.${action}`,
  );
  const task = await taskForPull(deps, event.repository, event.pull_request);
  // Only the threads of task PRs matter to Overseer.
  if (!task) return;
  await recordDeliveryIn(
    deps,
    delivery,
    event.repository,
    event.installation?.id ?? null,
    async (client) => {
      if (action === "resolved") {
        await recordThreadResolved(client, {
          repoId: task.repoId,
          prNumber: event.pull_request.number,
          threadId: event.thread.node_id,
          commentIds: event.thread.comments.map((comment) => comment.id),
          resolvedBy: event.sender.login,
        });
      } else {
        await recordThreadUnresolved(client, {
          repoId: task.repoId,
          threadId: event.thread.node_id,
        });
      }
      delivery.log.info({ task: task.id, thread: event.thread.node_id, action }, "review thread");
    },
  );
}
