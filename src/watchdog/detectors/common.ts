import { formatDuration } from "../../github/status-comment.js";
import type { DetectedFinding, RepairOutcome } from "../detector.js";

/** The issue an escalation about a task goes to (none when the repo has no installation). */
export function issueOf(row: {
  installationId: number | null;
  repoFullName: string;
  issueNumber: number;
}): DetectedFinding["issue"] {
  if (row.installationId === null) return null;
  return {
    installationId: Number(row.installationId),
    repoFullName: row.repoFullName,
    number: row.issueNumber,
  };
}

/** Stable while the condition lasts: the dashboard's repair button names it. */
export function findingId(kind: string, subject: string): string {
  return `${kind}:${subject}`;
}

export function duration(ms: number): string {
  return formatDuration(Math.max(0, ms));
}

export function factNumber(finding: DetectedFinding, name: string): number {
  const value = Number(finding.facts[name]);
  if (!Number.isSafeInteger(value)) throw new Error(`finding ${finding.id} lacks ${name}`);
  return value;
}

export function factString(finding: DetectedFinding, name: string): string {
  const value = finding.facts[name];
  if (typeof value !== "string") throw new Error(`finding ${finding.id} lacks ${name}`);
  return value;
}

/** A repair that re-checked and found the condition gone: nothing done, nothing to escalate. */
export function moot(detail: string): RepairOutcome {
  return { repaired: false, detail, moot: true };
}
