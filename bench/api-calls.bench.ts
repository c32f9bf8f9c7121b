/**
 * GitHub API calls per task lifecycle (label → worker → PR → merge → done, completion
 * comment), call by call, as the GitHub stand-in saw them: `overseer start` as its own
 * process, the worker commits at once. In each repository (one without
 * `.github/overseer.yml`, one with it) a first lifecycle warms up (installation token,
 * first reads of the repository); the second, seconds later, is the one counted. Calls
 * answered 304 to a conditional request cost no rate limit and are listed apart.
 *
 *   npx tsx bench/api-calls.bench.ts
 *
 * Target: ≤ 8 calls that count against the rate limit. Prints figures; never fails on them.
 */
import type { RepoModel } from "../test/support/github-stand-in.js";
import { reportFigure } from "./figures.js";
import { startLifecycleRig } from "./lifecycle-harness.js";

const TARGET = 8;

// The default outbox settle (2 s): status comments and labels coalesce as in production.
const rig = await startLifecycleRig({ capacity: 1, env: { OVERSEER_OUTBOX_SETTLE: "2s" } });
try {
  // A repository without `.github/overseer.yml` (the usual case: every key is optional),
  // then one with it, whose reads are conditional.
  const bare = await measure(await rig.github.createRepo("octo", "widgets"), "no config file");
  const configured = await measure(
    await rig.github.createRepo("octo", "gadgets", { config: "concurrency: 2\n" }),
    "with .github/overseer.yml",
  );
  if (rig.github.unknownCalls.length > 0) {
    console.log(`undocumented calls: ${rig.github.unknownCalls.join(", ")}`);
  }
  reportFigure({
    figure: "GitHub API calls per lifecycle (counted)",
    value: bare.counted,
    unit: "calls",
    target: `≤ ${TARGET}`,
    met: bare.counted <= TARGET,
  });
  reportFigure({
    figure: "GitHub API calls per lifecycle answered 304",
    value: bare.notModified,
    unit: "calls",
  });
  reportFigure({
    figure: "GitHub API calls per lifecycle with a config file (counted)",
    value: configured.counted,
    unit: "calls",
    target: `≤ ${TARGET}`,
    met: configured.counted <= TARGET,
  });
  reportFigure({
    figure: "GitHub API calls per lifecycle with a config file answered 304",
    value: configured.notModified,
    unit: "calls",
  });
} finally {
  await rig.stop();
}

/** A warm-up lifecycle in `repo`, then the counted one, listed call by call. */
async function measure(repo: RepoModel, what: string) {
  const before = rig.github.calls.length;
  await rig.lifecycle(repo, "Warm up");
  await rig.settled();
  const warm = rig.github.calls.slice(before);
  const warmCounted = warm.filter((call) => call.counted).length;
  const start = rig.github.calls.length;
  await rig.lifecycle(repo, "Make the widget faster");
  await rig.settled();
  // Anything the app does a moment after the outbox drained (a check run's last update).
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  await rig.settled();
  const calls = rig.github.calls.slice(start);
  const counted = calls.filter((call) => call.counted).length;
  console.log(
    `${what}: first lifecycle (warm-up): ${warmCounted} counted, ${warm.length - warmCounted} answered 304`,
  );
  console.log(
    `${what}: second lifecycle: ${counted} counted against the rate limit, ${calls.length - counted} answered 304`,
  );
  for (const [i, call] of calls.entries()) {
    console.log(
      `  ${String(i + 1).padStart(2)}. ${call.method.padEnd(6)} ${call.route} → ${call.status}${call.counted ? "" : " (not counted)"}`,
    );
  }
  return { counted, notModified: calls.length - counted };
}
