import type { Probot } from "probot";
import { enqueueOutbox } from "../db/outbox.js";
import { findRepoByGithubId } from "../db/repos.js";
import { appendTaskEvent } from "../db/task-events.js";
import { findTaskByPullRequest, movePullHead } from "../db/tasks.js";
import { actor } from "../domain/actors.js";
import {
  type Delivery,
  type HandlerDependencies,
  onDelivery,
  recordDeliveryIn,
} from "./deliveries.js";
import { parsePayload, pullRequestEventSchema } from "./payloads.js";

/**
 * Someone pushed to a task's PR while it awaits merge. The `overseer` check run follows
 * the PR's new head commit, or a branch protection rule that requires it would hold the
 * PR for ever. Pushes made by Overseer's own runs arrive while the task runs (or name the
 * commit already recorded) and change nothing.
 */
export function registerPullSync(app: Probot, deps: HandlerDependencies): void {
  onDelivery(
    app,
    deps,
    "pull_request.synchronize",
    { schema: pullRequestEventSchema },
    (delivery) => onSynchronize(deps, delivery),
  );
}

async function onSynchronize(deps: HandlerDependencies, delivery: Delivery): Promise<void> {
  const event = parsePayload(
    pullRequestEventSchema,
    delivery.context.payload,
    "pull_request.synchronize",
  );
  const pull = event.pull_request;
  const repo = await findRepoByGithubId(deps.pool, event.repository.id);
  if (!repo) return;
  const task = await findTaskByPullRequest(deps.pool, repo.id, {
    number: pull.number,
    headRef: pull.head.ref,
  });
  if (task?.state !== "awaiting_merge" || task.prNumber !== pull.number) return;
  if (task.prHeadSha === pull.head.sha) return;
  await recordDeliveryIn(
    deps,
    delivery,
    event.repository,
    event.installation?.id ?? null,
    async (client, known) => {
      const moved = await movePullHead(client, task.id, {
        prNumber: pull.number,
        sha: pull.head.sha,
      });
      if (!moved) return;
      await appendTaskEvent(client, {
        taskId: task.id,
        event: "pr_head_moved",
        fromState: null,
        toState: null,
        actor: actor.github(event.sender.login),
        cause: `delivery:${delivery.id}`,
        detail: { from: task.prHeadSha, to: pull.head.sha },
      });
      await enqueueOutbox(client, {
        taskId: task.id,
        installationId: known.installationId ?? 0,
        repoFullName: known.fullName,
        kind: "check_run",
        payload: { issueNumber: task.issueNumber },
        key: { coalesce: `check:${task.id}` },
      });
      delivery.log.info({ task: task.id, sha: pull.head.sha }, "PR head moved; check run follows");
    },
  );
}
