import { enqueueOnce } from "../db/outbox.js";
import { withTransaction } from "../db/pool.js";
import { appendTaskEvent } from "../db/task-events.js";
import { actor } from "../domain/actors.js";
import type { DetectedFinding, RepairOutcome, WatchdogContext } from "./detector.js";

/** Marks the comment as the watchdog's, for people skimming the issue. */
const HEADING = "**Overseer's watchdog needs a person here.**";

/** The outbox key a finding is escalated under: once per kind and subject, ever. */
export function escalationKey(finding: Pick<DetectedFinding, "kind" | "subject">): string {
  return `escalation:${finding.kind}:${finding.subject}`;
}

/** The comment: what is wrong, what was tried, what a person should do. */
export function escalationBody(finding: DetectedFinding, tried: RepairOutcome | null): string {
  const attempt = tried
    ? `${finding.repair}: ${tried.repaired ? "done" : "did not work"} (${tried.detail})`
    : `nothing: it is not safe to do automatically (${finding.repair})`;
  return [
    HEADING,
    "",
    `- **What is wrong** (\`${finding.kind}\`, ${finding.subject}): ${finding.evidence}`,
    `- **What was tried**: ${attempt}`,
    `- **What to do**: ${finding.advice ?? `run \`overseer doctor\` on the host and follow its advice; \`overseer doctor --apply --force\` applies "${finding.repair}"`}`,
  ].join("\n");
}

export type EscalationResult = "queued" | "already" | "no_issue";

/**
 * Queues the one comment for the finding on its issue, and records on the task that it
 * was escalated, in one transaction; later ticks seeing the same finding find its key
 * taken and change nothing. A finding with no issue is only logged.
 */
export async function escalate(
  ctx: WatchdogContext,
  finding: DetectedFinding,
  tried: RepairOutcome | null,
): Promise<EscalationResult> {
  const issue = finding.issue;
  if (!issue) {
    ctx.log.warn(
      { kind: finding.kind, subject: finding.subject, evidence: finding.evidence },
      "watchdog finding needs a person (no issue to comment on)",
    );
    return "no_issue";
  }
  const key = escalationKey(finding);
  const queued = await withTransaction(ctx.pool, async (client) => {
    const fresh = await enqueueOnce(client, {
      taskId: finding.taskId ?? null,
      installationId: issue.installationId,
      repoFullName: issue.repoFullName,
      kind: "escalation",
      payload: {
        issueNumber: issue.number,
        body: escalationBody(finding, tried),
        finding: finding.kind,
        subject: finding.subject,
      },
      key: { dedupe: key },
    });
    if (fresh && finding.taskId) {
      await appendTaskEvent(client, {
        taskId: finding.taskId,
        event: "watchdog_escalated",
        fromState: null,
        toState: null,
        actor: actor.watchdog(finding.kind),
        cause: `finding:${finding.kind}`,
        detail: {
          subject: finding.subject,
          evidence: finding.evidence,
          tried: tried?.detail ?? null,
        },
      });
    }
    return fresh;
  });
  return queued ? "queued" : "already";
}
