/**
 * The GitHub stand-in (test/support/github-stand-in.ts) as its own process, so a benchmark
 * that loads a server does not also serve GitHub from its load generator's event loop.
 * Hosts the repositories named in argv (owner/name, without `.github/overseer.yml`),
 * prints one JSON line `{ host, url, appId }` once it listens, and on SIGTERM prints
 * `{ calls, counted }` and exits. The rate limit is set high: a benchmark measures
 * throughput, not the dispatcher's patience.
 */
import { startGithubStandIn } from "../test/support/github-stand-in.js";

const github = await startGithubStandIn({
  webhookSecret: process.env.WEBHOOK_SECRET,
  rateLimit: 10_000_000,
});
for (const fullName of process.argv.slice(2)) {
  const [owner, name] = fullName.split("/");
  if (!owner || !name) throw new Error(`not owner/name: ${fullName}`);
  await github.createRepo(owner, name);
}
console.log(JSON.stringify({ host: github.host, url: github.url, appId: github.appId }));
process.once("SIGTERM", () => {
  const counted = github.rateLimitUsed();
  console.log(
    JSON.stringify({ calls: github.calls.length, counted, unknown: github.unknownCalls }),
  );
  void github.stop().finally(() => process.exit(0));
});
