/**
 * Slash commands in issue comments. Pure: no I/O.
 *
 * A command is `/name` at the start of a line (at most 3 spaces before it), followed by the
 * end of the line or by whitespace and anything at all (`/retry please`). Names are
 * case-insensitive. Text GitHub shows as code, quoted or not at all is never a command
 * (markdown.ts decides what is visible); a quoted command always carries the `>`.
 *
 * `/revise` takes free text: everything after it in the comment, up to the next line that
 * starts with a command, is the revision request (code and quotes included: they are part
 * of what the person asks for).
 *
 * Cost is linear in the body, and the body is capped (MAX_PARSED_BODY_LENGTH).
 */
import { forEachVisibleLineStart } from "./markdown.js";
import { COMMAND_NAMES, type CommandName } from "./types.js";

export interface ParsedCommands {
  /** Commands in order of first appearance, each once. */
  commands: CommandName[];
  /**
   * Line-start `/words` that look like a mistyped command (within edit distance 2 of a
   * name, or a name with more glued on, like `/retyr`, `/stopp`, `/retrying`), as written,
   * each once; the caller answers them with the help text.
   */
  unknown: string[];
  /**
   * The text that follows `/revise` (several `/revise` in one comment: their texts, in
   * order, a blank line apart), trimmed and capped; absent when there is none.
   */
  revisionRequest?: string;
}

/**
 * GitHub refuses comments over 65,536 characters, so a longer body did not come from a
 * comment; only this much of it is read, which bounds the work whatever arrives.
 */
export const MAX_PARSED_BODY_LENGTH = 1024 * 1024;

/** Bounds the reply the caller builds from `unknown`. */
export const MAX_UNKNOWN_COMMANDS = 10;

/** A revision request longer than this is cut (with a note): it travels into a prompt. */
export const MAX_REVISION_REQUEST_LENGTH = 20_000;

const COMMAND_SUMMARIES: Record<CommandName, string> = {
  run: "start the task; after a cancellation, start afresh with a full set of attempts",
  retry: "try again after a failure or a stop (counts as another attempt)",
  stop: "stop the worker; the task waits as stopped until /retry",
  cancel: "give the task up (same as removing the label)",
  status: "show where the task stands",
  approve: "let a risk-labelled task run",
  revise:
    "on the PR or here: run the agent again on the PR's branch with what you write after it (and the PR's unresolved review comments)",
  help: "show this list",
};

export function helpText(): string {
  const lines = COMMAND_NAMES.map((name) => `- \`/${name}\`: ${COMMAND_SUMMARIES[name]}`);
  return [
    ...lines,
    "",
    "Put each command at the start of its own line. Commands inside code or quotes are ignored.",
  ].join("\n");
}

export function parseCommands(body: string): ParsedCommands {
  const text = body.slice(body.startsWith("\uFEFF") ? 1 : 0, MAX_PARSED_BODY_LENGTH);
  const found = new Collector(text);
  forEachVisibleLineStart(text, (paragraph, offset, absolute) => {
    if (paragraph.charCodeAt(offset) === SLASH) found.consider(paragraph, offset, absolute);
  });
  return found.result();
}

const SLASH = 0x2f;
const SPACE = 0x20;
const TAB = 0x09;

// ---------------------------------------------------------------------------------------
// Words after the slash
// ---------------------------------------------------------------------------------------

const COMMAND_BY_NAME: ReadonlyMap<string, CommandName> = new Map(
  COMMAND_NAMES.map((name) => [name, name]),
);

/** Longer words are prose or paths, not typos; also bounds the edit-distance work. */
const MAX_TYPO_LENGTH = 24;

/** Below this, distance 2 reaches too many ordinary words (`/r`, `/on`, `/so`). */
const MIN_TYPO_LENGTH = 3;

const WORD_LIKE = /^[a-z][a-z0-9_-]*$/;
const TRAILING_PUNCTUATION = /[.,!?;:]+$/;

class Collector {
  private readonly commands: CommandName[] = [];
  private readonly seenCommands = new Set<CommandName>();
  private readonly unknown: string[] = [];
  private readonly seenUnknown = new Set<string>();
  /** Where each visible command line starts in the body, in order. */
  private readonly commandStarts: number[] = [];
  /** Where the text after each `/revise` starts in the body. */
  private readonly requestStarts: number[] = [];

  constructor(private readonly body: string) {}

  /** `offset` is the `/` that starts a visible line; `absolute`, the same place in the body. */
  consider(text: string, offset: number, absolute: number): void {
    let end = offset + 1;
    while (end < text.length && !isWhitespace(text.charCodeAt(end))) end += 1;
    const token = text.slice(offset, end);
    const word = token.slice(1);
    // Only ASCII names: toLowerCase would fold some non-ASCII letters into ASCII ones.
    const lower = /^[A-Za-z]+$/.test(word) ? word.toLowerCase() : "";
    const command = COMMAND_BY_NAME.get(lower);
    if (command !== undefined) {
      this.commandStarts.push(absolute);
      if (command === "revise") this.requestStarts.push(absolute + token.length);
      if (!this.seenCommands.has(command)) {
        this.seenCommands.add(command);
        this.commands.push(command);
      }
      return;
    }
    if (this.unknown.length >= MAX_UNKNOWN_COMMANDS) return;
    const bare = word.replace(TRAILING_PUNCTUATION, "").toLowerCase();
    if (!looksLikeACommand(bare) || this.seenUnknown.has(bare)) return;
    this.seenUnknown.add(bare);
    this.unknown.push(token);
  }

  result(): ParsedCommands {
    const request = this.revisionRequest();
    return {
      commands: this.commands,
      unknown: this.unknown,
      ...(request ? { revisionRequest: request } : {}),
    };
  }

  private revisionRequest(): string {
    let next = 0;
    const parts: string[] = [];
    for (const start of this.requestStarts) {
      while (next < this.commandStarts.length && (this.commandStarts[next] ?? 0) < start) next += 1;
      const part = this.body.slice(start, this.commandStarts[next] ?? this.body.length).trim();
      if (part !== "") parts.push(part);
    }
    const request = parts.join("\n\n");
    if (request.length <= MAX_REVISION_REQUEST_LENGTH) return request;
    return `${request.slice(0, MAX_REVISION_REQUEST_LENGTH)}\n[… cut by Overseer: ${request.length - MAX_REVISION_REQUEST_LENGTH} more characters]`;
  }
}

function isWhitespace(code: number): boolean {
  return code === SPACE || code === TAB || code === 0x0a || code === 0x0d;
}

function looksLikeACommand(word: string): boolean {
  if (word.length > MAX_TYPO_LENGTH || !WORD_LIKE.test(word)) return false;
  return COMMAND_NAMES.some(
    (name) =>
      word.startsWith(name) ||
      (word.length >= MIN_TYPO_LENGTH && editDistance(word, name) <= MAX_TYPO_DISTANCE),
  );
}

const MAX_TYPO_DISTANCE = 2;

/** Optimal string alignment distance: Levenshtein, plus a swap of neighbours costs 1. */
export function editDistance(a: string, b: string): number {
  let beforePrevious: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, (beforePrevious[j - 2] ?? 0) + 1);
      }
      current.push(best);
    }
    beforePrevious = previous;
    previous = current;
  }
  return previous[b.length] ?? 0;
}
