/**
 * What the operator surface needs from the watchdog: its findings, a way to apply a safe
 * repair, its health, and how many findings of each kind it has made. A port, so the
 * dashboard, `overseer status` and /metrics work whether or not a watchdog is wired in;
 * without one, UNAVAILABLE_WATCHDOG says so instead of pretending all is well.
 */

export interface Finding {
  /** Stable while the condition lasts (the repair button names it). */
  id: string;
  kind: string;
  /** What it is about: a task, a run, a runner, a worktree. */
  subject: string;
  taskId?: number | null;
  /** What was seen, in words. */
  evidence: string;
  /** What the repair would do, in words. */
  repair: string;
  /** Safe repairs may be applied by one click; the others need `overseer doctor --apply --force`. */
  safe: boolean;
}

export interface WatchdogHealth {
  /** False when no watchdog is wired into this process's view. */
  available: boolean;
  /** ok: ticking on time; late: its last tick is overdue; unavailable: see `detail`. */
  status: "ok" | "late" | "unavailable";
  lastTickAt: Date | null;
  /** Which process holds the watchdog's lock, when known. */
  leader: string | null;
  detail: string;
}

export interface RepairOutcome {
  repaired: boolean;
  detail: string;
  /** The condition no longer stood when the repair re-checked it: nothing was done or needed. */
  moot?: boolean;
}

export interface FindingsSource {
  /** The current findings (as last diagnosed; a source may diagnose afresh). */
  diagnose(): Promise<Finding[]>;
  /**
   * Applies the repair of the finding with this id if it still stands and is safe; the
   * caller never passes a finding's content, only its id, so nothing a browser sent is
   * trusted as a description of what to repair.
   */
  repair(findingId: string, actor: string): Promise<RepairOutcome>;
  health(): Promise<WatchdogHealth>;
  /** Findings made since this process started, by kind (for /metrics). */
  countsByKind(): Record<string, number>;
}

const NOT_WIRED = "watchdog not available in this process";

export const UNAVAILABLE_WATCHDOG: FindingsSource = {
  diagnose: async () => [],
  repair: async () => ({ repaired: false, detail: NOT_WIRED }),
  health: async () => ({
    available: false,
    status: "unavailable",
    lastTickAt: null,
    leader: null,
    detail: NOT_WIRED,
  }),
  countsByKind: () => ({}),
};
