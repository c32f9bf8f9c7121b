import { describe, expect, it } from "vitest";
import { parseWorkerProfiles, type WorkerProfile } from "../../src/config/workers.js";
import { builtinAgentOf, detectUsageLimit, resetTimeIn } from "../../src/runner/usage-limits.js";

const NOW = new Date("2025-06-02T10:20:00Z");

function profileOf(yaml: string): WorkerProfile {
  const profiles = parseWorkerProfiles(`profiles:\n  p:\n${yaml}`, "test");
  const profile = profiles.profiles.get("p");
  if (!profile) throw new Error("no profile");
  return profile;
}

const claude = profileOf("    command: [claude, -p]\n");
const codex = profileOf('    command: [codex, exec, "-"]\n');
const aider = profileOf("    command: [/usr/local/bin/aider, --yes-always]\n");
const script = profileOf("    command: [./agent.sh]\n");

describe("built-in rules by program", () => {
  it("come from the program's name, or from usage_limits.builtin", () => {
    expect(builtinAgentOf(claude)).toBe("claude");
    expect(builtinAgentOf(codex)).toBe("codex");
    expect(builtinAgentOf(aider)).toBe("aider");
    expect(builtinAgentOf(script)).toBeNull();
    expect(
      builtinAgentOf(
        profileOf("    command: [sh, -c, claude]\n    usage_limits: { builtin: claude }\n"),
      ),
    ).toBe("claude");
    expect(
      builtinAgentOf(profileOf("    command: [claude]\n    usage_limits: { builtin: none }\n")),
    ).toBeNull();
    expect(
      builtinAgentOf(profileOf("    command: [claude]\n    usage_limits: false\n")),
    ).toBeNull();
  });

  it.each([
    [
      claude,
      "You've hit your limit · resets 1pm (Europe/Lisbon)",
      "usage_limit",
      "2025-06-02T12:00:00.000Z",
    ],
    [
      claude,
      "You’ve hit your session limit · resets 12:50am (America/Los_Angeles)",
      "usage_limit",
      "2025-06-03T07:50:00.000Z",
    ],
    [
      claude,
      "Claude usage limit reached. Your limit will reset at 9am (America/Chicago).",
      "usage_limit",
      "2025-06-02T14:00:00.000Z",
    ],
    [claude, "Claude AI usage limit reached|1748863200", "usage_limit", "2025-06-02T11:20:00.000Z"],
    [
      claude,
      '{"type":"result","is_error":true,"result":"Claude AI usage limit reached|1748863200"}',
      "usage_limit",
      "2025-06-02T11:20:00.000Z",
    ],
    [
      claude,
      'API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed your rate limit"}}',
      "rate_limit",
      null,
    ],
    [claude, "Invalid API key · Please run /login", "auth", null],
    [
      claude,
      'API Error: 401 {"type":"error","error":{"type":"authentication_error"}}',
      "auth",
      null,
    ],
    [
      codex,
      "■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in 2 days 17 hours 14 minutes.",
      "usage_limit",
      "2025-06-05T03:34:00.000Z",
    ],
    [
      codex,
      "You've hit your usage limit. Upgrade your plan, or try again at Jun 5th, 2025 8:19 PM.",
      "usage_limit",
      null,
    ],
    [
      codex,
      'Error: {"type":"error","error":{"type":"usage_limit_reached","resets_in_seconds":13872}}',
      "usage_limit",
      "2025-06-02T14:11:12.000Z",
    ],
    [
      codex,
      "stream error: exceeded retry limit, last status: 429 Too Many Requests",
      "rate_limit",
      null,
    ],
    [codex, "unexpected status 401 Unauthorized: token_expired", "auth", null],
    [aider, "litellm.RateLimitError: AnthropicException - rate limited", "rate_limit", null],
    [
      aider,
      "The API provider has rate limited you. Try again later or check your quotas.",
      "rate_limit",
      null,
    ],
    [
      aider,
      "Error code: 429 - insufficient_quota: You exceeded your current quota",
      "usage_limit",
      null,
    ],
    [aider, "litellm.AuthenticationError: AnthropicException - invalid x-api-key", "auth", null],
  ] as const)("%#: %s", (profile, output, kind, reset) => {
    const found = detectUsageLimit(profile, { exitCode: 1 }, `working...\n${output}\n`, NOW);
    expect(found?.kind).toBe(kind);
    expect(found?.evidence).toBe(output.trim().slice(0, 300));
    if (reset === null) {
      // "try again at Jun 5th, 2025 8:19 PM" is in the host's zone: only its presence is checked.
      if (output.includes("try again at")) expect(found?.resetAt).toBeInstanceOf(Date);
      else expect(found?.resetAt).toBeNull();
    } else {
      expect(found?.resetAt?.toISOString()).toBe(reset);
    }
  });
});

describe("not limits", () => {
  it("an ordinary failure is not a limit, nor another agent's message", () => {
    expect(
      detectUsageLimit(claude, { exitCode: 1 }, "TypeError: x is undefined\n", NOW),
    ).toBeNull();
    expect(
      detectUsageLimit(aider, { exitCode: 1 }, "You've hit your limit · resets 1pm\n", NOW),
    ).toBeNull();
    expect(detectUsageLimit(script, { exitCode: 1 }, "rate_limit_error\n", NOW)).toBeNull();
  });

  it("only the end of the log counts: a limit hit and recovered from long ago does not", () => {
    const tail = `API Error: 429 rate_limit_error\n${"step done\n".repeat(600)}exit: tests failed\n`;
    expect(detectUsageLimit(claude, { exitCode: 1 }, tail, NOW)).toBeNull();
  });

  it("usage_limits: false turns detection off", () => {
    const off = profileOf("    command: [claude]\n    usage_limits: false\n");
    expect(
      detectUsageLimit(off, { exitCode: 1 }, "You've hit your limit · resets 1pm", NOW),
    ).toBeNull();
  });
});

describe("a profile's own rules", () => {
  const own = profileOf(
    [
      "    command: [./wrapper.sh]",
      "    usage_limits:",
      '      patterns: ["quota of \\\\d+ requests used"]',
      "      auth_patterns: [not logged in]",
      "      exit_codes: [75]",
      "      backoff: 2m",
      "",
    ].join("\n"),
  );

  it("patterns, auth patterns and exit codes", () => {
    expect(own.usageLimits).toMatchObject({ exitCodes: [75], backoffMs: 120_000 });
    expect(
      detectUsageLimit(own, { exitCode: 1 }, "daily quota of 500 requests used", NOW)?.kind,
    ).toBe("usage_limit");
    expect(detectUsageLimit(own, { exitCode: 1 }, "Error: Not Logged In", NOW)?.kind).toBe("auth");
    expect(detectUsageLimit(own, { exitCode: 75 }, "bye", NOW)).toEqual({
      kind: "usage_limit",
      evidence: "exit status 75",
      resetAt: null,
    });
    expect(detectUsageLimit(own, { exitCode: 74 }, "bye", NOW)).toBeNull();
  });

  it("a pattern that is no regular expression stops the start, naming the key", () => {
    expect(() =>
      profileOf('    command: [x]\n    usage_limits: { patterns: ["(unclosed"] }\n'),
    ).toThrow(/profiles\.p\.usage_limits\.patterns\[0\]: not a regular expression/);
    expect(() => profileOf("    command: [x]\n    usage_limits: { pattern: [a] }\n")).toThrow(
      /profiles\.p\.usage_limits\.pattern: unknown key \(expected one of: builtin, patterns, auth_patterns, exit_codes, backoff\)/,
    );
  });
});

describe("reset times", () => {
  it.each([
    ["try again in 20s", "2025-06-02T10:20:20.000Z"],
    ["Please try again in 6m0s.", "2025-06-02T10:26:00.000Z"],
    ["try again in 1 hour and 30 minutes", "2025-06-02T11:50:00.000Z"],
    ["resets 11am (UTC)", "2025-06-02T11:00:00.000Z"],
    // A clock time minutes ago: the limit has just reset, not a day from now.
    ["resets 10:10am (UTC)", "2025-06-02T10:21:00.000Z"],
    ["resets 10:00am (UTC)", "2025-06-03T10:00:00.000Z"],
    ["resets 9am (UTC)", "2025-06-03T09:00:00.000Z"],
    ["resets 3pm (Not/AZone)", null],
    ["Claude AI usage limit reached|1900000000", null],
    ["resets 7 items", null],
    ["try again in 30 days", null],
  ])("%s", (text, expected) => {
    const at = resetTimeIn(text, NOW);
    if (text.includes("Not/AZone")) {
      // An unknown zone reads the clock in this host's zone: some time in the next day.
      expect(at).toBeInstanceOf(Date);
      return;
    }
    expect(at?.toISOString() ?? null).toBe(expected);
  });
});
