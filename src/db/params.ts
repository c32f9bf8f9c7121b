/**
 * Numbered parameters for one statement assembled from several tables' fragments (a
 * transition writes its task, audit event and outbox entries in one round trip).
 */
export class Params {
  readonly values: unknown[] = [];

  /** Adds a value and returns its placeholder, e.g. `$3`. */
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/**
 * `WITH a AS (…), b AS (…)` over named statements, for one round trip; a third element
 * `true` materializes that one (a locking SELECT must run as written, not be folded into
 * the query that reads it).
 */
export function withClause(ctes: [name: string, sql: string, materialized?: boolean][]): string {
  return `WITH ${ctes
    .map(([name, sql, materialized]) => `${name} AS ${materialized ? "MATERIALIZED " : ""}(${sql})`)
    .join(",\n")}`;
}
