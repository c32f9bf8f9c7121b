import { readFile } from "node:fs/promises";
import { parseDocument } from "yaml";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { describeInput as describe, durationSchema, sizeSchema } from "./durations.js";

/**
 * Worker profiles: the operator's file (path in OVERSEER_WORKERS) that decides which
 * programs may run on this host. A repository can only pick a profile by name, so
 * everything that reaches a command line comes from here or from values Overseer makes
 * itself (paths, branch names), never from issue text.
 *
 * Without OVERSEER_WORKERS, DEFAULT_WORKER_PROFILES applies: one profile, `none`, whose
 * command fails at once with exit status 78 (EX_CONFIG) and a line on stderr telling the
 * operator to set OVERSEER_WORKERS. Overseer still starts (webhooks, dashboard, doctor
 * work), and each run fails visibly instead of some guessed agent being launched.
 */

export const PLACEHOLDERS = [
  "prompt_file",
  "summary_file",
  "worktree",
  "branch",
  "base",
  "issue",
  "repo",
] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];

/** Values for the argv placeholders; all are made by Overseer, none is issue text. */
export interface PlaceholderValues {
  promptFile: string;
  summaryFile: string;
  worktree: string;
  branch: string;
  base: string;
  issue: number;
  /** owner/name */
  repo: string;
}

const PLACEHOLDER_VALUE: Record<Placeholder, (values: PlaceholderValues) => string> = {
  prompt_file: (v) => v.promptFile,
  summary_file: (v) => v.summaryFile,
  worktree: (v) => v.worktree,
  branch: (v) => v.branch,
  base: (v) => v.base,
  issue: (v) => String(v.issue),
  repo: (v) => v.repo,
};

/** The same values, as the OVERSEER_* variables every worker gets. */
const PLACEHOLDER_ENV: Record<Placeholder, string> = {
  prompt_file: "OVERSEER_PROMPT_FILE",
  summary_file: "OVERSEER_SUMMARY_FILE",
  worktree: "OVERSEER_WORKTREE",
  branch: "OVERSEER_BRANCH",
  base: "OVERSEER_BASE",
  issue: "OVERSEER_ISSUE",
  repo: "OVERSEER_REPO",
};

/**
 * How a profile's worker writes its log, so that Overseer can show it as a conversation:
 * plain text, Claude Code's `--output-format stream-json`, or Codex's `exec --json`.
 */
export const LOG_FORMATS = ["text", "claude-stream-json", "codex-json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface WorkerProfile {
  name: string;
  /** argv, possibly with placeholders; expand with expandArgv. */
  command: readonly string[];
  /** "prompt": the prompt file is the worker's stdin; "none": stdin is /dev/null. */
  stdin: "prompt" | "none";
  /** Host variables passed through by name (besides PATH, HOME and OVERSEER_*). */
  env: readonly string[];
  timeoutMs: number;
  idleTimeoutMs: number;
  logLimitBytes: number;
  graceMs: number;
  logFormat: LogFormat;
  /** At most this many runs of the profile at once, across every runner; absent: no limit. */
  concurrency?: number;
  /**
   * Repositories that may run this profile (by `worker:` or an `agent:` label), as
   * `owner/name` or `owner/*`; absent: every repository.
   */
  repositories?: readonly string[];
  /**
   * How the agent says it is at its usage or rate limit, or cannot authenticate; absent:
   * the built-in rules for the program (see runner/usage-limits.ts); false: never.
   */
  usageLimits?: UsageLimitRules | false;
  /** How the worker is confined; null when the operator wrote `sandbox: false`. */
  sandbox: SandboxPolicy | null;
}

/**
 * What a sandboxed worker may reach besides its worktree, the system (read-only) and a
 * private /tmp and HOME. Paths are absolute or start with `~` (the runner user's home).
 */
export interface SandboxPolicy {
  /** Host paths it may change (say, `~/.claude` for a logged-in Claude Code). */
  writable: readonly string[];
  /** Host paths it may read. */
  readable: readonly string[];
  /** false: no network at all (only its own loopback). */
  network: boolean;
}

export const DEFAULT_SANDBOX: SandboxPolicy = { writable: [], readable: [], network: true };

/** A profile's own rules for recognising a limited agent, beside or instead of the built-in ones. */
export interface UsageLimitRules {
  /** Built-in patterns to use: by default those of the program the command runs. */
  builtin?: BuiltinAgent | "none";
  /** Output (the end of the run's log) that means a usage or rate limit. */
  patterns: readonly RegExp[];
  /** Output that means the agent could not authenticate. */
  authPatterns: readonly RegExp[];
  /** Exit statuses that mean a limit on their own. */
  exitCodes: readonly number[];
  /** First pause when the agent gives no reset time (default OVERSEER_USAGE_LIMIT_BACKOFF). */
  backoffMs?: number;
}

export const BUILTIN_AGENTS = ["claude", "codex", "aider"] as const;
export type BuiltinAgent = (typeof BUILTIN_AGENTS)[number];

export interface WorkerProfiles {
  /** Where the profiles came from, for messages ("built-in" for the fallback). */
  source: string;
  default: string;
  /** A Map, so that names such as "constructor" cannot resolve to Object's own properties. */
  profiles: ReadonlyMap<string, WorkerProfile>;
}

export class WorkerProfileError extends ConfigError {
  override name = "WorkerProfileError";
}

export const DEFAULT_TIMEOUT_MS = 60 * 60_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 15 * 60_000;
export const DEFAULT_LOG_LIMIT_BYTES = 50 * 1024 ** 2;
export const DEFAULT_GRACE_MS = 10_000;

/** Exit status of the built-in `none` profile: EX_CONFIG from sysexits.h. */
export const NO_PROFILE_EXIT_CODE = 78;

export const DEFAULT_WORKER_PROFILES: WorkerProfiles = {
  source: "built-in",
  default: "none",
  profiles: new Map([
    [
      "none",
      {
        name: "none",
        command: [
          "sh",
          "-c",
          `echo "no worker profile configured: set OVERSEER_WORKERS to a worker-profile file" >&2; exit ${NO_PROFILE_EXIT_CODE}`,
        ],
        stdin: "none",
        env: [],
        timeoutMs: DEFAULT_TIMEOUT_MS,
        idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS,
        logLimitBytes: DEFAULT_LOG_LIMIT_BYTES,
        graceMs: DEFAULT_GRACE_MS,
        logFormat: "text",
        // Overseer's own fixed line, not an agent: nothing to confine.
        sandbox: null,
      },
    ],
  ]),
};

// `{word}` is a placeholder; `{{word}}` is the literal text `{word}` (for `sh -c` scripts
// that use `${VAR}`). Braces around anything else (awk programs, JSON) are left alone.
const PLACEHOLDER_PATTERN = /\{\{(\w+)\}\}|\{(\w+)\}/g;

function isPlaceholder(word: string): word is Placeholder {
  return (PLACEHOLDERS as readonly string[]).includes(word);
}

const argument = z
  .string({
    // YAML turns 3 into a number and 1.10 into 1.1; quoting keeps the operator's text.
    error: (issue) =>
      `expected a string, got ${describe(issue.input)} (quote numbers and booleans, e.g. "3")`,
  })
  .superRefine((arg, ctx) => {
    for (const match of arg.matchAll(PLACEHOLDER_PATTERN)) {
      const word = match[2];
      if (word !== undefined && !isPlaceholder(word)) {
        ctx.addIssue({
          code: "custom",
          message: `unknown placeholder {${word}} (known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(", ")}; write {{${word}}} for a literal {${word}})`,
        });
      }
    }
  });

const command = z
  .array(argument, {
    error: (issue) =>
      typeof issue.input === "string"
        ? `expected an argv list like [claude, -p], not a shell string: write each argument as its own list item (got ${describe(issue.input)})`
        : `expected an argv list like [claude, -p], got ${describe(issue.input)}`,
  })
  .min(1, { error: "expected an argv list naming at least the program, got an empty list" })
  .refine((argv) => argv[0] !== "", {
    error: "the program (first item) is empty",
    path: [0],
  });

const envName = z
  .string({ error: (issue) => `expected a variable name, got ${describe(issue.input)}` })
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
    error: (issue) =>
      `expected a variable name like ANTHROPIC_API_KEY (values come from the host), got ${describe(issue.input)}`,
  })
  // OVERSEER_* on the host holds Overseer's own secrets (OVERSEER_ADMIN_TOKEN); the
  // worker gets its OVERSEER_* variables from Overseer, never from the host.
  .refine((name) => !name.startsWith("OVERSEER_"), {
    error: (issue) =>
      `${describe(issue.input)}: OVERSEER_* variables are set by Overseer and cannot be passed through`,
  });

const sandboxPath = z
  .string({ error: (issue) => `expected a path, got ${describe(issue.input)}` })
  .refine((entry) => !hasControl(entry) && (entry.startsWith("/") || /^~(\/|$)/.test(entry)), {
    error: (issue) =>
      `expected an absolute path or one starting with ~/ (the runner user's home), got ${describe(issue.input)}`,
  })
  .refine((entry) => !entry.split("/").includes(".."), {
    error: (issue) => `${describe(issue.input)}: ".." is not allowed in sandbox paths`,
  });

const SANDBOX_KEYS = ["writable", "readable", "network"] as const;

const sandboxMap = z.strictObject(
  {
    writable: z
      .array(sandboxPath, {
        error: (issue) => `expected a list of paths like [~/.claude], got ${describe(issue.input)}`,
      })
      .default([]),
    readable: z
      .array(sandboxPath, {
        error: (issue) =>
          `expected a list of paths like [/opt/tools], got ${describe(issue.input)}`,
      })
      .default([]),
    network: z
      .boolean({ error: (issue) => `expected true or false, got ${describe(issue.input)}` })
      .default(true),
  } satisfies Record<(typeof SANDBOX_KEYS)[number], z.ZodType>,
  {
    error: (issue) =>
      issue.code === "invalid_type"
        ? `expected true, false or a mapping with ${SANDBOX_KEYS.join(", ")}, got ${describe(issue.input)}`
        : undefined,
  },
);

const sandboxSchema = z
  .union([z.boolean(), sandboxMap], {
    error: (issue) =>
      `expected true, false or a mapping with ${SANDBOX_KEYS.join(", ")}, got ${describe(issue.input)}`,
  })
  .default(true);

function hasControl(text: string): boolean {
  return [...text].some((char) => char.charCodeAt(0) < 0x20 || char.charCodeAt(0) === 0x7f);
}

const PROFILE_KEYS = [
  "command",
  "stdin",
  "env",
  "timeout",
  "idle_timeout",
  "log_limit",
  "grace",
  "log_format",
  "sandbox",
  "concurrency",
  "repositories",
  "usage_limits",
] as const;
const USAGE_LIMIT_KEYS = ["builtin", "patterns", "auth_patterns", "exit_codes", "backoff"] as const;

const pattern = z
  .string({ error: (issue) => `expected a regular expression, got ${describe(issue.input)}` })
  .min(1, { error: "expected a regular expression, got an empty string" })
  .transform((source, ctx) => {
    try {
      return new RegExp(source, "i");
    } catch (error) {
      ctx.addIssue({
        code: "custom",
        message: `not a regular expression: ${(error as Error).message}`,
      });
      return z.NEVER;
    }
  });

const usageLimitsSchema = z.union(
  [
    z.literal(false),
    z.strictObject(
      {
        builtin: z
          .enum([...BUILTIN_AGENTS, "none"], {
            error: (issue) =>
              `expected ${[...BUILTIN_AGENTS, "none"].join(", ")}, got ${describe(issue.input)}`,
          })
          .optional(),
        patterns: z.array(pattern).default([]),
        auth_patterns: z.array(pattern).default([]),
        exit_codes: z
          .array(
            z
              .int({ error: (issue) => `expected an exit status, got ${describe(issue.input)}` })
              .min(1)
              .max(255),
          )
          .default([]),
        backoff: durationSchema().optional(),
      } satisfies Record<(typeof USAGE_LIMIT_KEYS)[number], z.ZodType>,
      {
        error: (issue) =>
          issue.code === "invalid_type"
            ? `expected false or a mapping with ${USAGE_LIMIT_KEYS.join(", ")}, got ${describe(issue.input)}`
            : undefined,
      },
    ),
  ],
  {
    error: (issue) =>
      `expected false or a mapping with ${USAGE_LIMIT_KEYS.join(", ")}, got ${describe(issue.input)}`,
  },
);

/** `owner/name`, `owner/*` or `*`: GitHub names are letters, digits, `.`, `_` and `-`. */
const REPOSITORY_PATTERN = /^(\*|[A-Za-z0-9._-]+\/(\*|[A-Za-z0-9._-]+))$/;
const ROOT_KEYS = ["default", "profiles"] as const;

const profileSchema = z.strictObject(
  {
    command,
    stdin: z
      .enum(["prompt", "none"], {
        error: (issue) => `expected "prompt" or "none", got ${describe(issue.input)}`,
      })
      .default("none"),
    env: z
      .array(envName, {
        error: (issue) =>
          `expected a list of variable names like [ANTHROPIC_API_KEY], got ${describe(issue.input)}`,
      })
      .default([]),
    timeout: durationSchema().default(DEFAULT_TIMEOUT_MS),
    idle_timeout: durationSchema().default(DEFAULT_IDLE_TIMEOUT_MS),
    log_limit: sizeSchema().default(DEFAULT_LOG_LIMIT_BYTES),
    grace: durationSchema().default(DEFAULT_GRACE_MS),
    log_format: z
      .enum(LOG_FORMATS, {
        error: (issue) => `expected one of ${LOG_FORMATS.join(", ")}, got ${describe(issue.input)}`,
      })
      .default("text"),
    sandbox: sandboxSchema,
    concurrency: z
      .int({
        error: (issue) => `expected a whole number from 1 to 1000, got ${describe(issue.input)}`,
      })
      .min(1, { error: "expected a whole number from 1 to 1000" })
      .max(1000, { error: "expected a whole number from 1 to 1000" })
      .optional(),
    repositories: z
      .array(
        z
          .string({
            error: (issue) =>
              `expected a repository like acme/widgets or acme/*, got ${describe(issue.input)}`,
          })
          .regex(REPOSITORY_PATTERN, {
            error: (issue) =>
              `expected a repository like acme/widgets or acme/*, got ${describe(issue.input)}`,
          }),
        {
          error: (issue) =>
            `expected a list of repositories like [acme/widgets, acme/*], got ${describe(issue.input)}`,
        },
      )
      .optional(),
    usage_limits: usageLimitsSchema.optional(),
  } satisfies Record<(typeof PROFILE_KEYS)[number], z.ZodType>,
  {
    error: (issue) =>
      issue.code === "invalid_type"
        ? `expected a mapping with ${PROFILE_KEYS.join(", ")}, got ${describe(issue.input)}`
        : undefined,
  },
);

const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

const fileSchema = z
  .strictObject(
    {
      default: z
        .string({ error: (issue) => `expected a profile name, got ${describe(issue.input)}` })
        .optional(),
      profiles: z
        .record(
          z.string().regex(PROFILE_NAME, {
            error: (issue) =>
              `profile names use letters, digits, ".", "_" and "-", got ${describe(issue.input)}`,
          }),
          profileSchema,
          {
            error: (issue) =>
              issue.input === undefined
                ? "required: a mapping of profile names to profiles"
                : `expected a mapping of profile names to profiles, got ${describe(issue.input)}`,
          },
        )
        .refine((profiles) => Object.keys(profiles).length > 0, {
          error: "expected at least one profile",
        }),
    },
    {
      error: (issue) =>
        issue.code === "invalid_type"
          ? `expected a mapping with "default" and "profiles", got ${describe(issue.input)}`
          : undefined,
    },
  )
  .superRefine((file, ctx) => {
    const names = Object.keys(file.profiles);
    if (file.default === undefined) {
      if (names.length > 1) {
        ctx.addIssue({
          code: "custom",
          path: ["default"],
          message: `required when there is more than one profile; one of: ${names.join(", ")}`,
        });
      }
    } else if (!Object.hasOwn(file.profiles, file.default)) {
      ctx.addIssue({
        code: "custom",
        path: ["default"],
        message: `no profile named ${describe(file.default)}; profiles: ${names.join(", ")}`,
      });
    }
  });

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else if (!/^[\w.-]+$/.test(String(part))) out += `[${JSON.stringify(String(part))}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out;
}

function formatIssue(issue: z.core.$ZodIssue): { path: string; message: string } {
  // `usage_limits` is false or a mapping: for a mapping, what is wrong inside it is the news.
  const inMapping = issue.code === "invalid_union" ? issue.errors[1]?.[0] : undefined;
  if (inMapping && issue.path.at(-1) === "usage_limits") {
    return formatIssue({ ...inMapping, path: [...issue.path, ...inMapping.path] });
  }
  if (issue.code === "invalid_union") {
    // `sandbox` is true, false or a mapping: a mapping's own problem says more than "not a
    // boolean" does.
    const mapping = issue.errors.find(
      (inner) => inner[0] && (inner[0].path.length > 0 || inner[0].code !== "invalid_type"),
    );
    const inner = mapping?.[0];
    if (inner) return formatIssue({ ...inner, path: [...issue.path, ...inner.path] });
  }
  if (issue.code === "unrecognized_keys") {
    const known =
      issue.path.length === 0
        ? ROOT_KEYS
        : issue.path.at(-1) === "sandbox"
          ? SANDBOX_KEYS
          : issue.path.at(-1) === "usage_limits"
            ? USAGE_LIMIT_KEYS
            : PROFILE_KEYS;
    const key = issue.keys[0] ?? "";
    return {
      path: formatPath([...issue.path, key]),
      message: `unknown key (expected one of: ${known.join(", ")})`,
    };
  }
  if (issue.code === "invalid_key") {
    const inner = issue.issues[0];
    return { path: formatPath(issue.path), message: inner?.message ?? issue.message };
  }
  // An absent required key reaches us as invalid_type with input undefined, which the
  // schema messages already phrase as "got nothing"; "required" reads better.
  if (issue.code === "invalid_type" && / got nothing\b/.test(issue.message)) {
    return { path: formatPath(issue.path), message: "required" };
  }
  return { path: formatPath(issue.path), message: issue.message };
}

function fail(source: string, path: string, reason: string): never {
  const where = path === "" ? "" : `${path}: `;
  // One line, whatever the reason text contains: this goes to a log line and a CLI error.
  const line = `OVERSEER_WORKERS (${source}): ${where}${reason}`.replace(/\s*\n\s*/g, " ");
  throw new WorkerProfileError(line);
}

export function parseWorkerProfiles(yamlText: string, source: string): WorkerProfiles {
  const doc = parseDocument(yamlText);
  const yamlError = doc.errors[0];
  if (yamlError) {
    // The first line carries the reason and position; the rest is a code frame.
    fail(source, "", `invalid YAML: ${(yamlError.message.split("\n")[0] ?? "").replace(/:$/, "")}`);
  }
  const raw: unknown = doc.toJS();
  // zod cannot see an own "__proto__" key once copied, so it would vanish silently.
  const rawProfiles = (raw as { profiles?: unknown } | null)?.profiles;
  if (rawProfiles && typeof rawProfiles === "object" && Object.hasOwn(rawProfiles, "__proto__")) {
    fail(source, "profiles.__proto__", "not allowed as a profile name");
  }
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    if (!first) fail(source, "", "invalid worker profiles");
    const { path, message } = formatIssue(first);
    fail(source, path, message);
  }
  const file = parsed.data;
  const profiles = new Map<string, WorkerProfile>();
  for (const [name, raw] of Object.entries(file.profiles)) {
    profiles.set(name, {
      name,
      command: raw.command,
      stdin: raw.stdin,
      env: [...new Set(raw.env)],
      timeoutMs: raw.timeout,
      idleTimeoutMs: raw.idle_timeout,
      logLimitBytes: raw.log_limit,
      graceMs: raw.grace,
      logFormat: raw.log_format,
      sandbox: sandboxPolicy(raw.sandbox),
      ...(raw.concurrency === undefined ? {} : { concurrency: raw.concurrency }),
      ...(raw.repositories === undefined ? {} : { repositories: [...new Set(raw.repositories)] }),
      ...(raw.usage_limits === undefined ? {} : { usageLimits: usageLimitRules(raw.usage_limits) }),
    });
  }
  const defaultName = file.default ?? [...profiles.keys()][0];
  if (defaultName === undefined) fail(source, "profiles", "expected at least one profile");
  return { source, default: defaultName, profiles };
}

function sandboxPolicy(
  raw: boolean | { writable: string[]; readable: string[]; network: boolean },
): SandboxPolicy | null {
  if (raw === false) return null;
  if (raw === true) return DEFAULT_SANDBOX;
  return {
    writable: [...new Set(raw.writable)],
    readable: [...new Set(raw.readable)],
    network: raw.network,
  };
}

export async function loadWorkerProfiles(path: string): Promise<WorkerProfiles> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    fail(path, "", `cannot read the file (${code ?? (error as Error).message})`);
  }
  return parseWorkerProfiles(text, path);
}

function usageLimitRules(
  raw: Exclude<z.infer<typeof usageLimitsSchema>, undefined>,
): UsageLimitRules | false {
  if (raw === false) return false;
  return {
    ...(raw.builtin ? { builtin: raw.builtin } : {}),
    patterns: raw.patterns,
    authPatterns: raw.auth_patterns,
    exitCodes: raw.exit_codes,
    ...(raw.backoff === undefined ? {} : { backoffMs: raw.backoff }),
  };
}

/** True when the profile may run for `repo` (`owner/name`); GitHub names ignore case. */
export function profileAllowsRepository(profile: WorkerProfile, repo: string): boolean {
  if (!profile.repositories) return true;
  const [owner = "", name = ""] = repo.toLowerCase().split("/");
  return profile.repositories.some((entry) => {
    if (entry === "*") return true;
    const [allowedOwner, allowedName] = entry.toLowerCase().split("/");
    return allowedOwner === owner && (allowedName === "*" || allowedName === name);
  });
}

/**
 * The profile a task of `repo` runs: the one its `agent:` label or the repository's
 * `worker:` named, else the operator's default; refused (a configuration error, so the run
 * fails without costing an attempt) when the operator has not allowed it for the repository.
 */
export function resolveProfileFor(
  profiles: WorkerProfiles,
  name: string | null | undefined,
  repo: string,
): WorkerProfile {
  const profile = resolveProfile(profiles, name ?? undefined);
  if (!profileAllowsRepository(profile, repo)) {
    throw new WorkerProfileError(
      `worker profile ${JSON.stringify(profile.name)} is not allowed for ${repo} (${profiles.source} allows it for: ${(profile.repositories ?? []).join(", ") || "no repository"})`,
    );
  }
  return profile;
}

/** The per-profile `concurrency` limits, for claiming. */
export function profileConcurrency(profiles: WorkerProfiles): Map<string, number> {
  const limits = new Map<string, number>();
  for (const profile of profiles.profiles.values()) {
    if (profile.concurrency !== undefined) limits.set(profile.name, profile.concurrency);
  }
  return limits;
}

/** The named profile, or the default one when no name is given. */
export function resolveProfile(profiles: WorkerProfiles, name?: string): WorkerProfile {
  const wanted = name ?? profiles.default;
  const profile = profiles.profiles.get(wanted);
  if (!profile) {
    throw new WorkerProfileError(
      `unknown worker profile ${JSON.stringify(wanted)} (${profiles.source}); known profiles: ${[...profiles.profiles.keys()].join(", ")}`,
    );
  }
  return profile;
}

/**
 * The profile's argv with placeholders filled in. Each value lands inside one argv
 * element and no shell is involved, so a value can never become extra arguments; a
 * profile that runs `sh -c "... {branch}"` is the operator's own choice of quoting.
 */
export function expandArgv(profile: WorkerProfile, values: PlaceholderValues): string[] {
  return profile.command.map((arg) =>
    arg.replace(PLACEHOLDER_PATTERN, (whole, escaped: string | undefined, word: string) => {
      if (escaped !== undefined) return `{${escaped}}`;
      if (!isPlaceholder(word)) {
        // Profiles are validated at load time; this only guards hand-built ones.
        throw new WorkerProfileError(`profile ${profile.name}: unknown placeholder ${whole}`);
      }
      return PLACEHOLDER_VALUE[word](values);
    }),
  );
}

/** Below this length a passed-through value is too common a string to hunt for in logs. */
const MIN_SECRET_LENGTH = 8;

/**
 * The worker's whole environment: PATH and HOME from the host, the profile's
 * pass-through names that are set on the host, and the OVERSEER_* run variables; nothing
 * else of the host's. `secrets` are the passed-through values worth redacting from the
 * log (the reason such variables exist is usually an API key).
 */
export function workerEnv(
  profile: WorkerProfile,
  values: PlaceholderValues,
  host: NodeJS.ProcessEnv = process.env,
): { env: Record<string, string>; secrets: string[] } {
  const env: Record<string, string> = {
    PATH: host.PATH || "/usr/local/bin:/usr/bin:/bin",
    HOME: host.HOME || values.worktree,
  };
  const secrets: string[] = [];
  for (const name of profile.env) {
    const value = host[name];
    if (value === undefined) continue;
    env[name] = value;
    if (name !== "PATH" && name !== "HOME" && value.length >= MIN_SECRET_LENGTH) {
      secrets.push(value);
    }
  }
  for (const placeholder of PLACEHOLDERS) {
    env[PLACEHOLDER_ENV[placeholder]] = PLACEHOLDER_VALUE[placeholder](values);
  }
  return { env, secrets };
}
