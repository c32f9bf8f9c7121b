import { errorMessage } from "../errors.js";
import type { DetectedFinding, Detector, RepairOutcome, WatchdogContext } from "./detector.js";
import { type EscalationResult, escalate } from "./escalation.js";

/**
 * One pass over the detectors: what each finds, and (when asked) its repair and its
 * escalation. Shared by the watchdog's tick and `overseer doctor`, so both say the same.
 */

export interface Found {
  detector: Detector;
  finding: DetectedFinding;
}

export interface Diagnosis {
  found: Found[];
  /** Detectors that threw, by kind: recorded, and the others still ran. */
  failures: Record<string, string>;
  /** Detectors not run because this process has no GitHub credentials. */
  skipped: string[];
}

export async function diagnose(
  ctx: WatchdogContext,
  detectors: readonly Detector[],
  needsGithub: (detector: Detector) => boolean,
): Promise<Diagnosis> {
  const found: Found[] = [];
  const failures: Record<string, string> = {};
  const skipped: string[] = [];
  for (const detector of detectors) {
    if (ctx.github === null && needsGithub(detector)) {
      skipped.push(detector.kind);
      continue;
    }
    try {
      for (const finding of await detector.detect(ctx)) found.push({ detector, finding });
    } catch (error) {
      failures[detector.kind] = errorMessage(error);
      ctx.log.error({ err: error, kind: detector.kind }, "watchdog detector failed");
    }
  }
  return { found, failures, skipped };
}

export type Applied =
  | { action: "noticed" }
  | { action: "left"; why: "not_applied" | "unsafe" }
  | { action: "repaired" | "repair_failed"; outcome: RepairOutcome };

export interface Handled extends Found {
  applied: Applied;
  escalation: EscalationResult | null;
}

export interface HandlePolicy {
  /** none: diagnose only; safe: repair safe findings; all: repair unsafe ones too. */
  apply: "none" | "safe" | "all";
  /** Escalate what is left unrepaired (the watchdog does, doctor does not). */
  escalate: boolean;
  /** The actor repairs are written with; by default `watchdog:<kind>`. */
  by?: string;
}

/** Repairs (re-checked by each detector) and escalations for one diagnosis. */
export async function handle(
  ctx: WatchdogContext,
  found: readonly Found[],
  policy: HandlePolicy,
): Promise<Handled[]> {
  const handled: Handled[] = [];
  for (const item of found) {
    const applied = await applyOne(ctx, item, policy);
    let escalation: EscalationResult | null = null;
    if (policy.escalate && needsPerson(item.finding, applied)) {
      const tried = "outcome" in applied ? applied.outcome : null;
      escalation = await escalate(ctx, item.finding, tried).catch((error: unknown) => {
        ctx.log.error({ err: error, finding: item.finding.id }, "escalation could not be queued");
        return null;
      });
    }
    handled.push({ ...item, applied, escalation });
  }
  return handled;
}

async function applyOne(ctx: WatchdogContext, item: Found, policy: HandlePolicy): Promise<Applied> {
  const { detector, finding } = item;
  if (finding.notice) return { action: "noticed" };
  if (policy.apply === "none") return { action: "left", why: "not_applied" };
  if (!finding.safe && policy.apply !== "all") return { action: "left", why: "unsafe" };
  const by = policy.by ?? `watchdog:${finding.kind}`;
  try {
    const outcome = await detector.repair(ctx, finding, by);
    return { action: outcome.repaired ? "repaired" : "repair_failed", outcome };
  } catch (error) {
    ctx.log.error({ err: error, finding: finding.id }, "watchdog repair failed");
    return { action: "repair_failed", outcome: { repaired: false, detail: errorMessage(error) } };
  }
}

/**
 * Unsafe findings, failed repairs and findings whose repair only stops the damage go to
 * a person; a repair that found the condition gone (someone else fixed it) does not.
 */
function needsPerson(finding: DetectedFinding, applied: Applied): boolean {
  if (applied.action === "noticed") return false;
  if (applied.action === "left") return applied.why === "unsafe";
  if (applied.action === "repaired") return finding.escalate === true;
  return applied.outcome.moot !== true;
}
