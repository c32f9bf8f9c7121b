import type { z } from "zod";
import { parsePayload } from "./payloads.js";

/**
 * What each webhook handler asks of a delivery before it is stored: the shape of the
 * payload it reads (a signed payload of another shape is answered 400 at once, never
 * retried), and which well-formed payloads it would do nothing with (answered without
 * touching the database: most comments are conversation, and Overseer's own label
 * changes come back as deliveries too). Pure: the door asks, handlers declare.
 */
export interface AdmissionRule<T> {
  schema?: z.ZodType<T>;
  /** A payload the handler would return from at once. */
  ignores?: (event: T) => boolean;
}

export type Admission = "store" | "ignore";

/** Checks one payload against one handler's rule: true when that handler would ignore it. */
type Check = (payload: unknown, event: string) => boolean;

export class DeliveryRoutes {
  readonly #checks = new Map<string, Check[]>();

  add<T>(events: string | readonly string[], rule: AdmissionRule<T>): void {
    const check: Check = (payload, event) => {
      const parsed = rule.schema ? parsePayload(rule.schema, payload, event) : (payload as T);
      return rule.ignores?.(parsed) ?? false;
    };
    for (const event of typeof events === "string" ? [events] : events) {
      this.#checks.set(event, [...(this.#checks.get(event) ?? []), check]);
    }
  }

  /**
   * Store (some handler acts on it) or ignore (no handler listens, or every one that does
   * would do nothing). Throws the PayloadError of the first handler whose shape the
   * payload does not have.
   */
  admit(name: string, payload: unknown): Admission {
    const action = actionOf(payload);
    const event = action ? `${name}.${action}` : name;
    const checks = [
      ...(this.#checks.get(name) ?? []),
      ...(action ? (this.#checks.get(event) ?? []) : []),
    ];
    let ignored = true;
    for (const check of checks) {
      if (!check(payload, event)) ignored = false;
    }
    return checks.length > 0 && !ignored ? "store" : "ignore";
  }
}

export function actionOf(payload: unknown): string | null {
  const action = (payload as { action?: unknown } | null)?.action;
  return typeof action === "string" ? action : null;
}

/**
 * The issue or PR a delivery is about, as `<repository id>#<number>` (an issue and its PR
 * number share one sequence), or null when it is about no single one. Deliveries with one
 * subject are processed in the order they arrived.
 */
export function subjectOf(payload: unknown): string | null {
  const event = payload as {
    repository?: { id?: unknown };
    issue?: { number?: unknown };
    pull_request?: { number?: unknown };
  } | null;
  const repositoryId = event?.repository?.id;
  const number = event?.issue?.number ?? event?.pull_request?.number;
  return typeof repositoryId === "number" && typeof number === "number"
    ? `${repositoryId}#${number}`
    : null;
}
