/**
 * Runs every benchmark in this directory, one after another (they compete for the same
 * cores otherwise), and exits non-zero if any of them did.
 *
 *   npm run bench
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const benches = readdirSync(here)
  .filter((name) => name.endsWith(".bench.ts"))
  .sort();
const failed: string[] = [];
for (const name of benches) {
  console.log(`\n== ${name}`);
  const result = spawnSync(process.execPath, ["--import", "tsx", `${here}${name}`], {
    stdio: "inherit",
  });
  if (result.status !== 0) failed.push(`${name} (${result.status ?? result.signal})`);
}
if (failed.length > 0) {
  console.error(`\nfailed: ${failed.join(", ")}`);
  process.exit(1);
}
