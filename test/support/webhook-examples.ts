import { createRequire } from "node:module";

/**
 * GitHub's own example payloads (`@octokit/webhooks-examples`), for tests and the GitHub
 * stand-in to reshape: the shapes GitHub really sends, with fields Overseer never reads.
 */

const examples = createRequire(import.meta.url)(
  "@octokit/webhooks-examples/api.github.com/index.json",
) as { name: string; examples: Record<string, unknown>[] }[];

// Tests reshape GitHub's example payloads freely; their full types would only get in the way.
// biome-ignore lint/suspicious/noExplicitAny: see above
export type LoosePayload = Record<string, any>;

/** A deep copy of GitHub's example payload for `event.action`. */
export function webhookExample(event: string, action: string): LoosePayload {
  const found = examples
    .find((entry) => entry.name === event)
    ?.examples.find((example) => example.action === action);
  if (!found) throw new Error(`no webhook example for ${event}.${action}`);
  return structuredClone(found) as LoosePayload;
}

let lastTime = 0;

/**
 * A time for an event happening now, later than every one handed out before: payloads
 * built one after another describe events that happened one after another, as GitHub's
 * `updated_at` would say (GitHub's resolve to the second; these to the millisecond, so that
 * a test's quick succession of events keeps its order).
 */
export function nextEventTime(): string {
  lastTime = Math.max(Date.now(), lastTime + 1);
  return new Date(lastTime).toISOString();
}
