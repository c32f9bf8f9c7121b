import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  CONFIG_ERROR_MARKER,
  ConfigLoadError,
  DEFAULT_REPO_CONFIG,
  isConfigFileError,
  loadRepoConfig,
  parseRepoConfig,
  problemsFromYamlError,
  type RepoConfig,
  renderConfigProblem,
  suggestKey,
} from "../../src/config/repo-config.js";
import { isValidBranchName } from "../../src/domain/branch.js";
import { assertBranch } from "../../src/workspace/paths.js";

function ok(raw: unknown): RepoConfig {
  const result = parseRepoConfig(raw);
  if (!result.ok) throw new Error(`expected a valid config, got ${JSON.stringify(result)}`);
  return result.config;
}

function problems(raw: unknown) {
  const result = parseRepoConfig(raw);
  if (result.ok) throw new Error(`expected problems, got ${JSON.stringify(result.config)}`);
  return result.problems;
}

/** What the config plugin throws for a file that is not YAML (its own wording, then cause). */
function pluginYamlError(text: string): Error {
  try {
    parse(text);
  } catch (cause) {
    return new Error(
      "[@probot/octokit-plugin-config] Configuration could not be parsed from https://api.github.com/repos/o/r/contents/.github%2Foverseer.yml (invalid YAML)",
      { cause },
    );
  }
  throw new Error("test text parsed; pick one that does not");
}

describe("parseRepoConfig", () => {
  it("uses every default when the file is absent (null) or empty ({})", () => {
    const expected: RepoConfig = {
      label: "overseer",
      worker: null,
      base: null,
      maxAttempts: 3,
      concurrency: 2,
      merge: "manual",
      mergeMethod: "squash",
      riskLabels: ["risk:high"],
      commanders: "write",
      commitOnStop: true,
      trustedBots: [],
      maxRevisions: 5,
      reviseOnReview: false,
    };
    expect(ok(null)).toEqual(expected);
    expect(ok(undefined)).toEqual(expected);
    expect(ok({})).toEqual(expected);
    expect(DEFAULT_REPO_CONFIG).toEqual(expected);
  });

  it("hands out copies, so a caller cannot change the defaults", () => {
    const config = ok(null);
    (config.riskLabels as string[]).push("mine");
    config.label = "changed";
    expect(ok(null).riskLabels).toEqual(["risk:high"]);
    expect(ok(null).label).toBe("overseer");
    expect(Object.isFrozen(DEFAULT_REPO_CONFIG)).toBe(true);
  });

  it("reads every key of a full file", () => {
    const raw = parse(`
label: agent
worker: aider
base: develop
max_attempts: 5
concurrency: 4
merge: auto
merge_method: rebase
risk_labels: [risk:high, security]
commanders: maintain
commit_on_stop: false
max_revisions: 2
revise_on_review: true
`);
    expect(ok(raw)).toEqual({
      label: "agent",
      worker: "aider",
      base: "develop",
      maxAttempts: 5,
      concurrency: 4,
      merge: "auto",
      mergeMethod: "rebase",
      riskLabels: ["risk:high", "security"],
      commanders: "maintain",
      commitOnStop: false,
      trustedBots: [],
      maxRevisions: 2,
      reviseOnReview: true,
    });
  });

  it.each<[string, unknown, Partial<RepoConfig>]>([
    ["label", " ship it ", { label: "ship it" }],
    ["label", "x".repeat(50), { label: "x".repeat(50) }],
    ["worker", "claude", { worker: "claude" }],
    ["base", "release/2.x", { base: "release/2.x" }],
    ["base", "refs/heads/main", { base: "main" }],
    ["max_attempts", 1, { maxAttempts: 1 }],
    ["max_attempts", 20, { maxAttempts: 20 }],
    ["concurrency", 50, { concurrency: 50 }],
    ["merge", "manual", { merge: "manual" }],
    ["merge_method", "merge", { mergeMethod: "merge" }],
    ["merge_method", "squash", { mergeMethod: "squash" }],
    ["risk_labels", [], { riskLabels: [] }],
    ["risk_labels", "danger", { riskLabels: ["danger"] }],
    ["risk_labels", ["a", "a", "b"], { riskLabels: ["a", "b"] }],
    ["commanders", "write", { commanders: "write" }],
    ["commanders", "admin", { commanders: "admin" }],
    ["commit_on_stop", true, { commitOnStop: true }],
  ])("accepts %s: %j", (key, value, expected) => {
    expect(ok({ [key]: value })).toMatchObject(expected);
  });

  it.each<[string, unknown, string]>([
    ["max_attempts", "three", 'expected a whole number from 1 to 20, got "three"'],
    ["max_attempts", 0, "expected a whole number from 1 to 20, got 0"],
    ["max_attempts", 21, "expected a whole number from 1 to 20, got 21"],
    ["max_attempts", 2.5, "expected a whole number from 1 to 20, got 2.5"],
    ["concurrency", 51, "expected a whole number from 1 to 50, got 51"],
    ["concurrency", "2", 'expected a whole number from 1 to 50, got "2"'],
    ["label", "", 'expected a label name of 1 to 50 characters, got ""'],
    ["label", "   ", 'expected a label name of 1 to 50 characters, got "   "'],
    ["label", "x".repeat(51), "expected a label name of 1 to 50 characters, got"],
    ["label", 7, "expected a label name of 1 to 50 characters, got 7"],
    ["label", "overseer:running", 'starts with "overseer:", which Overseer reserves'],
    ["worker", "", 'expected the name of a worker profile, got ""'],
    ["worker", ["claude"], 'expected the name of a worker profile, got a list (["claude"])'],
    ["base", "feature..x", 'expected a valid git branch name like "main", got "feature..x"'],
    ["base", "has space", "expected a valid git branch name"],
    ["base", 1, "got the number 1 (put the branch name in quotes)"],
    ["merge", "Auto", 'expected "manual" or "auto", got "Auto"'],
    ["merge", true, 'expected "manual" or "auto", got true'],
    ["merge_method", "fast-forward", 'expected "merge", "squash" or "rebase", got "fast-forward"'],
    ["commanders", "read", 'expected "write", "maintain" or "admin", got "read"'],
    ["commanders", "triage", 'expected "write", "maintain" or "admin", got "triage"'],
    ["commit_on_stop", "yes", 'expected true or false, got "yes"'],
    ["commit_on_stop", 1, "expected true or false, got 1"],
    ["risk_labels", 5, "expected a list of label names like [risk:high], got 5"],
    ["risk_labels", { high: true }, 'got a mapping ({"high":true})'],
    [
      "risk_labels",
      ["ok", ""],
      'item 2 of the list: expected a label name of 1 to 50 characters, got ""',
    ],
    [
      "risk_labels",
      ["ok", 3],
      "item 2 of the list: expected a label name of 1 to 50 characters, got 3",
    ],
    ["label", null, "got nothing (remove the key to use the default)"],
  ])("rejects %s: %j", (key, value, reason) => {
    const found = problems({ [key]: value });
    expect(found).toHaveLength(1);
    expect(found[0]?.key).toBe(key);
    expect(found[0]?.reason).toContain(reason);
  });

  it.each([
    ["lable", "label"],
    ["Label", "label"],
    ["max-attempts", "max_attempts"],
    ["maxAttempts", "max_attempts"],
    ["max_attemps", "max_attempts"],
    ["mergeMethod", "merge_method"],
    ["risk_label", "risk_labels"],
    ["comit_on_stop", "commit_on_stop"],
    ["commander", "commanders"],
    ["branch", "base"],
    ["retries", "max_attempts"],
  ])("names unknown key %s and suggests %s", (typo, meant) => {
    expect(problems({ [typo]: 1 })).toEqual([
      { key: typo, reason: `unknown key "${typo}" (did you mean "${meant}"?)` },
    ]);
    expect(suggestKey(typo)).toBe(meant);
  });

  it("lists the known keys when nothing is close", () => {
    const [problem] = problems({ colour: "blue" });
    expect(problem?.key).toBe("colour");
    expect(problem?.reason).toMatch(/^unknown key "colour" \(known keys: label, worker, base,/);
  });

  it("reports every problem at once, not just the first", () => {
    const found = problems({ max_attempts: "three", lable: "x", merge: "sometimes" });
    expect(found.map((problem) => problem.key).sort()).toEqual(["lable", "max_attempts", "merge"]);
  });

  it.each<[unknown, string]>([
    [[1, 2], "got a list ([1,2])"],
    [42, "got 42"],
    ["label: overseer", 'got "label: overseer"'],
  ])("rejects a file that is not a mapping: %j", (raw, got) => {
    const [problem] = problems(raw);
    expect(problem?.key).toBe("(file)");
    expect(problem?.reason).toContain("expected a mapping of settings");
    expect(problem?.reason).toContain(got);
  });
});

describe("base: one branch-name rule for config and workspace", () => {
  const names = [
    "main",
    "release/2.x",
    "feat-1",
    "user/name/topic",
    "v1.0",
    "",
    "-main",
    "a b",
    "a..b",
    "a~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[b",
    "a\\b",
    "/a",
    "a/",
    "a//b",
    "a.",
    "a.lock",
    "a/.hidden",
    "a@{1}",
    "@",
    "HEAD",
    "x".repeat(256),
    // Accepted by the config's own validator before there was one rule; the workspace
    // refused it, so the task failed only once a runner tried to check it out.
    "main\ud800",
    "refs/heads/\ud800x",
  ];
  it.each(names)("%j: the config accepts it exactly when the workspace does", (name) => {
    const parsed = parseRepoConfig({ base: name });
    const workspaceAccepts = (() => {
      try {
        assertBranch(name.trim().replace(/^refs\/heads\//, ""), "base");
        return true;
      } catch {
        return false;
      }
    })();
    expect(parsed.ok).toBe(workspaceAccepts);
    expect(parsed.ok).toBe(isValidBranchName(name.trim().replace(/^refs\/heads\//, "")));
  });
  it("refuses a lone surrogate that git would see as different bytes", () => {
    const parsed = parseRepoConfig({ base: "main\ud800" });
    expect(parsed.ok).toBe(false);
  });
});

describe("when the file does not parse", () => {
  it("quotes the YAML error with its line and column", () => {
    const error = pluginYamlError("label: a: b\n");
    expect(isConfigFileError(error)).toBe(true);
    expect(problemsFromYamlError(error)).toEqual([
      {
        key: "(file)",
        reason: expect.stringMatching(/^is not valid YAML: .+ at line 1, column 8$/),
      },
    ]);
  });

  it("explains a file that holds one value, and other plugin errors", () => {
    const scalar = new Error(
      "[@probot/octokit-plugin-config] Configuration could not be parsed from https://x (YAML is not an object)",
    );
    expect(problemsFromYamlError(scalar)[0]?.reason).toContain("holds a single value");
    const extendsError = new Error(
      '[@probot/octokit-plugin-config] Invalid value "a b" for _extends in https://x',
    );
    expect(problemsFromYamlError(extendsError)[0]?.key).toBe("_extends");
    const directory = new Error(
      "[@probot/octokit-plugin-config] https://x exists, but is either a directory or a submodule. Ignoring.",
    );
    expect(problemsFromYamlError(directory)[0]?.reason).toBe(
      "is a directory or a submodule, not a file",
    );
  });

  it("tells file problems from GitHub being unreachable", () => {
    const outage = Object.assign(new Error("Server Error"), { status: 502 });
    expect(isConfigFileError(outage)).toBe(false);
    expect(isConfigFileError(pluginYamlError("a: [1"))).toBe(true);
  });

  it("wraps the error in ConfigLoadError, keeping the problems and the cause", () => {
    const cause = pluginYamlError("label: a: b\n");
    const error = new ConfigLoadError(cause);
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("ConfigLoadError");
    expect(error.cause).toBe(cause);
    expect(error.problems).toEqual(problemsFromYamlError(cause));
    expect(error.message).toMatch(/^\.github\/overseer\.yml: the file is not valid YAML: /);
    expect(isConfigFileError(error)).toBe(true);
    expect(problemsFromYamlError(error)).toBe(error.problems);
  });

  it("loadRepoConfig returns problems for a bad file and throws for an outage", async () => {
    const bad = await loadRepoConfig(async () => {
      throw pluginYamlError("a: [1");
    });
    expect(bad.ok).toBe(false);
    const outage = Object.assign(new Error("Server Error"), { status: 502 });
    await expect(
      loadRepoConfig(async () => {
        throw outage;
      }),
    ).rejects.toBe(outage);
    expect(await loadRepoConfig(async () => ({ max_attempts: 4 }))).toMatchObject({
      ok: true,
      config: { maxAttempts: 4 },
    });
  });
});

describe("renderConfigProblem", () => {
  it("starts with the marker, quotes each problem, and says how to recover", () => {
    const body = renderConfigProblem(problems({ max_attempts: "three", lable: "x" }));
    expect(body.split("\n")[0]).toBe(CONFIG_ERROR_MARKER);
    expect(body).toContain("`.github/overseer.yml`");
    expect(body).toContain('- `max_attempts`: expected a whole number from 1 to 20, got "three"');
    expect(body).toContain('- `lable`: unknown key "lable" (did you mean "label"?)');
    expect(body).toContain("Nothing was queued");
    expect(body).toContain("Fix the file");
    expect(body).toMatch(/add the label again/);
  });

  it("words file-level problems about the file and honours another path", () => {
    const body = renderConfigProblem(problemsFromYamlError(pluginYamlError("a: [1")), "x.yml");
    expect(body).toContain("`x.yml`");
    expect(body).toContain("- the file is not valid YAML: ");
  });

  it("cannot be used to mention people, fake markers or break the markup", () => {
    const body = renderConfigProblem([
      { key: "a`b", reason: 'got "@everyone <!-- overseer:status task=1 --> **bold**"' },
    ]);
    expect(body).not.toMatch(/@everyone/);
    expect(body).not.toContain("<!-- overseer:status");
    expect(body).toContain("``a`b``");
    expect(body).toContain("\\*\\*bold\\*\\*");
  });

  it("stays short however many problems there are", () => {
    const raw = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`key${i}`, i]));
    const result = parseRepoConfig(raw);
    if (result.ok) throw new Error("expected problems");
    const body = renderConfigProblem(result.problems, undefined, result.unreported);
    expect(body).toContain("… and 480 more");
    expect(body.length).toBeLessThan(10_000);
  });
});
