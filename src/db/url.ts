/** Connection strings carry passwords; nothing we log or throw may. */

/** "host:port/database", the part of a URL a person needs to find the server. */
export function describeDatabaseTarget(raw: string): string {
  try {
    const url = new URL(raw);
    return `${url.hostname || "localhost"}:${url.port || "5432"}${url.pathname || ""}`;
  } catch {
    return "<unparseable database URL>";
  }
}

/** Removes any occurrence of the URL's password from a message (drivers sometimes echo it). */
export function scrubPassword(message: string, raw: string): string {
  let password = "";
  try {
    password = decodeURIComponent(new URL(raw).password);
  } catch {
    return message;
  }
  return password ? message.split(password).join("***") : message;
}

export function withDatabase(raw: string, database: string): string {
  const url = new URL(raw);
  url.pathname = `/${database}`;
  return url.toString();
}
