/** Longest tool output kept in a transcript entry: errors say what is wrong at both ends. */
export const TOOL_TEXT_LIMIT = 1_500;

/** The start and the end of a long text, with how much was left out in between. */
export function clip(text: string, limit = TOOL_TEXT_LIMIT): string {
  const trimmed = text.trim();
  if (trimmed.length <= limit) return trimmed;
  const head = Math.floor(limit * 0.5);
  const tail = limit - head;
  const omitted = trimmed.length - head - tail;
  return `${trimmed.slice(0, head)}\n… [${omitted} characters omitted] …\n${trimmed.slice(-tail)}`;
}

const ESCAPE_SEQUENCE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: CSI, OSC and other escape sequences start with ESC
  /\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|\u001b[@-_]?/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: the C0 and C1 controls left after that
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/**
 * A worker's line made safe to show: terminal escape sequences (colours, but also ones
 * that retitle a window or rewrite the screen) and other control characters removed, and
 * a carriage-return progress bar reduced to what it last showed. Worker output is hostile
 * input; nothing it writes reaches an operator's terminal or page as a control sequence.
 */
export function sanitizeLine(line: string): string {
  const visible = line.replace(ESCAPE_SEQUENCE, "").replace(/\r+$/, "");
  return (visible.split("\r").at(-1) ?? "").replace(CONTROL, "");
}
