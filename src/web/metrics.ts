import type { Logger } from "pino";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { deliveryView } from "../db/deliveries.js";
import { outboxView } from "../db/outbox.js";
import type { Pool } from "../db/pool.js";
import { listRunnerHealth } from "../db/runners.js";
import type { RunOutcome } from "../db/runs.js";
import { queueView } from "../db/task-views.js";
import { countTasksByState } from "../db/tasks.js";
import type { DeliveryMetrics, DeliveryOutcome } from "../github/deliveries.js";
import type { GithubCallMetrics } from "../github/probot.js";
import type { RunnerMetrics } from "../runner/metrics.js";
import type { FindingsSource } from "./findings.js";

/**
 * Prometheus metrics, one registry per Overseer instance. Two kinds:
 * - counted in this process as things happen: webhook deliveries, runs settled and their
 *   durations, label-to-start and claim latency, GitHub API calls and the rate limit
 *   GitHub reported last, process metrics. Sum them over processes in PromQL.
 * - read from PostgreSQL at scrape time, so every process reports the same cluster-wide
 *   figures: tasks by state, queue, outbox, runners. Use max() over processes for these.
 * A scrape that cannot reach the database still answers, with overseer_database_up 0.
 */
export class OverseerMetrics implements RunnerMetrics, DeliveryMetrics, GithubCallMetrics {
  readonly registry = new Registry();
  readonly #deliveries: Counter<"outcome">;
  readonly #runs: Counter<"outcome" | "profile">;
  readonly #runDuration: Histogram<"profile">;
  readonly #labelToStart: Histogram;
  readonly #claimDuration: Histogram;
  readonly #githubRequests: Counter<"status">;
  readonly #rateRemaining: Gauge<"resource">;
  readonly #rateLimit: Gauge<"resource">;

  constructor(deps: {
    pool: Pool;
    findings: FindingsSource;
    runnerStaleAfterMs: number;
    log: Logger;
  }) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.#deliveries = new Counter({
      name: "overseer_webhook_deliveries_total",
      help: "Webhook deliveries by outcome: at the door ignored (nothing to do), duplicate (a redelivery), rejected (malformed), failed (not stored: answered 5xx); processing processed, rejected, retried (one failed attempt), dead (given up)",
      labelNames: ["outcome"],
      registers,
    });
    this.#runs = new Counter({
      name: "overseer_runs_total",
      help: "Runs settled by this process, by outcome and worker profile",
      labelNames: ["outcome", "profile"],
      registers,
    });
    this.#runDuration = new Histogram({
      name: "overseer_run_duration_seconds",
      help: "Runs from claim to settlement, by worker profile",
      labelNames: ["profile"],
      buckets: [10, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200],
      registers,
    });
    this.#labelToStart = new Histogram({
      name: "overseer_label_to_start_seconds",
      help: "From a task being queued (label, /run, /retry) to its worker process starting",
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3_600],
      registers,
    });
    this.#claimDuration = new Histogram({
      name: "overseer_claim_duration_seconds",
      help: "How long a successful claim took (pick, run insert, transition, commit)",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    this.#githubRequests = new Counter({
      name: "overseer_github_requests_total",
      help: "GitHub API requests by HTTP status (network: no answer)",
      labelNames: ["status"],
      registers,
    });
    this.#rateRemaining = new Gauge({
      name: "overseer_github_rate_limit_remaining",
      help: "Requests left in the current rate-limit window, as GitHub last reported (x-ratelimit-remaining)",
      labelNames: ["resource"],
      registers,
    });
    this.#rateLimit = new Gauge({
      name: "overseer_github_rate_limit_limit",
      help: "Size of the current rate-limit window, as GitHub last reported (x-ratelimit-limit)",
      labelNames: ["resource"],
      registers,
    });
    registerDatabaseGauges(this.registry, deps);
    registerFindings(this.registry, deps.findings);
  }

  delivery(outcome: DeliveryOutcome): void {
    this.#deliveries.inc({ outcome });
  }

  claimed(durationMs: number): void {
    this.#claimDuration.observe(durationMs / 1_000);
  }

  workerStarted(labelToStartMs: number): void {
    this.#labelToStart.observe(Math.max(0, labelToStartMs) / 1_000);
  }

  runSettled(outcome: RunOutcome, profile: string, durationMs: number): void {
    this.#runs.inc({ outcome, profile });
    this.#runDuration.observe({ profile }, durationMs / 1_000);
  }

  githubCall(status: number | "network", headers: Record<string, unknown> | undefined): void {
    this.#githubRequests.inc({ status: String(status) });
    const remaining = Number(headers?.["x-ratelimit-remaining"]);
    if (headers?.["x-ratelimit-remaining"] === undefined || !Number.isFinite(remaining)) return;
    const resource = String(headers["x-ratelimit-resource"] ?? "core");
    this.#rateRemaining.set({ resource }, remaining);
    const limit = Number(headers["x-ratelimit-limit"]);
    if (Number.isFinite(limit)) this.#rateLimit.set({ resource }, limit);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

interface DatabaseFigures {
  tasks: Awaited<ReturnType<typeof countTasksByState>>;
  queue: Awaited<ReturnType<typeof queueView>>;
  outbox: Awaited<ReturnType<typeof outboxView>>;
  deliveries: Awaited<ReturnType<typeof deliveryView>>;
  runners: Awaited<ReturnType<typeof listRunnerHealth>>;
}

/**
 * prom-client collects every metric of a scrape concurrently, so the gauges below share
 * the one read of the database that is in flight; the next scrape reads afresh (reusing a
 * finished read, even briefly, would show a change made just before the scrape as not yet made).
 */
interface DatabaseGauge {
  name: string;
  help: string;
  labelNames: string[];
  fill(gauge: Gauge<string>, figures: DatabaseFigures): void;
}

const DATABASE_GAUGES: DatabaseGauge[] = [
  {
    name: "overseer_tasks",
    help: "Tasks by state",
    labelNames: ["state"],
    fill: (g, f) => {
      for (const [state, count] of Object.entries(f.tasks)) g.set({ state }, count);
    },
  },
  {
    name: "overseer_queue_claimable",
    help: "Queued tasks a runner could claim now (approved, under max_attempts, not backing off)",
    labelNames: [],
    fill: (g, f) => g.set(f.queue.claimable),
  },
  {
    name: "overseer_queue_oldest_claimable_age_seconds",
    help: "How long the oldest claimable task has waited (0 when none waits)",
    labelNames: [],
    fill: (g, f) => g.set(f.queue.oldestClaimableAgeSeconds ?? 0),
  },
  {
    name: "overseer_runs_active",
    help: "Runs in progress on any runner",
    labelNames: [],
    fill: (g, f) => g.set(f.queue.running),
  },
  {
    name: "overseer_outbox_pending",
    help: "GitHub writes waiting to be delivered",
    labelNames: [],
    fill: (g, f) => g.set(f.outbox.pending),
  },
  {
    name: "overseer_outbox_oldest_pending_age_seconds",
    help: "Age of the oldest undelivered GitHub write (0 when none waits)",
    labelNames: [],
    fill: (g, f) => g.set(f.outbox.oldestPendingAgeSeconds ?? 0),
  },
  {
    name: "overseer_outbox_dead",
    help: "GitHub writes given up on after too many attempts",
    labelNames: [],
    fill: (g, f) => g.set(f.outbox.dead),
  },
  {
    name: "overseer_deliveries_pending",
    help: "Webhook deliveries stored and answered, not processed yet (waiting for a slot, their turn or a retry)",
    labelNames: [],
    fill: (g, f) => g.set(f.deliveries.pending),
  },
  {
    name: "overseer_deliveries_oldest_pending_age_seconds",
    help: "Age of the oldest unprocessed webhook delivery (0 when none waits)",
    labelNames: [],
    fill: (g, f) => g.set(f.deliveries.oldestPendingAgeSeconds ?? 0),
  },
  {
    name: "overseer_deliveries_dead",
    help: "Webhook deliveries given up on after too many failed attempts",
    labelNames: [],
    fill: (g, f) => g.set(f.deliveries.dead),
  },
  {
    name: "overseer_runners",
    help: "Registered runners by status (alive; stale: no heartbeat for OVERSEER_RUNNER_STALE_AFTER; stopped)",
    labelNames: ["status"],
    fill: (g, f) => {
      for (const status of ["alive", "stale", "stopped"] as const) {
        g.set({ status }, f.runners.filter((runner) => runner.status === status).length);
      }
    },
  },
];

/** Cluster-wide figures, read in one pass per scrape. */
function registerDatabaseGauges(
  registry: Registry,
  deps: { pool: Pool; runnerStaleAfterMs: number; log: Logger },
): void {
  let inFlight: Promise<DatabaseFigures | null> | undefined;
  const read = (): Promise<DatabaseFigures | null> => {
    inFlight ??= readDatabaseFigures(deps).finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
  for (const { name, help, labelNames, fill } of DATABASE_GAUGES) {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const figures = await read();
        // Without the database the figure is unknown: no sample rather than a stale one.
        this.reset();
        if (figures) fill(this, figures);
      },
    });
  }
  new Gauge({
    name: "overseer_database_up",
    help: "1 when this scrape could read PostgreSQL",
    registers: [registry],
    async collect() {
      this.set((await read()) ? 1 : 0);
    },
  });
}

function readDatabaseFigures(deps: {
  pool: Pool;
  runnerStaleAfterMs: number;
  log: Logger;
}): Promise<DatabaseFigures | null> {
  return Promise.all([
    countTasksByState(deps.pool),
    queueView(deps.pool),
    outboxView(deps.pool),
    deliveryView(deps.pool),
    listRunnerHealth(deps.pool, deps.runnerStaleAfterMs),
  ]).then(
    ([tasks, queue, outbox, deliveries, runners]) => ({
      tasks,
      queue,
      outbox,
      deliveries,
      runners,
    }),
    (error: unknown) => {
      deps.log.warn({ err: error }, "metrics could not read the database");
      return null;
    },
  );
}

/** The watchdog's findings by kind, as counted by the findings source. */
function registerFindings(registry: Registry, findings: FindingsSource): void {
  const seen = new Map<string, number>();
  new Counter({
    name: "overseer_watchdog_findings_total",
    help: "Watchdog findings by kind, since this process started",
    labelNames: ["kind"],
    registers: [registry],
    collect() {
      for (const [kind, total] of Object.entries(findings.countsByKind())) {
        const delta = total - (seen.get(kind) ?? 0);
        if (delta > 0) this.inc({ kind }, delta);
        seen.set(kind, Math.max(total, seen.get(kind) ?? 0));
      }
    },
  });
}
