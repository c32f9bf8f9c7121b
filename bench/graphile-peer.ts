/**
 * The claim benchmark's peer: graphile-worker 0.16.6 (a dev dependency used only here)
 * running no-op jobs on the same PostgreSQL, so "claim + settle" has a queue of the same
 * kind to be set against. Its schema goes in the benchmark's own database; the jobs are
 * inserted in one statement while the worker waits, and the figure is the time from that
 * commit until the last job completed (each job: fetched with SKIP LOCKED, run, completed,
 * which is graphile-worker's claim + settle). Not a benchmark itself.
 */
import { Logger, run, runMigrations } from "graphile-worker";
import pg from "pg";

const logger = new Logger(() => () => undefined);

export async function prepareGraphileWorker(url: string): Promise<void> {
  await runMigrations({ connectionString: url, logger });
}

export interface GraphileRound {
  ms: number;
  completed: number;
}

/** Runs `jobs` no-op jobs with `concurrency` concurrent fetchers; returns wall time. */
export async function graphileRound(
  url: string,
  jobs: number,
  concurrency: number,
): Promise<GraphileRound> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  let completed = 0;
  let done: () => void = () => undefined;
  const allDone = new Promise<void>((resolve) => {
    done = resolve;
  });
  const runner = await run({
    connectionString: url,
    concurrency,
    maxPoolSize: concurrency + 2,
    noHandleSignals: true,
    logger,
    pollInterval: 1_000,
    taskList: {
      noop: async () => {
        completed += 1;
        if (completed === jobs) done();
      },
    },
  });
  try {
    await client.query("TRUNCATE graphile_worker._private_jobs CASCADE").catch(() => undefined);
    const started = performance.now();
    await client.query(
      "SELECT graphile_worker.add_job('noop', json_build_object('n', g)) FROM generate_series(1, $1::int) AS g",
      [jobs],
    );
    await allDone;
    // The last job's completion is written after its function returns; wait for the table.
    for (;;) {
      const left = await client.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM graphile_worker._private_jobs",
      );
      if ((left.rows[0]?.n ?? 0) === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    return { ms: performance.now() - started, completed };
  } finally {
    await runner.stop();
    await client.end();
  }
}
