/**
 * GitHub API calls per task lifecycle (label → worker → PR → merge → done, completion
 * comment), call by call, as the GitHub stand-in saw them: `overseer start` as its own
 * process, the worker commits at once. A first lifecycle warms up (installation token,
 * first reads of the repository); the second is the one counted. Calls answered 304 to a
 * conditional request cost no rate limit and are listed apart.
 *
 *   npx tsx bench/api-calls.bench.ts
 *
 * Target: ≤ 8 calls that count against the rate limit. Prints figures; never fails on them.
 */
import { reportFigure } from "./figures.js";
import { startLifecycleRig } from "./lifecycle-harness.js";

const TARGET = 8;

// The default outbox settle (2 s): status comments and labels coalesce as in production.
const rig = await startLifecycleRig({ capacity: 1, env: { OVERSEER_OUTBOX_SETTLE: "2s" } });
try {
  const repo = await rig.github.createRepo("octo", "widgets");
  await rig.lifecycle(repo, "Warm up");
  await rig.settled();
  const warmCalls = rig.github.calls.length;
  const warmCounted = rig.github.calls.filter((call) => call.counted).length;
  await rig.lifecycle(repo, "Make the widget faster");
  await rig.settled();
  // Anything the app does a moment after the outbox drained (a check run's last update).
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  await rig.settled();
  const calls = rig.github.calls.slice(warmCalls);
  const counted = calls.filter((call) => call.counted);
  console.log(
    `first lifecycle (warm-up, token exchange included): ${warmCounted} counted, ${warmCalls - warmCounted} answered 304`,
  );
  console.log(
    `second lifecycle: ${counted.length} counted against the rate limit, ${calls.length - counted.length} answered 304`,
  );
  for (const [i, call] of calls.entries()) {
    console.log(
      `  ${String(i + 1).padStart(2)}. ${call.method.padEnd(6)} ${call.route} → ${call.status}${call.counted ? "" : " (not counted)"}`,
    );
  }
  if (rig.github.unknownCalls.length > 0) {
    console.log(`undocumented calls: ${rig.github.unknownCalls.join(", ")}`);
  }
  reportFigure({
    figure: "GitHub API calls per lifecycle (counted)",
    value: counted.length,
    unit: "calls",
    target: `≤ ${TARGET}`,
    met: counted.length <= TARGET,
  });
  reportFigure({
    figure: "GitHub API calls per lifecycle answered 304",
    value: calls.length - counted.length,
    unit: "calls",
  });
} finally {
  await rig.stop();
}
