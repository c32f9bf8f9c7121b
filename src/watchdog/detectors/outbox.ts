import { findDeadOutbox, rearmDeadOutbox } from "../../db/outbox.js";
import { appendTaskEvent } from "../../db/task-events.js";
import type { Detector } from "../detector.js";
import { factNumber, findingId, issueOf, moot } from "./common.js";

/** A GitHub write the outbox gave up on: re-armed once, escalated when it dies again. */
export const outboxDead: Detector = {
  kind: "outbox_dead",
  async detect(ctx) {
    return (await findDeadOutbox(ctx.pool)).map((entry) => {
      const subject = `outbox:${entry.id}`;
      const again = entry.rearmedAt !== null;
      const what = `${entry.kind} for ${entry.repoFullName}${entry.issueNumber ? `#${entry.issueNumber}` : ""}`;
      return {
        id: findingId(this.kind, subject),
        kind: this.kind,
        subject,
        taskId: entry.taskId,
        evidence: `${what} given up after ${entry.attempts} attempt(s)${again ? ", again after being re-armed once" : ""}: ${entry.lastError ?? "no error recorded"}`,
        repair: again ? "re-arm it once more" : "re-arm it once (fresh attempts)",
        safe: !again,
        advice:
          "fix what GitHub refused (the App's permissions, a deleted issue, the rate limit), then `overseer doctor --apply --force` sends it once more",
        // An escalation that cannot be delivered is not escalated in turn.
        issue:
          entry.kind === "escalation" || entry.issueNumber === null
            ? null
            : issueOf({ ...entry, issueNumber: entry.issueNumber }),
        facts: { outboxId: entry.id, again },
      };
    });
  },
  async repair(ctx, finding, by) {
    const id = factNumber(finding, "outboxId");
    const again = finding.facts.again === true;
    if (!(await rearmDeadOutbox(ctx.pool, id, { again }))) {
      return moot("no longer dead (delivered, superseded or re-armed already)");
    }
    if (finding.taskId) {
      await appendTaskEvent(ctx.pool, {
        taskId: finding.taskId,
        event: "outbox_rearmed",
        fromState: null,
        toState: null,
        actor: by,
        cause: `finding:${finding.kind}`,
        detail: { outbox: id, again },
      });
    }
    return { repaired: true, detail: `outbox entry ${id} is due again` };
  },
};
