import path from "node:path";
import type { BuiltinAgent, UsageLimitRules, WorkerProfile } from "../config/workers.js";
import { BUILTIN_AGENTS } from "../config/workers.js";
import type { PauseKind } from "../db/profiles.js";

/**
 * Recognises an agent that stopped because of its usage or rate limit, or because it could
 * not authenticate, from its exit status and the end of its log. Pure: the clock is passed
 * in. Such a run is nobody's failure: it costs no attempt, and the profile waits until the
 * reset the agent reported (or a backoff when it said none).
 *
 * Each profile gets the built-in rules of the program it runs (Claude Code, Codex CLI,
 * Aider; `usage_limits.builtin` names one for wrapper scripts) plus its own
 * `usage_limits` patterns and exit codes.
 */

export interface LimitDetection {
  kind: PauseKind;
  /** The line of output that said so (capped), or the exit status. */
  evidence: string;
  /** When the agent said the limit resets; null when it did not (or not believably). */
  resetAt: Date | null;
}

interface Rule {
  kind: PauseKind;
  pattern: RegExp;
}

/** Messages as these agents print them (or embed them in their JSON output). */
const BUILTIN_RULES: Record<BuiltinAgent, readonly Rule[]> = {
  claude: [
    // "You've hit your limit · resets 1pm (Europe/Lisbon)", "… your session limit · …",
    // "Claude usage limit reached. Your limit will reset at 9am (America/Chicago).",
    // "Claude AI usage limit reached|1766502000"
    { kind: "usage_limit", pattern: /\byou(?:'|’)ve hit your (?:[a-z-]+ )?limit\b/i },
    { kind: "usage_limit", pattern: /\bClaude(?: AI)? usage limit reached\b/i },
    { kind: "rate_limit", pattern: /\brate_limit_error\b|\bAPI Error: 429\b/ },
    { kind: "rate_limit", pattern: /\boverloaded_error\b|\bAPI Error: 529\b/ },
    { kind: "auth", pattern: /\bauthentication_error\b|\bAPI Error: 401\b/ },
    {
      kind: "auth",
      pattern: /\bInvalid API key\b|\bOAuth token (?:has )?expired\b|Please run \/login\b/i,
    },
  ],
  codex: [
    // "You've hit your usage limit. Upgrade to Pro (…) or try again in 2 days 17 hours 14 minutes."
    { kind: "usage_limit", pattern: /\byou(?:'|’)ve hit your usage limit\b/i },
    { kind: "usage_limit", pattern: /\busage_limit_reached\b/ },
    { kind: "rate_limit", pattern: /\b429 Too Many Requests\b|\brate_limit_exceeded\b/i },
    { kind: "auth", pattern: /\b401 Unauthorized\b|\btoken_expired\b|\binvalid_api_key\b/i },
    {
      kind: "auth",
      pattern: /\bIncorrect API key provided\b|access token could not be refreshed/i,
    },
  ],
  aider: [
    {
      kind: "rate_limit",
      pattern: /\blitellm\.RateLimitError\b|The API provider has rate limited you/i,
    },
    { kind: "usage_limit", pattern: /\binsufficient_quota\b|exceeded your current quota/i },
    { kind: "usage_limit", pattern: /\bcredit balance is too low\b/i },
    { kind: "auth", pattern: /\blitellm\.AuthenticationError\b|\bIncorrect API key provided\b/i },
  ],
};

/** Only the end of the log is read: the agent's last words, not what it printed while working. */
export const LIMIT_LOG_TAIL_BYTES = 4_096;
/** A reported reset further out than this is not believed (a parsing accident, or a typo). */
const MAX_RESET_AHEAD_MS = 8 * 24 * 3_600_000;

/** The built-in rule set for a profile: named, or that of the program its command runs. */
export function builtinAgentOf(profile: WorkerProfile): BuiltinAgent | null {
  const rules = profile.usageLimits;
  if (rules === false) return null;
  if (rules?.builtin) return rules.builtin === "none" ? null : rules.builtin;
  const program = path.basename(profile.command[0] ?? "").replace(/\.(?:exe|cmd|js|sh)$/i, "");
  return (BUILTIN_AGENTS as readonly string[]).includes(program) ? (program as BuiltinAgent) : null;
}

function rulesOf(profile: WorkerProfile): { rules: Rule[]; own: UsageLimitRules | null } {
  if (profile.usageLimits === false) return { rules: [], own: null };
  const own = profile.usageLimits ?? null;
  const agent = builtinAgentOf(profile);
  const rules: Rule[] = [
    ...(own?.patterns ?? []).map((pattern) => ({ kind: "usage_limit" as const, pattern })),
    ...(own?.authPatterns ?? []).map((pattern) => ({ kind: "auth" as const, pattern })),
    ...(agent ? BUILTIN_RULES[agent] : []),
  ];
  return { rules, own };
}

/**
 * The limit the worker ran into, or null. Called for a worker that exited (any status)
 * without work to publish: a limited agent may exit 0 after saying so.
 */
export function detectUsageLimit(
  profile: WorkerProfile,
  exit: { exitCode: number | null },
  logTail: string,
  now: Date,
): LimitDetection | null {
  const { rules, own } = rulesOf(profile);
  const tail = logTail.slice(-LIMIT_LOG_TAIL_BYTES);
  for (const rule of rules) {
    const match = rule.pattern.exec(tail);
    if (!match) continue;
    return {
      kind: rule.kind,
      evidence: lineAround(tail, match.index),
      resetAt: resetTimeIn(tail, now),
    };
  }
  if (exit.exitCode !== null && own?.exitCodes.includes(exit.exitCode)) {
    return {
      kind: "usage_limit",
      evidence: `exit status ${exit.exitCode}`,
      resetAt: resetTimeIn(tail, now),
    };
  }
  return null;
}

function lineAround(text: string, index: number): string {
  const start = text.lastIndexOf("\n", index) + 1;
  const end = text.indexOf("\n", index);
  return text
    .slice(start, end === -1 ? text.length : end)
    .trim()
    .slice(0, 300);
}

// ---------------------------------------------------------------------------------------
// When the limit resets, as the agent put it
// ---------------------------------------------------------------------------------------

const UNIT_MS: Record<string, number> = {
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
  h: 3_600_000,
  hr: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
  m: 60_000,
  min: 60_000,
  mins: 60_000,
  minute: 60_000,
  minutes: 60_000,
  s: 1_000,
  sec: 1_000,
  secs: 1_000,
  second: 1_000,
  seconds: 1_000,
};

/**
 * The first believable reset time in the text: an epoch after `|` (Claude Code) or in
 * `resets_at` (Codex JSON), seconds in `resets_in_seconds`, "try again in 2 hours 5
 * minutes" / "in 6m0s", "try again at Jul 5th, 2026 8:19 PM", or a clock time "resets
 * 1pm (Europe/Lisbon)" / "will reset at 9am" (in the zone given, else this host's).
 */
export function resetTimeIn(text: string, now: Date): Date | null {
  const candidates = [
    epochAfter(text, /usage limit reached\|(\d{10})\b/i),
    epochAfter(text, /"resets_at"\s*:\s*(\d{10})\b/),
    secondsFrom(text, now),
    durationFrom(text, now),
    dateFrom(text, now),
    clockFrom(text, now),
  ];
  for (const candidate of candidates) {
    if (candidate && believable(candidate, now)) return candidate;
  }
  return null;
}

function believable(at: Date, now: Date): boolean {
  const ahead = at.getTime() - now.getTime();
  return Number.isFinite(ahead) && ahead > 0 && ahead <= MAX_RESET_AHEAD_MS;
}

function epochAfter(text: string, pattern: RegExp): Date | null {
  const match = pattern.exec(text);
  return match ? new Date(Number(match[1]) * 1000) : null;
}

function secondsFrom(text: string, now: Date): Date | null {
  const match = /"resets_in_seconds"\s*:\s*(\d+)/.exec(text);
  return match ? new Date(now.getTime() + Number(match[1]) * 1000) : null;
}

function durationFrom(text: string, now: Date): Date | null {
  const match =
    /\b(?:try again|retry|resets?) in ((?:\d+(?:\.\d+)?\s*(?:days?|hours?|hrs?|minutes?|mins?|seconds?|secs?|[dhms])(?![a-z])[\s,]*(?:and\s+)?)+)/i.exec(
      text,
    );
  if (!match?.[1]) return null;
  let ms = 0;
  for (const part of match[1].matchAll(/(\d+(?:\.\d+)?)\s*([a-z]+)/gi)) {
    ms += Number(part[1]) * (UNIT_MS[(part[2] ?? "").toLowerCase()] ?? 0);
  }
  return ms > 0 ? new Date(now.getTime() + Math.ceil(ms)) : null;
}

function dateFrom(text: string, now: Date): Date | null {
  const match =
    /\btry again at ([A-Z][a-z]{2,8} \d{1,2}(?:st|nd|rd|th)?,? \d{4},? \d{1,2}:\d{2}\s*[AP]M)/i.exec(
      text,
    );
  if (!match?.[1]) return null;
  const parsed = new Date(match[1].replace(/(\d)(st|nd|rd|th)/i, "$1").replace(/,/g, ""));
  return Number.isNaN(parsed.getTime()) || parsed <= now ? null : parsed;
}

/** A reset said as a clock time a moment ago most likely means "now": not a day ahead. */
const JUST_PASSED_MS = 15 * 60_000;

function clockFrom(text: string, now: Date): Date | null {
  const match =
    /\breset(?:s| at|s at)?\s+(?:at\s+)?(\d{1,2})(?::(\d{2}))?\s*(am|pm)?\b\s*(?:\(([A-Za-z]+(?:\/[A-Za-z0-9_+-]+)+|UTC)\))?/i.exec(
      text,
    );
  if (!match) return null;
  let hour = Number(match[1]);
  const minute = Number(match[2] ?? 0);
  const meridiem = match[3]?.toLowerCase();
  if (!meridiem && match[2] === undefined) return null; // a bare number is no clock time
  if (hour > 23 || minute > 59 || (meridiem && (hour < 1 || hour > 12))) return null;
  if (meridiem === "pm" && hour < 12) hour += 12;
  if (meridiem === "am" && hour === 12) hour = 0;
  const zone = match[4];
  let at = zonedToday(now, hour, minute, zone);
  if (at === null) return null;
  if (at.getTime() <= now.getTime()) {
    at =
      now.getTime() - at.getTime() <= JUST_PASSED_MS
        ? new Date(now.getTime() + 60_000)
        : (zonedToday(new Date(now.getTime() + 86_400_000), hour, minute, zone) ?? null);
  }
  return at;
}

/** hour:minute on the calendar day `day` falls on in `zone` (this host's zone without one). */
function zonedToday(
  day: Date,
  hour: number,
  minute: number,
  zone: string | undefined,
): Date | null {
  let format: Intl.DateTimeFormat;
  try {
    format = new Intl.DateTimeFormat("en-US", {
      ...(zone ? { timeZone: zone } : {}),
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
  } catch {
    return zone ? zonedToday(day, hour, minute, undefined) : null;
  }
  const wall = (at: Date) => {
    const parts = Object.fromEntries(format.formatToParts(at).map((p) => [p.type, p.value]));
    return Date.UTC(
      Number(parts.year),
      Number(parts.month) - 1,
      Number(parts.day),
      Number(parts.hour) % 24,
      Number(parts.minute),
      Number(parts.second),
    );
  };
  const today = new Date(wall(day));
  const target = Date.UTC(
    today.getUTCFullYear(),
    today.getUTCMonth(),
    today.getUTCDate(),
    hour,
    minute,
  );
  // The zone's offset at the target, found from its offset at a first guess (twice, for DST).
  let guess = target - (wall(day) - day.getTime());
  guess = target - (wall(new Date(guess)) - guess);
  return new Date(guess);
}
