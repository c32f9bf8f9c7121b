/**
 * Who caused a change, as written in the audit trail (`task_events.actor`): the channel
 * first, then the name, so an operator can tell a person on GitHub from a CLI user, a
 * runner or the watchdog at a glance.
 */

export const actor = {
  /** A person (or bot) on GitHub: a label, a comment, a merge. */
  github: (login: string) => `github:${login}`,
  /** Someone using the CLI or the dashboard. */
  operator: (name: string) => `operator:${name}`,
  /** A watchdog repair, named by its finding. */
  watchdog: (finding: string) => `watchdog:${finding}`,
  /** A runner reporting on its own run. */
  runner: (id: string) => `runner:${id}`,
  /** Overseer acting on its own policy (auto-merge, outbox delivery). */
  overseer: (what: string) => `overseer:${what}`,
} as const;
