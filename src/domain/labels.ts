/** Rules that read an issue's labels. Pure. */

const PRIORITY_RANKS: Record<string, number> = {
  "priority:critical": 0,
  "priority:high": 1,
  "priority:medium": 2,
  "priority:low": 3,
};
export const DEFAULT_PRIORITY = 2;

/** priority:critical → 0 … priority:low → 3 (the most urgent label wins); unlabelled: medium. */
export function priorityFromLabels(labels: readonly string[]): number {
  const ranks = labels
    .map((name) => PRIORITY_RANKS[name.toLowerCase()])
    .filter((rank): rank is number => rank !== undefined);
  return ranks.length > 0 ? Math.min(...ranks) : DEFAULT_PRIORITY;
}

/** True when the issue carries one of the repository's risk labels. */
export function hasRiskLabel(labels: readonly string[], riskLabels: readonly string[]): boolean {
  return labels.some((label) => riskLabels.includes(label));
}

/** `agent:<profile>` on an issue picks the worker profile for its task. */
export const AGENT_LABEL_PREFIX = "agent:";

/**
 * The profile the issue's `agent:` labels pick: one label, its name; none, or several (which
 * one was meant cannot be told), null, with the conflicting names listed.
 */
export function agentProfileFromLabels(labels: readonly string[]): {
  profile: string | null;
  conflicting: string[];
} {
  const names = [
    ...new Set(
      labels
        .filter((label) => label.toLowerCase().startsWith(AGENT_LABEL_PREFIX))
        .map((label) => label.slice(AGENT_LABEL_PREFIX.length).trim())
        .filter((name) => name !== ""),
    ),
  ];
  if (names.length === 1) return { profile: names[0] ?? null, conflicting: [] };
  return { profile: null, conflicting: names.length > 1 ? names : [] };
}
