/** Text helpers for prompt files: byte budgets, fences that untrusted text cannot close. */

const encoder = new TextEncoder();

export function byteLength(text: string): number {
  return encoder.encode(text).length;
}

/** At most maxBytes of UTF-8, cut on a character boundary. */
function cutBytes(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  let end = Math.max(0, maxBytes);
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8");
}

export function truncated(text: string, maxBytes: number): string {
  const total = byteLength(text);
  if (total <= maxBytes) return text;
  const kept = cutBytes(text, maxBytes);
  return `${kept}\n\n[… truncated by Overseer: ${total - byteLength(kept)} more bytes not shown]`;
}

/** A fence longer than any backtick run inside, so the text cannot close it early. */
export function fenced(text: string): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = "`".repeat(Math.max(3, longest + 1));
  return `${fence}text\n${text}\n${fence}`;
}

/** Logins and timestamps go into headings; keep them to the characters they really use. */
export function plain(text: string, max = 100): string {
  return text.replace(/[^\w.:+@[\]-]/g, "").slice(0, max) || "unknown";
}

export function oneLine(text: string): string {
  return text.replace(/[\r\n\t\u2028\u2029]+/g, " ").trim();
}
