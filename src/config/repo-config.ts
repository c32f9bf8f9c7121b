import { z } from "zod";
import { isValidBranchName } from "../domain/branch.js";
import { codeSpan } from "../domain/markdown.js";
import { DEFAULT_MAX_REVISIONS } from "../domain/transitions.js";
import { ConfigError } from "../errors.js";

/**
 * A repository's own settings, `.github/overseer.yml`, read through Probot's
 * `context.config("overseer.yml")`. Every key is optional and unknown keys are errors, so a
 * typo never silently falls back to a default. Problems are reported as sentences a
 * maintainer can act on from the issue comment alone.
 */

/** The name `context.config()` takes (it prepends `.github/`). */
export const REPO_CONFIG_FILE = "overseer.yml";
export const REPO_CONFIG_PATH = ".github/overseer.yml";
export const CONFIG_ERROR_MARKER = "<!-- overseer:config-error -->";
/** Key used for problems about the file as a whole (not valid YAML, not a mapping, …). */
export const FILE_PROBLEM_KEY = "(file)";

export const MERGE_POLICIES = ["manual", "auto"] as const;
export const MERGE_METHODS = ["merge", "squash", "rebase"] as const;
export const COMMANDER_PERMISSIONS = ["write", "maintain", "admin"] as const;

export type MergePolicy = (typeof MERGE_POLICIES)[number];
export type MergeMethod = (typeof MERGE_METHODS)[number];
export type CommanderPermission = (typeof COMMANDER_PERMISSIONS)[number];

export interface RepoConfig {
  label: string;
  /** Profile name; null means the operator's `default`. Checked against profiles elsewhere. */
  worker: string | null;
  /** Base branch; null means the repository's default branch (known only from the payload). */
  base: string | null;
  maxAttempts: number;
  concurrency: number;
  merge: MergePolicy;
  mergeMethod: MergeMethod;
  riskLabels: readonly string[];
  commanders: CommanderPermission;
  commitOnStop: boolean;
  /** Bot logins (lower case, without `[bot]`) whose trigger label may start a task. */
  trustedBots: readonly string[];
  /** `/revise` runs (and review-started ones) per task; 0 turns revisions off. */
  maxRevisions: number;
  /** A review submitted with "changes requested" starts a revision. */
  reviseOnReview: boolean;
}

export interface ConfigProblem {
  key: string;
  reason: string;
}

export type RepoConfigResult =
  | { ok: true; config: RepoConfig }
  /** At most PROBLEMS_REPORTED problems; `unreported` counts the rest. */
  | { ok: false; problems: ConfigProblem[]; unreported: number };

export const DEFAULT_REPO_CONFIG: Readonly<RepoConfig> = Object.freeze({
  label: "overseer",
  worker: null,
  base: null,
  maxAttempts: 3,
  concurrency: 2,
  merge: "manual",
  mergeMethod: "squash",
  // On by default so that a repository which already uses this label is gated without
  // having to learn about the setting first; `risk_labels: []` turns the gate off.
  riskLabels: Object.freeze(["risk:high"]),
  commanders: "write",
  commitOnStop: true,
  trustedBots: Object.freeze([]),
  maxRevisions: DEFAULT_MAX_REVISIONS,
  reviseOnReview: false,
});

/** GitHub refuses label names longer than this. */
const LABEL_MAX = 50;
/** Overseer's own state labels (`overseer:queued`, …) are added and removed by Overseer. */
const RESERVED_LABEL_PREFIX = "overseer:";
const LIST_MAX = 50;
const WORKER_MAX = 100;
/** A GitHub login (at most 39 characters), as a bot's appears with or without `[bot]`. */
const BOT_LOGIN = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$/;

/**
 * Past this size `.github/overseer.yml` is refused before it is parsed: the settings fit in
 * well under 1 KB, and parsing is done on the event loop every webhook shares.
 */
export const REPO_CONFIG_MAX_BYTES = 64 * 1024;
/** Past this many, a list of problems stops helping (and finding them costs CPU). */
export const PROBLEMS_REPORTED = 20;

/** `dependabot[bot]` and `Dependabot` name the same bot. */
export function botName(login: string): string {
  return login
    .trim()
    .toLowerCase()
    .replace(/\[bot\]$/, "");
}

const expected =
  (what: string) =>
  (issue: { input?: unknown }): string =>
    `expected ${what}, got ${describeValue(issue.input)}`;

const labelName = (what: string) =>
  z
    .string({ error: expected(what) })
    .refine((name) => name.trim().length > 0 && name.trim().length <= LABEL_MAX, {
      error: expected(what),
    })
    .refine((name) => !name.trim().toLowerCase().startsWith(RESERVED_LABEL_PREFIX), {
      error: (issue) =>
        `${describeValue(issue.input)} starts with "${RESERVED_LABEL_PREFIX}", which Overseer reserves for its state labels`,
    })
    // GitHub trims label names when it creates them, so compare trimmed.
    .transform((name) => name.trim());

const LABEL_TEXT = `a label name of 1 to ${LABEL_MAX} characters`;

const wholeNumber = (min: number, max: number) => {
  const error = expected(`a whole number from ${min} to ${max}`);
  return z.int({ error }).min(min, { error }).max(max, { error });
};

const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, {
    error: expected(
      values
        .map((v) => `"${v}"`)
        .join(", ")
        .replace(/, ([^,]*)$/, " or $1"),
    ),
  });

const schema = z.strictObject(
  {
    label: labelName(LABEL_TEXT).optional(),
    worker: z
      .string({ error: expected("the name of a worker profile") })
      .refine((name) => name.trim().length > 0 && name.trim().length <= WORKER_MAX, {
        error: expected("the name of a worker profile"),
      })
      .transform((name) => name.trim())
      .optional(),
    base: z
      .string({
        error: (issue) =>
          typeof issue.input === "number"
            ? // YAML reads `base: 1.0` as the number 1; the original spelling is lost.
              `expected a branch name, got the number ${issue.input} (put the branch name in quotes)`
            : expected('a branch name like "main"')(issue),
      })
      .transform((name) => name.trim().replace(/^refs\/heads\//, ""))
      .refine(isValidBranchName, { error: expected('a valid git branch name like "main"') })
      .optional(),
    max_attempts: wholeNumber(1, 20).optional(),
    concurrency: wholeNumber(1, 50).optional(),
    merge: oneOf(MERGE_POLICIES).optional(),
    merge_method: oneOf(MERGE_METHODS).optional(),
    risk_labels: z
      // A lone name is unambiguous, and `risk_labels: risk:high` is an easy slip to forgive.
      .union([z.string(), z.array(z.unknown())], {
        error: expected(`a list of label names like [risk:high]`),
      })
      .transform((value) => (typeof value === "string" ? [value] : value))
      .pipe(
        z
          .array(labelName(LABEL_TEXT))
          .max(LIST_MAX, {
            error: (issue) =>
              `expected at most ${LIST_MAX} labels, got ${Array.isArray(issue.input) ? issue.input.length : "more"}`,
          })
          .transform((names) => [...new Set(names)]),
      )
      .optional(),
    commanders: oneOf(COMMANDER_PERMISSIONS).optional(),
    commit_on_stop: z.boolean({ error: expected("true or false") }).optional(),
    trusted_bots: z
      .array(
        z
          .string({ error: expected("a bot login like dependabot[bot]") })
          .refine((login) => BOT_LOGIN.test(login.trim()), {
            error: expected("a bot login like dependabot[bot]"),
          })
          .transform(botName),
        { error: expected("a list of bot logins like [dependabot[bot]]") },
      )
      .max(LIST_MAX, { error: `expected at most ${LIST_MAX} bot logins` })
      .transform((names) => [...new Set(names)])
      .optional(),
    max_revisions: wholeNumber(0, 50).optional(),
    revise_on_review: z.boolean({ error: expected("true or false") }).optional(),
  },
  {
    error: (issue) =>
      issue.code === "invalid_type"
        ? expected("a mapping of settings like `label: overseer`")(issue)
        : undefined,
  },
);

const KNOWN_KEYS = Object.keys(schema.shape);

/** Words people reach for that are not close enough in spelling to be caught as typos. */
const KEY_ALIASES: Record<string, string> = {
  labels: "label",
  trigger_label: "label",
  profile: "worker",
  agent: "worker",
  branch: "base",
  base_branch: "base",
  target_branch: "base",
  attempts: "max_attempts",
  retries: "max_attempts",
  max_retries: "max_attempts",
  max_concurrency: "concurrency",
  parallel: "concurrency",
  auto_merge: "merge",
  merge_strategy: "merge_method",
  approval_labels: "risk_labels",
  commanders_permission: "commanders",
  permission: "commanders",
  bots: "trusted_bots",
  allowed_bots: "trusted_bots",
  revisions: "max_revisions",
  max_revision: "max_revisions",
  revise_on_changes_requested: "revise_on_review",
};

/**
 * Checks what `context.config()` returned: null (no file anywhere) means all defaults; an
 * empty file arrives as `{}`.
 */
export function parseRepoConfig(raw: unknown): RepoConfigResult {
  if (raw === null || raw === undefined) return { ok: true, config: defaultConfig() };
  const parsed = schema.safeParse(raw);
  if (!parsed.success) return { ok: false, ...toProblems(parsed.error.issues, raw) };
  const file = parsed.data;
  const defaults = DEFAULT_REPO_CONFIG;
  return {
    ok: true,
    config: {
      label: file.label ?? defaults.label,
      worker: file.worker ?? defaults.worker,
      base: file.base ?? defaults.base,
      maxAttempts: file.max_attempts ?? defaults.maxAttempts,
      concurrency: file.concurrency ?? defaults.concurrency,
      merge: file.merge ?? defaults.merge,
      mergeMethod: file.merge_method ?? defaults.mergeMethod,
      riskLabels: file.risk_labels ?? [...defaults.riskLabels],
      commanders: file.commanders ?? defaults.commanders,
      commitOnStop: file.commit_on_stop ?? defaults.commitOnStop,
      trustedBots: file.trusted_bots ?? [],
      maxRevisions: file.max_revisions ?? defaults.maxRevisions,
      reviseOnReview: file.revise_on_review ?? defaults.reviseOnReview,
    },
  };
}

function defaultConfig(): RepoConfig {
  // A copy, so that a caller mutating its config cannot change everyone's defaults.
  return {
    ...DEFAULT_REPO_CONFIG,
    riskLabels: [...DEFAULT_REPO_CONFIG.riskLabels],
    trustedBots: [],
  };
}

/**
 * The first PROBLEMS_REPORTED problems, worded; the rest are only counted. A file of
 * 20,000 unknown keys must not cost 20,000 spelling suggestions on the shared event loop.
 */
function toProblems(
  issues: readonly z.core.$ZodIssue[],
  raw: unknown,
): { problems: ConfigProblem[]; unreported: number } {
  const problems: ConfigProblem[] = [];
  let unreported = 0;
  const seen = new Set<string>();
  const room = () => PROBLEMS_REPORTED - problems.length;
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      const reported = issue.keys.slice(0, Math.max(0, room()));
      for (const key of reported) problems.push({ key, reason: unknownKeyReason(key) });
      unreported += issue.keys.length - reported.length;
      continue;
    }
    const [key, ...rest] = issue.path;
    const where = rest.find((part) => typeof part === "number");
    const id = key === undefined ? FILE_PROBLEM_KEY : `${String(key)}/${String(where)}`;
    // One problem per value: a second complaint about the same value only adds noise.
    if (seen.has(id)) continue;
    seen.add(id);
    if (room() <= 0) {
      unreported += 1;
      continue;
    }
    if (key === undefined) {
      problems.push({ key: FILE_PROBLEM_KEY, reason: issue.message });
      continue;
    }
    const reason =
      typeof where === "number" ? `item ${where + 1} of the list: ${issue.message}` : issue.message;
    problems.push({ key: String(key), reason });
  }
  if (problems.length === 0) {
    // Not expected from the schema above; never leave a maintainer with no reason at all.
    problems.push({ key: FILE_PROBLEM_KEY, reason: `invalid settings: ${describeValue(raw)}` });
  }
  return { problems, unreported };
}

function unknownKeyReason(key: string): string {
  const suggestion = suggestKey(key);
  const quoted = JSON.stringify(truncate(key, 60));
  return suggestion
    ? `unknown key ${quoted} (did you mean "${suggestion}"?)`
    : `unknown key ${quoted} (known keys: ${KNOWN_KEYS.join(", ")})`;
}

/** The known key a typo most likely meant, if any is close enough to be worth saying. */
export function suggestKey(key: string): string | null {
  const normal = key
    .trim()
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .toLowerCase()
    .replace(/[\s-]+/g, "_");
  if (KNOWN_KEYS.includes(normal)) return normal;
  const alias = KEY_ALIASES[normal];
  if (alias) return alias;
  let best: { key: string; distance: number } | null = null;
  for (const known of KNOWN_KEYS) {
    // The distance is at least the difference in length, and more than 3 is never a typo.
    if (Math.abs(normal.length - known.length) > 3) continue;
    const distance = editDistance(normal, known);
    if (distance < (best?.distance ?? Number.POSITIVE_INFINITY)) best = { key: known, distance };
  }
  if (!best) return null;
  const allowed = Math.min(3, Math.max(1, Math.floor(best.key.length / 3)));
  return best.distance <= allowed ? best.key : null;
}

/** Damerau-style (adjacent swaps count once), because swapped letters are the usual typo. */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) =>
    Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number) => d[i]?.[j] ?? 0;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let value = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        value = Math.min(value, at(i - 2, j - 2) + 1);
      }
      (d[i] as number[])[j] = value;
    }
  }
  return at(a.length, b.length);
}

/** How a value found in the file is quoted back to the person who wrote it. */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) {
    return "nothing (remove the key to use the default)";
  }
  if (typeof value === "string") return JSON.stringify(truncate(value, 60));
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return `a list (${preview(value)})`;
  if (typeof value === "object") return `a mapping (${preview(value)})`;
  return typeof value;
}

function preview(value: unknown): string {
  try {
    return truncate(JSON.stringify(value) ?? String(value), 60);
  } catch {
    return "…";
  }
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

// -- The file does not parse ------------------------------------------------------------

/**
 * `context.config()` threw because of the file itself (YAML syntax, not a mapping, a bad
 * `_extends`), as opposed to GitHub being unreachable. Carries the problems to comment.
 */
export class ConfigLoadError extends ConfigError {
  override name = "ConfigLoadError";
  readonly problems: ConfigProblem[];

  constructor(
    cause: unknown,
    readonly path: string = REPO_CONFIG_PATH,
  ) {
    const problems = problemsFromYamlError(cause);
    super(`${path}: ${problems.map(formatProblemPlain).join("; ")}`, { cause });
    this.problems = problems;
  }
}

/**
 * The file (or one it `_extends`) is larger than REPO_CONFIG_MAX_BYTES; thrown by the
 * reader before the text reaches the YAML parser.
 */
export class ConfigTooLargeError extends ConfigError {
  override name = "ConfigTooLargeError";
  readonly problems: ConfigProblem[];

  constructor(
    readonly bytes: number,
    readonly url: string,
  ) {
    const reason = `is ${formatKilobytes(bytes)}; Overseer reads at most ${formatKilobytes(REPO_CONFIG_MAX_BYTES)}`;
    super(`${url} ${reason}`);
    this.problems = [{ key: FILE_PROBLEM_KEY, reason }];
  }
}

function formatKilobytes(bytes: number): string {
  return `${Math.ceil(bytes / 1024)} KB`;
}

const PLUGIN_PREFIX = "[@probot/octokit-plugin-config]";

/**
 * True when the error is about the file's content, so a comment on the issue helps; false
 * for transport failures (a 5xx, a timeout), which the caller should retry instead.
 */
export function isConfigFileError(error: unknown): boolean {
  if (error instanceof ConfigLoadError || error instanceof ConfigTooLargeError) return true;
  if (findYamlError(error)) return true;
  return error instanceof Error && error.message.startsWith(PLUGIN_PREFIX);
}

/** Turns what `context.config()` threw into problems worded like the schema's. */
export function problemsFromYamlError(error: unknown): ConfigProblem[] {
  if (error instanceof ConfigLoadError || error instanceof ConfigTooLargeError) {
    return error.problems;
  }
  const yamlError = findYamlError(error);
  if (yamlError) {
    const firstLine = (yamlError.message.split("\n")[0] ?? "").replace(/:\s*$/, "");
    return [{ key: FILE_PROBLEM_KEY, reason: `is not valid YAML: ${truncate(firstLine, 300)}` }];
  }
  const message = error instanceof Error ? error.message : String(error);
  const plain = message.replace(PLUGIN_PREFIX, "").trim();
  if (message.includes("(invalid YAML)")) {
    return [{ key: FILE_PROBLEM_KEY, reason: "is not valid YAML" }];
  }
  if (message.includes("(YAML is not an object)")) {
    return [
      {
        key: FILE_PROBLEM_KEY,
        reason: "holds a single value, expected a mapping of settings like `label: overseer`",
      },
    ];
  }
  if (message.includes("(invalid JSON)")) {
    return [{ key: FILE_PROBLEM_KEY, reason: "is not valid JSON" }];
  }
  if (message.includes("directory or a submodule")) {
    return [{ key: FILE_PROBLEM_KEY, reason: "is a directory or a submodule, not a file" }];
  }
  if (message.includes("Recursion detected")) {
    return [{ key: "_extends", reason: "the files extend each other in a loop" }];
  }
  if (message.includes("for _extends")) {
    return [
      {
        key: "_extends",
        reason: `expected a repository like "owner/repo" or "repo:path.yml": ${truncate(plain, 200)}`,
      },
    ];
  }
  return [{ key: FILE_PROBLEM_KEY, reason: `could not be read: ${truncate(plain, 300)}` }];
}

interface YamlErrorLike {
  name: string;
  message: string;
  linePos?: unknown;
}

function findYamlError(error: unknown): YamlErrorLike | null {
  // The plugin wraps the yaml package's error as `cause`; walk a few levels, no more.
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (current.name === "YAMLParseError" || current.name === "YAMLException") return current;
    current = current.cause;
  }
  return null;
}

/**
 * Reads the config and sorts failures: problems with the file come back as problems to
 * comment; anything else (GitHub unreachable) is thrown for the caller to retry.
 */
export async function loadRepoConfig(read: () => Promise<unknown>): Promise<RepoConfigResult> {
  let raw: unknown;
  try {
    raw = await read();
  } catch (error) {
    if (isConfigFileError(error)) {
      return { ok: false, problems: problemsFromYamlError(error), unreported: 0 };
    }
    throw error;
  }
  return parseRepoConfig(raw);
}

// -- The comment ------------------------------------------------------------------------

/**
 * The issue comment for an invalid config: what is wrong, that nothing ran, how to fix.
 * `unreported` counts problems found but not worded (see PROBLEMS_REPORTED).
 */
export function renderConfigProblem(
  problems: readonly ConfigProblem[],
  path: string = REPO_CONFIG_PATH,
  unreported = 0,
): string {
  const shown = problems.slice(0, PROBLEMS_REPORTED);
  const lines = [
    CONFIG_ERROR_MARKER,
    `### ⚠️ Overseer could not use ${codeSpan(truncate(path, 200))}`,
    "",
    ...shown.map((problem) =>
      problem.key === FILE_PROBLEM_KEY
        ? `- the file ${inlineText(truncate(problem.reason, 500))}`
        : `- ${codeSpan(truncate(problem.key, 60))}: ${inlineText(truncate(problem.reason, 500))}`,
    ),
  ];
  const more = problems.length - shown.length + unreported;
  if (more > 0) lines.push(`- … and ${more} more`);
  lines.push(
    "",
    "Nothing was queued for this issue. Fix the file on the default branch, then remove and add the label again to retry.",
  );
  return lines.join("\n");
}

function formatProblemPlain(problem: ConfigProblem): string {
  return problem.key === FILE_PROBLEM_KEY
    ? `the file ${problem.reason}`
    : `${problem.key}: ${problem.reason}`;
}

/**
 * Text from the file shown as plain words: no markup, no HTML (so no fake markers), and no
 * @-mentions, which would notify whoever the file happens to name.
 */
function inlineText(text: string): string {
  return text
    .replace(/[\r\n]+/g, " ")
    .replace(/<!--/g, "<!-\u200b-")
    .replace(/[\\`*_[\]<>|~&]/g, "\\$&")
    .replace(/@(?=[A-Za-z0-9])/g, "@\u200b");
}
