/**
 * Whether an issue's task stands is decided by the newest of three kinds of event: its
 * trigger label added, the label removed, the issue closed. GitHub delivers them late,
 * again, and in any order (a failed delivery redelivered an hour later, two deliveries
 * seconds apart overtaking each other), but stamps each with when it happened: the issue's
 * `updated_at` in a label event, `closed_at` in a close, to the second. So a decision is
 * applied only if it is newer than every decision already applied for the issue and label;
 * an older one is stale and changes nothing. Pure: the caller reads what was recorded.
 */

export type DecisionAction = "labeled" | "unlabeled" | "closed";

export interface Decision {
  action: DecisionAction;
  /** When GitHub says it happened. */
  at: Date;
  login: string;
  /** The delivery that carried it; null when the watchdog's poll found it. */
  deliveryId: string | null;
}

/**
 * - `newer`: apply it (and record it as the newest);
 * - `stale`: a newer decision was applied already; this one changes nothing;
 * - `same`: this very decision was applied already (the same action at the same time).
 */
export type DecisionOrder = "newer" | "stale" | "same";

/** The newest of the decisions recorded for an issue and label (the label's and the close). */
export function newestDecision(recorded: readonly (Decision | null)[]): Decision | null {
  let newest: Decision | null = null;
  for (const decision of recorded) {
    if (decision && (!newest || decision.at.getTime() > newest.at.getTime())) newest = decision;
  }
  return newest;
}

/**
 * Where `incoming` falls among the decisions recorded. Without a time (a payload that does
 * not carry one) it is taken as it comes, as it would be without ordering. Within the
 * second GitHub's times resolve, the order is unknown: the same action again is the
 * decision already applied, and a different one is taken as it comes.
 */
export function orderDecision(
  incoming: { action: DecisionAction; at: Date | null },
  recorded: readonly (Decision | null)[],
): DecisionOrder {
  const newest = newestDecision(recorded);
  if (!newest || incoming.at === null) return "newer";
  const difference = incoming.at.getTime() - newest.at.getTime();
  if (difference > 0) return "newer";
  if (difference < 0) return "stale";
  return incoming.action === newest.action ? "same" : "newer";
}

/** A time GitHub wrote in a payload, or null when there is none or it is not a time. */
export function githubTime(value: string | null | undefined): Date | null {
  if (!value) return null;
  const at = new Date(value);
  return Number.isNaN(at.getTime()) ? null : at;
}
