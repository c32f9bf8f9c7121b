/**
 * What GitHub shows as text. A CommonMark subset, not a renderer: block structure is
 * followed as far as it decides what is code, quoted or hidden (fences, indented code,
 * list items, paragraph ends, `>` quotes at any depth, HTML comments, code spans that run
 * over several lines of a paragraph), not for other HTML blocks or link syntax. Where it
 * has to guess it leans towards hiding. One exception, on purpose: a line right under a
 * quote without its own `>` counts as visible even though CommonMark would render it
 * inside the quote ("lazy continuation"), because the commenter typed it there themselves.
 *
 * Cost is linear in the text.
 */

/** An inline code span that survives backticks inside the text (CommonMark's rule). */
export function codeSpan(text: string): string {
  const flat = text.replace(/[\r\n]+/g, " ");
  const longest = Math.max(0, ...(flat.match(/`+/g) ?? []).map((run) => run.length));
  const fence = "`".repeat(longest + 1);
  const pad = flat.startsWith("`") || flat.endsWith("`") ? " " : "";
  return `${fence}${pad}${flat}${pad}${fence}`;
}

/**
 * Called with a paragraph's text and the offset of a line start in it that GitHub shows
 * as text (not code, not quoted, not inside an HTML comment), in order; `absolute` is the
 * same position in the whole text, for callers that read on past the paragraph.
 */
export type LineStartVisitor = (paragraph: string, offset: number, absolute: number) => void;

/**
 * Visits the start of every visible line of `text` that is indented at most 3 spaces. The
 * first line of a list item is not a line start (its text follows the marker).
 */
export function forEachVisibleLineStart(text: string, visit: LineStartVisitor): void {
  const paragraph = new Paragraph(visit);
  /** Content columns of the list items the current line may belong to, outermost first. */
  const listItems: number[] = [];
  let open: OpenBlock | null = null;
  const breaks = /\r\n|\r|\n/g;
  let lineStart = 0;

  for (let more = true; more; ) {
    const lineBreak = breaks.exec(text);
    const line = text.slice(lineStart, lineBreak ? lineBreak.index : text.length);
    const at = lineStart;
    more = lineBreak !== null;
    if (lineBreak) lineStart = lineBreak.index + lineBreak[0].length;
    const indent = measureIndent(line);
    const blank = indent.end === line.length;
    if (open !== null) {
      // A list item ends at a non-blank line indented less than its content, and closes
      // whatever block it held; that line is then read afresh.
      if (blank || indent.columns >= open.contentColumn) {
        if (open.kind === "fence" ? closesFence(line, open) : line.includes("-->")) open = null;
        continue;
      }
      open = null;
    }
    if (blank) {
      paragraph.end();
      continue;
    }
    let itemsKept = 0;
    while (itemsKept < listItems.length && (listItems[itemsKept] ?? 0) <= indent.columns) {
      itemsKept += 1;
    }
    const container = listItems[itemsKept - 1] ?? 0;
    const block = blockStart(line, indent, container, paragraph.isOpen, listItems.length > 0);
    if (block.kind === "text" && paragraph.isOpen) {
      // Continuation text, lazy or not, stays in its paragraph and keeps its list items open.
      paragraph.addLine(line, lineStartAt(line, indent), at);
      continue;
    }
    listItems.length = itemsKept;
    paragraph.end();
    switch (block.kind) {
      case "fence":
        open = { kind: "fence", ...block.fence, contentColumn: container };
        break;
      case "comment":
        if (!line.includes("-->", indent.end + 4))
          open = { kind: "comment", contentColumn: container };
        break;
      case "list_item": {
        for (const column of block.item.contentColumns) listItems.push(column);
        const itemColumn = block.item.contentColumns.at(-1) ?? 0;
        const fence = openFenceAt(line, block.item.contentStart);
        if (fence !== null) open = { kind: "fence", ...fence, contentColumn: itemColumn };
        // The item's own text starts a paragraph: its code spans may run on to later lines.
        else paragraph.addLine(line.slice(block.item.contentStart), null, at);
        break;
      }
      case "text":
        paragraph.addLine(line, lineStartAt(line, indent), at);
        break;
      case "skipped":
        break;
    }
  }
  paragraph.end();
}

/** Where a line's text starts, if it is at most 3 spaces in (further in, it is not a line start). */
function lineStartAt(line: string, indent: Indent): number | null {
  return indent.columns <= 3 && indent.end < line.length ? indent.end : null;
}

// ---------------------------------------------------------------------------------------
// Line-level blocks
// ---------------------------------------------------------------------------------------

const SPACE = 0x20;
const TAB = 0x09;
const GREATER_THAN = 0x3e;
const BACKTICK = 0x60;
const TILDE = 0x7e;
const BACKSLASH = 0x5c;

interface Indent {
  /** Index of the first character that is not a space or tab (line length if none). */
  end: number;
  /** Width of the indentation with tabs to the next multiple of 4, as CommonMark counts. */
  columns: number;
}

function measureIndent(line: string, from = 0, startColumn = 0): Indent {
  let columns = startColumn;
  let index = from;
  while (index < line.length) {
    const code = line.charCodeAt(index);
    if (code === SPACE) columns += 1;
    else if (code === TAB) columns += 4 - (columns % 4);
    else break;
    index += 1;
  }
  return { end: index, columns };
}

interface Fence {
  marker: number;
  length: number;
}

/** A block whose lines are all hidden until it closes or its list item ends. */
type OpenBlock =
  | ({ kind: "fence"; contentColumn: number } & Fence)
  | { kind: "comment"; contentColumn: number };

type BlockStart =
  | { kind: "fence"; fence: Fence }
  | { kind: "comment" }
  | { kind: "list_item"; item: ListItem }
  /** Quotes, headings, breaks, indented code: nothing in them is ever a command. */
  | { kind: "skipped" }
  | { kind: "text" };

/**
 * What a non-blank line starts. `container` is the content column of the innermost list
 * item the line is indented enough for; indentation counts from there.
 */
function blockStart(
  line: string,
  indent: Indent,
  container: number,
  paragraphOpen: boolean,
  inList: boolean,
): BlockStart {
  if (indent.columns - container >= 4) {
    // Indented code, unless it continues a paragraph (indented code cannot interrupt one).
    return paragraphOpen ? { kind: "text" } : { kind: "skipped" };
  }
  const start = indent.end;
  const fence = openFenceAt(line, start);
  if (fence !== null) return { kind: "fence", fence };
  if (line.charCodeAt(start) === GREATER_THAN) return { kind: "skipped" };
  if (line.startsWith("<!--", start)) return { kind: "comment" };
  if (isAtxHeading(line, start) || isBreakOrUnderline(line, start)) return { kind: "skipped" };
  const item = listItemAt(line, start, indent.columns);
  if (item === null) return { kind: "text" };
  // CommonMark: a new list may interrupt a paragraph only with content and, if ordered, at 1.
  if (paragraphOpen && !inList && !item.mayStartListInParagraph) return { kind: "text" };
  return { kind: "list_item", item };
}

function runLength(line: string, from: number, code: number): number {
  let end = from;
  while (end < line.length && line.charCodeAt(end) === code) end += 1;
  return end - from;
}

/** A fence opener starting exactly at `start` (indentation already skipped), or null. */
function openFenceAt(line: string, start: number): Fence | null {
  const marker = line.charCodeAt(start);
  if (marker !== BACKTICK && marker !== TILDE) return null;
  const length = runLength(line, start, marker);
  if (length < 3) return null;
  // A backtick fence's info string may not hold a backtick, or the line would be a code span.
  if (marker === BACKTICK && line.indexOf("`", start + length) !== -1) return null;
  return { marker, length };
}

function closesFence(line: string, fence: Fence & { contentColumn: number }): boolean {
  const indent = measureIndent(line);
  if (indent.columns - fence.contentColumn >= 4) return false;
  const length = runLength(line, indent.end, fence.marker);
  if (length < fence.length) return false;
  const rest = measureIndent(line, indent.end + length);
  return rest.end === line.length;
}

function isAtxHeading(line: string, start: number): boolean {
  const hashes = runLength(line, start, 0x23);
  if (hashes < 1 || hashes > 6) return false;
  const next = line.charCodeAt(start + hashes);
  return Number.isNaN(next) || next === SPACE || next === TAB;
}

/**
 * A thematic break (`***`, `- - -`, `___`) or a setext underline (`===`, `---`): both end a
 * paragraph, so a code span cannot run across them.
 */
function isBreakOrUnderline(line: string, start: number): boolean {
  const marker = line.charCodeAt(start);
  if (marker !== 0x2d && marker !== 0x2a && marker !== 0x5f && marker !== 0x3d) return false;
  let count = 0;
  for (let index = start; index < line.length; index += 1) {
    const code = line.charCodeAt(index);
    if (code === marker) count += 1;
    else if (code !== SPACE && code !== TAB) return false;
  }
  return count >= 3 || marker === 0x3d || marker === 0x2d;
}

interface ListItem {
  /** One per marker: `- 1. text` opens two items at once. */
  contentColumns: number[];
  /** Where the item's text starts (the line's end when it has none). */
  contentStart: number;
  mayStartListInParagraph: boolean;
}

/** Past this many, further markers on the line are read as the innermost item's text. */
const MAX_LIST_MARKERS_PER_LINE = 16;

/** The list item(s) a line opens with markers (`- `, `* `, `+ `, `1. `, `2) `), or null. */
function listItemAt(line: string, start: number, startColumn: number): ListItem | null {
  const contentColumns: number[] = [];
  let mayStartListInParagraph = true;
  let index = start;
  let columns = startColumn;
  while (contentColumns.length < MAX_LIST_MARKERS_PER_LINE) {
    let markerEnd = index;
    const code = line.charCodeAt(index);
    if (code === 0x2d || code === 0x2a || code === 0x2b) {
      markerEnd = index + 1;
    } else {
      let digits = 0;
      while (digits < 10 && isDigit(line.charCodeAt(index + digits))) digits += 1;
      const delimiter = line.charCodeAt(index + digits);
      if (digits === 0 || digits > 9 || (delimiter !== 0x2e && delimiter !== 0x29)) break;
      markerEnd = index + digits + 1;
      if (contentColumns.length === 0 && Number(line.slice(index, index + digits)) !== 1) {
        mayStartListInParagraph = false;
      }
    }
    const markerColumns = columns + (markerEnd - index);
    const gap = measureIndent(line, markerEnd, markerColumns);
    if (gap.end === markerEnd && markerEnd < line.length) break; // `-x`, `1.5`: not a marker
    const width = gap.columns - markerColumns;
    if (gap.end === line.length || width > 4) {
      // No text, or text indented five or more (indented code): content starts one column in.
      contentColumns.push(markerColumns + 1);
      if (gap.end === line.length && contentColumns.length === 1) mayStartListInParagraph = false;
      return { contentColumns, contentStart: line.length, mayStartListInParagraph };
    }
    contentColumns.push(gap.columns);
    index = gap.end;
    columns = gap.columns;
  }
  return contentColumns.length === 0
    ? null
    : { contentColumns, contentStart: index, mayStartListInParagraph };
}

function isDigit(code: number): boolean {
  return code >= 0x30 && code <= 0x39;
}

// ---------------------------------------------------------------------------------------
// Paragraphs: code spans and HTML comments may cross lines, but never a paragraph's end
// ---------------------------------------------------------------------------------------

class Paragraph {
  private lines: string[] = [];
  private length = 0;
  /** Offsets (into the joined paragraph) of visible line starts, ascending. */
  private candidates: number[] = [];
  /** The same line starts as offsets into the whole text. */
  private absolutes: number[] = [];

  constructor(private readonly visit: LineStartVisitor) {}

  get isOpen(): boolean {
    return this.lines.length > 0;
  }

  /**
   * `startAt`: where the line's text starts, if it may count as a line start; `lineAt`:
   * where the line starts in the whole text.
   */
  addLine(line: string, startAt: number | null, lineAt: number): void {
    if (startAt !== null) {
      this.candidates.push(this.length + startAt);
      this.absolutes.push(lineAt + startAt);
    }
    this.lines.push(line);
    this.length += line.length + 1;
  }

  end(): void {
    if (this.lines.length === 0) return;
    const text = this.lines.join("\n");
    if (this.candidates.length > 0) {
      const hidden = hiddenInlineRanges(text);
      let range = 0;
      this.candidates.forEach((offset, index) => {
        while (range < hidden.length && (hidden[range]?.[1] ?? 0) <= offset) range += 1;
        const covering = hidden[range];
        if (covering !== undefined && covering[0] <= offset) return;
        this.visit(text, offset, this.absolutes[index] ?? offset);
      });
    }
    this.lines = [];
    this.length = 0;
    this.candidates = [];
    this.absolutes = [];
  }
}

/**
 * [start, end) ranges of code spans and inline HTML comments in a paragraph, in order.
 * Linear: each closer is found through a per-length cursor that only moves forward, and a
 * comment opener without a closer stops all later searches for one.
 */
function hiddenInlineRanges(text: string): Array<[number, number]> {
  const runStarts: number[] = [];
  const runEnds: number[] = [];
  const runsByLength = new Map<number, number[]>();
  for (let index = text.indexOf("`"); index !== -1; ) {
    const end = index + runLength(text, index, BACKTICK);
    const length = end - index;
    let sameLength = runsByLength.get(length);
    if (sameLength === undefined) {
      sameLength = [];
      runsByLength.set(length, sameLength);
    }
    sameLength.push(runStarts.length);
    runStarts.push(index);
    runEnds.push(end);
    index = text.indexOf("`", end);
  }
  const cursors = new Map<number, number>();
  const nextRunOfLength = (length: number, after: number): number => {
    const sameLength = runsByLength.get(length);
    if (sameLength === undefined) return -1;
    let cursor = cursors.get(length) ?? 0;
    while (cursor < sameLength.length && (sameLength[cursor] ?? 0) <= after) cursor += 1;
    cursors.set(length, cursor);
    return sameLength[cursor] ?? -1;
  };

  const hidden: Array<[number, number]> = [];
  let run = 0;
  let commentsCanClose = true;
  let position = 0;
  while (position < text.length) {
    const code = text.charCodeAt(position);
    if (code === BACKSLASH) {
      position += isAsciiPunctuation(text.charCodeAt(position + 1)) ? 2 : 1;
    } else if (code === BACKTICK) {
      // `position` may sit inside a run when a backslash escaped its first backtick.
      while ((runEnds[run] ?? Number.POSITIVE_INFINITY) <= position) run += 1;
      const runEnd = runEnds[run] ?? position + 1;
      const closer = nextRunOfLength(runEnd - position, run);
      if (closer === -1) {
        position = runEnd;
      } else {
        const spanEnd = runEnds[closer] ?? runEnd;
        hidden.push([position, spanEnd]);
        position = spanEnd;
      }
    } else if (code === 0x3c && commentsCanClose && text.startsWith("<!--", position)) {
      const close = text.indexOf("-->", position + 4);
      if (close === -1) {
        commentsCanClose = false;
        position += 4;
      } else {
        hidden.push([position, close + 3]);
        position = close + 3;
      }
    } else {
      position += 1;
    }
  }
  return hidden;
}

function isAsciiPunctuation(code: number): boolean {
  return (
    (code >= 0x21 && code <= 0x2f) ||
    (code >= 0x3a && code <= 0x40) ||
    (code >= 0x5b && code <= 0x60) ||
    (code >= 0x7b && code <= 0x7e)
  );
}
