import { randomUUID } from "node:crypto";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { markDeliveryApplied, storeDeliveries } from "../../src/db/deliveries.js";
import { withTransaction } from "../../src/db/pool.js";
import { DeliveryQueue, type DeliveryQueueOptions } from "../../src/github/delivery-queue.js";
import { PayloadError } from "../../src/github/payloads.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { deliveryRow, processedDelivery } from "../support/deliveries.js";

/**
 * The delivery queue against real PostgreSQL, with stand-in handlers: what each way an
 * attempt can end leaves in the row, retries, giving up, a lease left by a process that
 * died, one issue's deliveries in order, and a stop that hands work back.
 */

let db: TestDatabase;
const queues: DeliveryQueue[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  await Promise.all(queues.splice(0).map((queue) => queue.stop()));
});
afterAll(async () => {
  await db?.drop();
});

type Receive = DeliveryQueueOptions["receive"];

function startQueue(receive: Receive, options: Partial<DeliveryQueueOptions> = {}) {
  const queue = new DeliveryQueue({
    pool: db.pool,
    log: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    receive,
    leaseMs: 60_000,
    pollIntervalMs: 50,
    retryBaseMs: 20,
    ...options,
  });
  queue.start();
  queues.push(queue);
  return queue;
}

let issue = 0;

function delivery(subject: string | null = `1#${++issue}`) {
  const payload = { action: "labeled", issue: { number: issue } };
  return {
    id: randomUUID(),
    event: "issues",
    action: "labeled",
    subject,
    body: JSON.stringify(payload),
    payload,
  };
}

async function until(what: string, probe: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("how an attempt ends", () => {
  it("a payload a handler finds malformed is rejected with the reason, once, never retried", async () => {
    let calls = 0;
    const queue = startQueue(async () => {
      calls += 1;
      throw new PayloadError("malformed issues.labeled payload: issue.title: expected string");
    });
    const sent = delivery();
    expect(await queue.store(sent)).toBe("new");
    await until(
      "the rejection",
      async () => (await deliveryRow(db.pool, sent.id))?.outcome !== "pending",
    );
    expect(await deliveryRow(db.pool, sent.id)).toEqual({
      outcome: "rejected",
      attempts: 1,
      taken: false,
      error: "malformed issues.labeled payload: issue.title: expected string",
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(calls).toBe(1);
  });

  it("any other failure is retried with backoff until it succeeds, the last error kept", async () => {
    let calls = 0;
    const queue = startQueue(async () => {
      calls += 1;
      if (calls < 3) throw Object.assign(new Error("Server Error"), { status: 502, response: {} });
    });
    const sent = delivery();
    await queue.store(sent);
    expect(await processedDelivery(db.pool, sent.id)).toEqual({
      outcome: "processed",
      attempts: 3,
      taken: false,
      error: "HTTP 502: Server Error",
    });
    expect(calls).toBe(3);
    const payload = await db.pool.query("SELECT payload FROM deliveries WHERE id = $1", [sent.id]);
    expect(payload.rows[0].payload).toBeNull();
  });

  it("gives up after the last attempt, keeping the payload; GitHub's redelivery arms it again", async () => {
    let failing = true;
    const seen: unknown[] = [];
    const queue = startQueue(
      async (event) => {
        seen.push(event.payload);
        if (failing) throw new Error('relation "repos" does not exist');
      },
      { maxAttempts: 2 },
    );
    const sent = delivery();
    await queue.store(sent);
    await until(
      "the delivery to be given up",
      async () => (await deliveryRow(db.pool, sent.id))?.outcome === "dead",
    );
    expect(await deliveryRow(db.pool, sent.id)).toMatchObject({
      attempts: 2,
      error: 'relation "repos" does not exist',
    });
    failing = false;
    expect(await queue.store(sent)).toBe("rearmed");
    expect(await processedDelivery(db.pool, sent.id)).toMatchObject({ attempts: 1 });
    // Read back from the row: the same payload as the door stored.
    expect(seen).toEqual([sent.payload, sent.payload, sent.payload]);
  });

  it("a redelivery of a stored delivery changes nothing, while pending or processed", async () => {
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let calls = 0;
    const queue = startQueue(async () => {
      calls += 1;
      await gate;
    });
    const sent = delivery();
    expect(await queue.store(sent)).toBe("new");
    expect(await queue.store(sent)).toBe("duplicate");
    release();
    await processedDelivery(db.pool, sent.id);
    expect(await queue.store(sent)).toBe("duplicate");
    expect(calls).toBe(1);
  });
});

describe("storing", () => {
  it("one INSERT for many: redeliveries within the batch dropped, one issue's second left to wait", async () => {
    const first = delivery("1#700");
    const sameIssue = delivery("1#700");
    const other = delivery("1#701");
    const stored = await storeDeliveries(db.pool, [first, sameIssue, other], {
      count: 3,
      leaseMs: 60_000,
    });
    expect(stored.get(first.id)).toMatchObject({ stored: "new", attempts: 1 });
    expect(stored.get(sameIssue.id)).toEqual({ stored: "new", leaseToken: null, attempts: 0 });
    expect(stored.get(other.id)).toMatchObject({ stored: "new", attempts: 1 });
    const again = await storeDeliveries(db.pool, [other, delivery()], { count: 0, leaseMs: 0 });
    expect(again.get(other.id)).toEqual({ stored: "duplicate" });
    await db.pool.query("DELETE FROM deliveries WHERE id = ANY($1)", [
      [first.id, sameIssue.id, other.id, ...again.keys()],
    ]);
  });

  it("the door's deliveries arriving together: each stored once, the same id twice answered duplicate", async () => {
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const queue = startQueue(() => gate);
    const sent = Array.from({ length: 30 }, () => delivery());
    const twice = sent[0] as ReturnType<typeof delivery>;
    const answers = await Promise.all([...sent, twice].map((each) => queue.store(each)));
    expect(answers.filter((answer) => answer === "new")).toHaveLength(30);
    expect(answers.filter((answer) => answer === "duplicate")).toHaveLength(1);
    release();
    for (const each of sent) await processedDelivery(db.pool, each.id);
  });
});

describe("a process that died", () => {
  it("leaves its delivery to another process once the lease expires", async () => {
    const sent = delivery();
    // The dead process stored and took it (one statement), then died before processing it.
    const taken = await storeDeliveries(db.pool, [sent], { count: 1, leaseMs: 300 });
    expect(taken.get(sent.id)).toMatchObject({
      stored: "new",
      attempts: 1,
      leaseToken: expect.any(String),
    });
    const handled: string[] = [];
    startQueue(async (event) => {
      handled.push(event.id);
    });
    expect(await processedDelivery(db.pool, sent.id)).toMatchObject({ attempts: 2 });
    expect(handled).toEqual([sent.id]);
  });

  it("applies its changes once even when two processes end up running one delivery", async () => {
    const sent = delivery();
    await storeDeliveries(db.pool, [sent], { count: 0, leaseMs: 0 });
    const apply = () =>
      withTransaction(db.pool, async (client) => {
        const fresh = await markDeliveryApplied(client, sent.id, 1);
        await new Promise((resolve) => setTimeout(resolve, 50));
        return fresh;
      });
    expect((await Promise.all([apply(), apply()])).sort()).toEqual([false, true]);
  });
});

describe("one issue's deliveries", () => {
  it("are processed in the order they arrived, a later one waiting while an earlier one retries", async () => {
    const order: string[] = [];
    const first = delivery("1#500");
    const second = delivery("1#500");
    const other = delivery("1#501");
    const queue = startQueue(async (event) => {
      // The first fails until another issue's delivery, sent after both, is processed.
      if (event.id === first.id && !order.includes(other.id)) {
        throw Object.assign(new Error("Server Error"), { status: 502, response: {} });
      }
      order.push(event.id);
    });
    await queue.store(first);
    await queue.store(second);
    await queue.store(other);
    await processedDelivery(db.pool, second.id);
    expect(order).toEqual([other.id, first.id, second.id]);
    expect(await deliveryRow(db.pool, first.id)).toMatchObject({ attempts: expect.any(Number) });
    expect((await deliveryRow(db.pool, first.id))?.attempts).toBeGreaterThan(1);
    expect(await deliveryRow(db.pool, second.id)).toMatchObject({ attempts: 1 });
  });
});

describe("stop", () => {
  it("hands back the deliveries it took but had not started, for any process", async () => {
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const queue = startQueue(() => gate, { concurrency: 1 });
    const started = delivery();
    const waiting = [delivery(), delivery()];
    await queue.store(started);
    for (const each of waiting) expect(await queue.store(each)).toBe("new");
    const stopped = queue.stop();
    release();
    await stopped;
    expect(await deliveryRow(db.pool, started.id)).toMatchObject({ outcome: "processed" });
    for (const each of waiting) {
      expect(await deliveryRow(db.pool, each.id)).toEqual({
        outcome: "pending",
        attempts: 0,
        taken: false,
        error: null,
      });
    }
    const next = startQueue(async () => {});
    for (const each of waiting) await processedDelivery(db.pool, each.id);
    await next.stop();
  });
});
