import { botName, type RepoConfig } from "../config/repo-config.js";
import { enqueueOutbox } from "../db/outbox.js";
import type { Queryable } from "../db/pool.js";
import { claimRefusalReply } from "../db/refusals.js";
import type { RepoRow } from "../db/repos.js";
import type { HandlerDependencies } from "./deliveries.js";
import type { Repository } from "./payloads.js";
import {
  hasCommandPermission,
  type Permission,
  type PermissionClient,
  refusalText,
} from "./permissions.js";

/**
 * Who may make Overseer act through a label or by closing an issue: the same people who
 * may command it (`commanders`), and bots only when the repository names them in
 * `trusted_bots`. An auto-labeller acts on issue text that anyone can write.
 */

export type SenderVerdict =
  | { allowed: true }
  /** A bot the repository does not trust: ignored without a reply (nobody reads it). */
  | { allowed: false; reason: "untrusted_bot" }
  | { allowed: false; reason: "permission"; permission: Permission };

export interface SenderEvent {
  sender: { login: string; id?: number; type?: string };
  repository: Repository;
  installation?: { id: number } | null;
}

export function isBot(user: { login: string; type?: string }): boolean {
  return user.type === "Bot" || user.login.toLowerCase().endsWith("[bot]");
}

export async function judgeSender(
  deps: Pick<HandlerDependencies, "permissions">,
  octokit: PermissionClient,
  event: SenderEvent,
  config: Pick<RepoConfig, "commanders" | "trustedBots">,
): Promise<SenderVerdict> {
  const { sender, repository } = event;
  if (isBot(sender)) {
    return (config.trustedBots ?? []).includes(botName(sender.login))
      ? { allowed: true }
      : { allowed: false, reason: "untrusted_bot" };
  }
  const permission = await hasCommandPermission(octokit, {
    owner: repository.owner.login,
    repo: repository.name,
    username: sender.login,
    required: config.commanders,
    cache: deps.permissions,
    installationId: event.installation?.id ?? null,
    userId: sender.id,
    repoOwner: repository.owner,
  });
  return permission.allowed
    ? { allowed: true }
    : { allowed: false, reason: "permission", permission: permission.permission };
}

/**
 * Tells a person without permission why nothing happened, at most once per person and
 * issue every ten minutes (see db/refusals.ts), so spam does not spend the installation's
 * rate limit. Returns whether a reply was queued.
 */
export async function replyRefusalOnce(
  client: Queryable,
  repo: RepoRow,
  refusal: {
    issueNumber: number;
    taskId: number | null;
    login: string;
    body: string;
    deliveryId: string;
  },
): Promise<boolean> {
  const { issueNumber, login } = refusal;
  if (!(await claimRefusalReply(client, { repoId: repo.id, issueNumber, login }))) return false;
  await enqueueOutbox(client, {
    taskId: refusal.taskId,
    installationId: repo.installationId ?? 0,
    repoFullName: repo.fullName,
    kind: "reply",
    payload: { issueNumber, body: refusal.body },
    key: { dedupe: `refusal:${refusal.deliveryId}` },
  });
  return true;
}

export function senderRefusalText(
  login: string,
  verdict: Extract<SenderVerdict, { reason: "permission" }>,
  config: Pick<RepoConfig, "commanders">,
  what: string,
): string {
  return refusalText(login, verdict.permission, config.commanders, what);
}
