import type { StandIn, WebhookDelivery } from "../support/github-stand-in.js";

/**
 * A redelivery storm's plan and its sending: webhooks GitHub produced over time, delivered
 * again (same X-GitHub-Delivery id, as GitHub's "Redeliver" does), late, out of order and
 * many at once. What may not be reordered is said per event (`after`); everything else is.
 */

export interface StormEvent {
  delivery: WebhookDelivery;
  /** Which issue it is about, and where it falls in that history. */
  subject: string;
  seq: number;
  /** Events whose first delivery must have been answered before any copy of this one goes. */
  after: StormEvent[];
  /** Waited for before its first answer (a person reacting to what they saw). */
  ready?: () => Promise<unknown>;
  /** Resolved when its first copy is answered. */
  answered: Promise<void>;
  isAnswered: boolean;
  answer(): void;
}

export function stormEvent(delivery: WebhookDelivery, subject: string, seq: number): StormEvent {
  let resolve = () => {};
  const answered = new Promise<void>((done) => {
    resolve = done;
  });
  const event: StormEvent = {
    delivery,
    subject,
    seq,
    after: [],
    answered,
    isAnswered: false,
    answer() {
      event.isAnswered = true;
      resolve();
    },
  };
  return event;
}

/** What one copy's sending saw. */
export interface Sent {
  event: StormEvent;
  status: number;
  sentAt: number;
  answeredAt: number;
}

/** Mulberry32: a seeded random number generator, so a storm's plan can be replayed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}

/**
 * The order copies are sent in: each issue's events in their arrival order (`sequences`),
 * the issues interleaved at random, then `copies` more copies of events from `redeliverable`
 * (this phase's and earlier ones'), each placed anywhere after that event's first copy.
 */
export function stormOrder(
  sequences: StormEvent[][],
  copies: number,
  redeliverable: StormEvent[],
  random: () => number,
): StormEvent[] {
  const queues = sequences.map((sequence) => [...sequence]);
  const order: StormEvent[] = [];
  while (queues.some((queue) => queue.length > 0)) {
    const open = queues.filter((queue) => queue.length > 0);
    const next = open[Math.floor(random() * open.length)]?.shift();
    if (next) order.push(next);
  }
  for (let n = 0; n < copies; n++) {
    const event = redeliverable[Math.floor(random() * redeliverable.length)];
    if (!event) break;
    const first = order.indexOf(event);
    const at = first + 1 + Math.floor(random() * (order.length - first));
    order.splice(at, 0, event);
  }
  return order;
}

/**
 * Sends every copy in `order`, at most `inFlight` at once: a copy waits for the events it
 * must follow, then for a free slot (first come, first served), so the plan's order holds
 * wherever nothing holds it back and no wait can block another copy's slot.
 */
export async function sendStorm(
  github: StandIn,
  order: StormEvent[],
  inFlight: number,
): Promise<Sent[]> {
  const slots: (() => void)[] = [];
  let busy = 0;
  const acquire = () =>
    new Promise<void>((resolve) => {
      if (busy < inFlight) {
        busy += 1;
        resolve();
      } else slots.push(resolve);
    });
  const release = () => {
    const next = slots.shift();
    if (next) next();
    else busy -= 1;
  };
  return Promise.all(
    order.map(async (event) => {
      await Promise.all(event.after.map((earlier) => earlier.answered));
      // What a person waited for before acting; a redelivery later on waits for nothing.
      if (!event.isAnswered) await event.ready?.();
      await acquire();
      const sentAt = Date.now();
      try {
        const { status } = await github.deliver(
          event.delivery.event,
          event.delivery.payload,
          event.delivery.id,
        );
        event.answer();
        return { event, status, sentAt, answeredAt: Date.now() };
      } finally {
        release();
      }
    }),
  );
}

/** `issues.labeled`, `pull_request.closed`, …: what a delivery is. */
export function kindOf(event: StormEvent): string {
  return `${event.delivery.event}.${String(event.delivery.payload.action)}`;
}

/** Each event's first copy. */
function firstCopies(sent: Sent[]): Sent[] {
  const first = new Map<StormEvent, Sent>();
  for (const copy of [...sent].sort((a, b) => a.sentAt - b.sentAt)) {
    if (!first.has(copy.event)) first.set(copy.event, copy);
  }
  return [...first.values()];
}

/**
 * Events first delivered out of order: answered before an event that happened earlier on
 * the same issue was even sent (of the kinds given, when given: `later` overtook `earlier`).
 */
export function overtakings(sent: Sent[], kinds?: { later: string; earlier: string }): number {
  const firsts = firstCopies(sent);
  return firsts.filter((copy) =>
    firsts.some(
      (other) =>
        other.event.subject === copy.event.subject &&
        other.event.seq < copy.event.seq &&
        other.sentAt > copy.answeredAt &&
        (!kinds || (kindOf(copy.event) === kinds.later && kindOf(other.event) === kinds.earlier)),
    ),
  ).length;
}

/** How a storm went: copies sent, events, redeliveries, overtakings, most copies at once. */
export function stormFigures(sent: Sent[]) {
  const edges = sent.flatMap((copy) => [
    { at: copy.sentAt, delta: 1 },
    { at: copy.answeredAt, delta: -1 },
  ]);
  edges.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let open = 0;
  let concurrent = 0;
  for (const edge of edges) {
    open += edge.delta;
    concurrent = Math.max(concurrent, open);
  }
  const events = firstCopies(sent).length;
  return {
    sent: sent.length,
    events,
    redeliveries: sent.length - events,
    reordered: overtakings(sent),
    concurrent,
  };
}
