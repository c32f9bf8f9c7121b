import { describe, expect, it } from "vitest";
import { parseRepoConfig, renderConfigProblem } from "../../src/config/repo-config.js";

/**
 * A repository's config is written by whoever can push to its default branch, and parsed
 * on the event loop every webhook shares: what it can cost is bounded.
 */

describe("problems in .github/overseer.yml", () => {
  it("20,000 unknown keys: 20 problems worded, the rest only counted", () => {
    const raw = Object.fromEntries(
      Array.from({ length: 20_000 }, (_, i) => [`unknown_setting_number_${i}`, i]),
    );
    const result = parseRepoConfig(raw);
    if (result.ok) throw new Error("expected problems");
    expect(result.problems).toHaveLength(20);
    expect(result.unreported).toBe(19_980);
    const body = renderConfigProblem(result.problems, undefined, result.unreported);
    expect(body).toContain("… and 19980 more");
    expect(body.split("\n").filter((line) => line.startsWith("- `"))).toHaveLength(20);
  });

  it("still suggests the key a typo meant, among the first problems", () => {
    const result = parseRepoConfig({ lable: "x", mrege: "auto" });
    if (result.ok) throw new Error("expected problems");
    expect(result.problems.map((problem) => problem.reason)).toEqual([
      'unknown key "lable" (did you mean "label"?)',
      'unknown key "mrege" (did you mean "merge"?)',
    ]);
    expect(result.unreported).toBe(0);
  });

  it("a key far longer than any known key costs no spelling suggestion", () => {
    const key = "k".repeat(50_000);
    const result = parseRepoConfig({ [key]: 1 });
    if (result.ok) throw new Error("expected problems");
    expect(result.problems[0]?.reason).toMatch(/^unknown key "k+…" \(known keys: /);
  });
});

describe("trusted_bots", () => {
  it("takes bot logins with or without [bot], case-insensitively", () => {
    const result = parseRepoConfig({
      trusted_bots: ["Renovate[bot]", "auto-labeller", "renovate"],
    });
    if (!result.ok) throw new Error(JSON.stringify(result.problems));
    expect(result.config.trustedBots).toEqual(["renovate", "auto-labeller"]);
  });

  it("defaults to none", () => {
    const result = parseRepoConfig({});
    if (!result.ok) throw new Error("expected a config");
    expect(result.config.trustedBots).toEqual([]);
  });

  it.each([
    [["has space"], /item 1 of the list: expected a bot login/],
    ["renovate", /expected a list of bot logins/],
  ])("refuses %j", (value, reason) => {
    const result = parseRepoConfig({ trusted_bots: value });
    if (result.ok) throw new Error("expected problems");
    expect(result.problems[0]).toMatchObject({ key: "trusted_bots" });
    expect(result.problems[0]?.reason).toMatch(reason);
  });
});
