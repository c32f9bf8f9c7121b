/** Small readers for JSON of unknown shape: a wrong type reads as absent, never throws. */

export type JsonObject = Record<string, unknown>;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The line as a JSON object, or null when it is anything else (text, an array, broken JSON). */
export function parseObjectLine(text: string): JsonObject | null {
  const trimmed = text.trim();
  if (!trimmed.startsWith("{")) return null;
  try {
    const value: unknown = JSON.parse(trimmed);
    return isObject(value) ? value : null;
  } catch {
    return null;
  }
}

export function stringAt(value: unknown, key: string): string | null {
  if (!isObject(value)) return null;
  const found = value[key];
  return typeof found === "string" ? found : null;
}

export function numberAt(value: unknown, key: string): number | null {
  if (!isObject(value)) return null;
  const found = value[key];
  return typeof found === "number" && Number.isFinite(found) ? found : null;
}

export function objectAt(value: unknown, key: string): JsonObject | null {
  if (!isObject(value)) return null;
  const found = value[key];
  return isObject(found) ? found : null;
}

export function arrayAt(value: unknown, key: string): unknown[] {
  if (!isObject(value)) return [];
  const found = value[key];
  return Array.isArray(found) ? found : [];
}

/** One line of at most `limit` characters: what a summary of a long value needs. */
export function oneLine(text: string, limit = 200): string {
  const flat = text.replace(/\s*\r?\n\s*/g, " ⏎ ").trim();
  return flat.length <= limit ? flat : `${flat.slice(0, limit - 1)}…`;
}
