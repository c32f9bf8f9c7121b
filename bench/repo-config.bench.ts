/**
 * What a hostile `.github/overseer.yml` costs the event loop every webhook shares: a file
 * of N unknown keys, parsed and worded as the issue comment, and a file at the 64 KB cap.
 * Prints figures; never fails on a time.
 *
 *   npx tsx bench/repo-config.bench.ts
 */
import { parse } from "yaml";
import {
  parseRepoConfig,
  REPO_CONFIG_MAX_BYTES,
  renderConfigProblem,
} from "../src/config/repo-config.js";
import { reportFigure } from "./figures.js";

function time<T>(run: () => T): { ms: number; value: T } {
  const started = process.hrtime.bigint();
  const value = run();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, value };
}

for (const keys of [100, 2_000, 20_000]) {
  const raw = Object.fromEntries(
    Array.from({ length: keys }, (_, i) => [`some_unknown_setting_${i}`, i]),
  );
  const { ms, value } = time(() => {
    const result = parseRepoConfig(raw);
    return result.ok ? "" : renderConfigProblem(result.problems, undefined, result.unreported);
  });
  console.log(
    `${String(keys).padStart(6)} unknown keys: ${ms.toFixed(1)} ms, comment ${value.length} characters`,
  );
}

// The largest file Overseer reads: as many unknown keys as fit in 64 KB of YAML.
const lines: string[] = [];
let bytes = 0;
for (let i = 0; bytes < REPO_CONFIG_MAX_BYTES - 40; i += 1) {
  const line = `k${i}: ${i}`;
  lines.push(line);
  bytes += line.length + 1;
}
const text = lines.join("\n");
const { ms } = time(() => parseRepoConfig(parse(text)));
reportFigure({ figure: "64 KB hostile .github/overseer.yml, parsed", value: ms, unit: "ms" });
console.log(
  `a ${Math.round(text.length / 1024)} KB file of ${lines.length} keys: ${ms.toFixed(1)} ms (YAML parse included)`,
);
