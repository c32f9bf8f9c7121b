import { describe, expect, it } from "vitest";
import {
  parseWorkerProfiles,
  profileAllowsRepository,
  profileConcurrency,
  resolveProfileFor,
  WorkerProfileError,
} from "../../src/config/workers.js";
import { agentProfileFromLabels } from "../../src/domain/labels.js";

const PROFILES = parseWorkerProfiles(
  `
default: claude
profiles:
  claude:
    command: [claude, -p]
    concurrency: 2
  codex:
    command: [codex, exec, "-"]
    repositories: [acme/*, other/widgets]
  admin-script:
    command: [./deploy.sh]
    repositories: [acme/ops]
`,
  "/etc/w.yml",
);

describe("agent: labels", () => {
  it.each<[string[], string | null, string[]]>([
    [["overseer", "agent:codex"], "codex", []],
    [["Agent:codex"], "codex", []],
    [["agent:codex", "agent:codex"], "codex", []],
    [["agent:"], null, []],
    [["bug"], null, []],
    [["agent:codex", "agent:claude"], null, ["codex", "claude"]],
  ])("%j picks %s", (labels, profile, conflicting) => {
    expect(agentProfileFromLabels(labels)).toEqual({ profile, conflicting });
  });
});

describe("which repositories may use a profile", () => {
  it("every repository by default; else only those listed, owner/* for an owner's", () => {
    const codex = PROFILES.profiles.get("codex");
    const claude = PROFILES.profiles.get("claude");
    if (!codex || !claude) throw new Error("profiles missing");
    expect(profileAllowsRepository(claude, "anyone/anything")).toBe(true);
    expect(profileAllowsRepository(codex, "acme/web")).toBe(true);
    expect(profileAllowsRepository(codex, "ACME/Web")).toBe(true);
    expect(profileAllowsRepository(codex, "other/widgets")).toBe(true);
    expect(profileAllowsRepository(codex, "other/gadgets")).toBe(false);
    expect(profileAllowsRepository(codex, "acmex/web")).toBe(false);
  });

  it("a label naming a profile the repository may not use is a configuration error, naming both", () => {
    expect(resolveProfileFor(PROFILES, "codex", "acme/web").name).toBe("codex");
    expect(resolveProfileFor(PROFILES, null, "acme/web").name).toBe("claude");
    expect(() => resolveProfileFor(PROFILES, "admin-script", "acme/web")).toThrow(
      WorkerProfileError,
    );
    expect(() => resolveProfileFor(PROFILES, "admin-script", "acme/web")).toThrow(
      'worker profile "admin-script" is not allowed for acme/web (/etc/w.yml allows it for: acme/ops)',
    );
    expect(() => resolveProfileFor(PROFILES, "nope", "acme/web")).toThrow(
      /unknown worker profile "nope"/,
    );
  });

  it("concurrency limits are per profile, for those that set one", () => {
    expect([...profileConcurrency(PROFILES)]).toEqual([["claude", 2]]);
  });

  it.each([
    ["repositories: acme/web", "profiles.x.repositories: expected a list of repositories"],
    [
      "repositories: [acme]",
      'profiles.x.repositories[0]: expected a repository like acme/widgets or acme/*, got "acme"',
    ],
    ["repositories: [acme/web/x]", "profiles.x.repositories[0]: expected a repository like"],
    ["concurrency: 0", "profiles.x.concurrency: expected a whole number from 1 to 1000"],
    ['concurrency: "2"', "profiles.x.concurrency: expected a whole number from 1 to 1000"],
  ])("%s is refused with one line", (line, message) => {
    expect(() =>
      parseWorkerProfiles(`profiles:\n  x:\n    command: [a]\n    ${line}\n`, "/etc/w.yml"),
    ).toThrow(message);
  });
});
