import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDuration, parseSize } from "../../src/config/durations.js";
import {
  DEFAULT_WORKER_PROFILES,
  expandArgv,
  loadWorkerProfiles,
  NO_PROFILE_EXIT_CODE,
  type PlaceholderValues,
  parseWorkerProfiles,
  resolveProfile,
  WorkerProfileError,
  workerEnv,
} from "../../src/config/workers.js";

const SOURCE = "/etc/w.yml";

const VALID = `
default: claude
profiles:
  claude:
    command: [claude, -p, --permission-mode, acceptEdits]
    stdin: prompt
    env: [ANTHROPIC_API_KEY]
    timeout: 60m
    idle_timeout: 15m
    log_limit: 50MB
    grace: 10s
  aider:
    command: [aider, --yes-always, --message-file, "{prompt_file}"]
    env: [OPENAI_API_KEY, OPENAI_API_KEY]
    timeout: 90s
    idle_timeout: 2h
    log_limit: 512KB
  script:
    command: [sh, -c, 'echo "\${{HOME}}" > {summary_file}', "{repo}#{issue}", "{worktree}:{branch}:{base}"]
`;

const VALUES: PlaceholderValues = {
  promptFile: "/runs/7/prompt.md",
  summaryFile: "/runs/7/summary.md",
  worktree: "/home/o/worktrees/acme/web/12",
  branch: "overseer/12-fix-login",
  base: "main",
  issue: 12,
  repo: "acme/web",
};

/** The one-line message a file produces, or a failure if it parses. */
function errorOf(yaml: string): string {
  try {
    parseWorkerProfiles(yaml, SOURCE);
  } catch (error) {
    expect(error).toBeInstanceOf(WorkerProfileError);
    const message = (error as Error).message;
    expect(message).not.toContain("\n");
    expect(message.startsWith(`OVERSEER_WORKERS (${SOURCE}): `)).toBe(true);
    return message;
  }
  throw new Error("expected the file to be rejected");
}

describe("parseWorkerProfiles", () => {
  it("reads a valid file with units and defaults", () => {
    const profiles = parseWorkerProfiles(VALID, SOURCE);
    expect(profiles.default).toBe("claude");
    expect([...profiles.profiles.keys()]).toEqual(["claude", "aider", "script"]);
    expect(profiles.profiles.get("claude")).toEqual({
      name: "claude",
      command: ["claude", "-p", "--permission-mode", "acceptEdits"],
      stdin: "prompt",
      env: ["ANTHROPIC_API_KEY"],
      timeoutMs: 3_600_000,
      idleTimeoutMs: 900_000,
      logLimitBytes: 50 * 1024 * 1024,
      graceMs: 10_000,
      sandbox: { writable: [], readable: [], network: true },
      logFormat: "text",
    });
    expect(profiles.profiles.get("aider")).toMatchObject({
      stdin: "none",
      env: ["OPENAI_API_KEY"],
      timeoutMs: 90_000,
      idleTimeoutMs: 7_200_000,
      logLimitBytes: 512 * 1024,
      graceMs: 10_000,
    });
    expect(profiles.profiles.get("script")).toMatchObject({
      timeoutMs: 3_600_000,
      idleTimeoutMs: 900_000,
      logLimitBytes: 50 * 1024 * 1024,
      env: [],
    });
  });

  it("needs no default when there is exactly one profile", () => {
    const profiles = parseWorkerProfiles("profiles:\n  only:\n    command: [run]\n", SOURCE);
    expect(profiles.default).toBe("only");
  });

  it.each([
    [
      "an unknown top-level key",
      "profiles: {a: {command: [x]}}\nworkers: 2\n",
      "workers: unknown key (expected one of: default, profiles)",
    ],
    [
      "an unknown profile key",
      "profiles: {claude: {command: [x], timout: 5m}}\n",
      "profiles.claude.timout: unknown key (expected one of: command, stdin, env, timeout, idle_timeout, log_limit, grace, log_format, sandbox, concurrency, repositories, usage_limits)",
    ],
    [
      "a command written as a shell string",
      'profiles: {claude: {command: "claude -p --permission-mode acceptEdits"}}\n',
      "profiles.claude.command: expected an argv list like [claude, -p], not a shell string",
    ],
    [
      "an unknown placeholder",
      'profiles: {aider: {command: [aider, --message-file, "{prompt}"]}}\n',
      "profiles.aider.command[2]: unknown placeholder {prompt}",
    ],
    [
      "a duration without a known unit",
      "profiles: {claude: {command: [x], timeout: soon}}\n",
      'profiles.claude.timeout: expected a duration like 30s, 15m or 2h, got "soon"',
    ],
    [
      "a bare number as a duration",
      "profiles: {claude: {command: [x], idle_timeout: 600}}\n",
      "profiles.claude.idle_timeout: expected a duration like 30s, 15m or 2h, got 600",
    ],
    [
      "a bad size",
      "profiles: {claude: {command: [x], log_limit: 5 MiB}}\n",
      'profiles.claude.log_limit: expected a size like 512KB, 50MB or 1GB, got "5 MiB"',
    ],
    [
      "a default naming no profile",
      "default: claude\nprofiles: {aider: {command: [aider]}}\n",
      'default: no profile named "claude"; profiles: aider',
    ],
    [
      "no default among several profiles",
      "profiles: {a: {command: [x]}, b: {command: [y]}}\n",
      "default: required when there is more than one profile; one of: a, b",
    ],
    ["a missing command", "profiles: {a: {stdin: prompt}}\n", "profiles.a.command: required"],
    [
      "an empty command",
      "profiles: {a: {command: []}}\n",
      "profiles.a.command: expected an argv list naming at least the program",
    ],
    [
      "an unquoted number in argv",
      "profiles: {a: {command: [aider, --retries, 3]}}\n",
      "profiles.a.command[2]: expected a string, got 3",
    ],
    [
      "an unknown stdin mode",
      "profiles: {a: {command: [x], stdin: file}}\n",
      'profiles.a.stdin: expected "prompt" or "none", got "file"',
    ],
    [
      "an env entry with a value",
      "profiles: {a: {command: [x], env: [KEY=value]}}\n",
      "profiles.a.env[0]: expected a variable name",
    ],
    [
      "an OVERSEER_* pass-through",
      "profiles: {a: {command: [x], env: [OVERSEER_ADMIN_TOKEN]}}\n",
      "OVERSEER_* variables are set by Overseer",
    ],
    ["no profiles", "default: a\n", "profiles: required"],
    ["an empty file", "", 'expected a mapping with "default" and "profiles"'],
    ["broken YAML", "profiles: {a: [\n", "invalid YAML: "],
    [
      "a duplicate profile",
      "profiles:\n  a: {command: [x]}\n  a: {command: [y]}\n",
      "invalid YAML",
    ],
    [
      "a profile name that is an object key trap",
      'profiles: {"__proto__": {command: [x]}}\n',
      "profiles.__proto__: not allowed",
    ],
  ])("rejects %s with one line naming the key", (_name, yaml, expected) => {
    expect(errorOf(yaml)).toContain(expected);
  });

  it("formats the whole line as operators will see it", () => {
    expect(errorOf("profiles: {claude: {command: [x], timeout: soon}}\n")).toBe(
      'OVERSEER_WORKERS (/etc/w.yml): profiles.claude.timeout: expected a duration like 30s, 15m or 2h, got "soon"',
    );
  });
});

describe("loadWorkerProfiles", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "overseer-workers-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("loads a file and names it in errors", async () => {
    const good = path.join(dir, "good.yml");
    await writeFile(good, VALID);
    expect((await loadWorkerProfiles(good)).source).toBe(good);

    const bad = path.join(dir, "bad.yml");
    await writeFile(bad, "profiles: {a: {command: x}}\n");
    await expect(loadWorkerProfiles(bad)).rejects.toThrow(
      `OVERSEER_WORKERS (${bad}): profiles.a.command: expected an argv list`,
    );
    await expect(loadWorkerProfiles(path.join(dir, "missing.yml"))).rejects.toThrow(
      /cannot read the file \(ENOENT\)/,
    );
  });
});

describe("resolveProfile", () => {
  const profiles = parseWorkerProfiles(VALID, SOURCE);

  it("picks the named profile, or the default", () => {
    expect(resolveProfile(profiles, "aider").name).toBe("aider");
    expect(resolveProfile(profiles).name).toBe("claude");
  });

  it("lists the known names for an unknown one", () => {
    expect(() => resolveProfile(profiles, "codex")).toThrow(
      'unknown worker profile "codex" (/etc/w.yml); known profiles: claude, aider, script',
    );
    // A plain object would answer these from its prototype.
    expect(() => resolveProfile(profiles, "constructor")).toThrow(WorkerProfileError);
    expect(() => resolveProfile(profiles, "toString")).toThrow(WorkerProfileError);
  });
});

describe("expandArgv", () => {
  const profiles = parseWorkerProfiles(VALID, SOURCE);

  it("fills placeholders inside argv elements, keeping escaped braces literal", () => {
    expect(expandArgv(resolveProfile(profiles, "aider"), VALUES)).toEqual([
      "aider",
      "--yes-always",
      "--message-file",
      "/runs/7/prompt.md",
    ]);
    expect(expandArgv(resolveProfile(profiles, "script"), VALUES)).toEqual([
      "sh",
      "-c",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: {{HOME}} must come out as a literal ${HOME}
      'echo "${HOME}" > /runs/7/summary.md',
      "acme/web#12",
      "/home/o/worktrees/acme/web/12:overseer/12-fix-login:main",
    ]);
  });

  it("never splits a value into more arguments", () => {
    const argv = expandArgv(resolveProfile(profiles, "aider"), {
      ...VALUES,
      promptFile: "/tmp/a b; rm -rf / #",
    });
    expect(argv).toHaveLength(4);
    expect(argv[3]).toBe("/tmp/a b; rm -rf / #");
  });
});

describe("workerEnv", () => {
  const profiles = parseWorkerProfiles(VALID, SOURCE);

  it("passes PATH, HOME, the listed names and OVERSEER_* only", () => {
    const host = {
      PATH: "/usr/bin",
      HOME: "/home/o",
      ANTHROPIC_API_KEY: "sk-ant-123456789",
      OPENAI_API_KEY: "sk-openai",
      OVERSEER_ADMIN_TOKEN: "do-not-leak-this-token",
      DATABASE_URL: "postgres://secret",
    };
    const { env, secrets } = workerEnv(resolveProfile(profiles, "claude"), VALUES, host);
    expect(env).toEqual({
      PATH: "/usr/bin",
      HOME: "/home/o",
      ANTHROPIC_API_KEY: "sk-ant-123456789",
      OVERSEER_PROMPT_FILE: "/runs/7/prompt.md",
      OVERSEER_SUMMARY_FILE: "/runs/7/summary.md",
      OVERSEER_WORKTREE: "/home/o/worktrees/acme/web/12",
      OVERSEER_BRANCH: "overseer/12-fix-login",
      OVERSEER_BASE: "main",
      OVERSEER_ISSUE: "12",
      OVERSEER_REPO: "acme/web",
    });
    expect(secrets).toEqual(["sk-ant-123456789"]);
  });
});

describe("DEFAULT_WORKER_PROFILES", () => {
  it("has one profile, none, that fails clearly with EX_CONFIG", () => {
    const profile = resolveProfile(DEFAULT_WORKER_PROFILES);
    expect(profile.name).toBe("none");
    expect([...DEFAULT_WORKER_PROFILES.profiles.keys()]).toEqual(["none"]);
    const script = expandArgv(profile, VALUES).join(" ");
    expect(script).toContain("set OVERSEER_WORKERS");
    expect(script).toContain(`exit ${NO_PROFILE_EXIT_CODE}`);
  });
});

describe("durations and sizes", () => {
  it("parses the documented units", () => {
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("1.5h")).toBe(5_400_000);
    expect(parseDuration("0s")).toBeUndefined();
    expect(parseDuration("15")).toBeUndefined();
    expect(parseDuration("15M")).toBeUndefined();
    expect(parseSize("512B")).toBe(512);
    expect(parseSize("64kb")).toBe(65_536);
    expect(parseSize("1GB")).toBe(1024 ** 3);
    expect(parseSize("50")).toBeUndefined();
  });
});
