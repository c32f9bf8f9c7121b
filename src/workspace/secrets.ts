/**
 * The installation token travels only as an HTTP header built here, and every string that
 * leaves this module through an error passes through `scrub` first.
 */

const REDACTED = "[REDACTED]";

/** GitHub token shapes (installation, OAuth, user-to-server, PAT), in case one reaches us by another road. */
const GITHUB_TOKEN = /\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b/g;

/** `scheme://user:password@host`: keep the user, drop the password. */
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]*):[^@\s/]*@/gi;

/** `Authorization: Basic …` / `Bearer …`, whatever produced it. */
const AUTH_HEADER = /(authorization:\s*(?:basic|bearer|token)\s+)[A-Za-z0-9+/=._-]+/gi;

export function basicCredential(token: string): string {
  return Buffer.from(`x-access-token:${token}`, "utf8").toString("base64");
}

export function authorizationHeader(token: string): string {
  return `Authorization: Basic ${basicCredential(token)}`;
}

/** Every spelling of the token we put anywhere, longest first so no fragment survives. */
function spellings(token: string | undefined): string[] {
  if (!token) return [];
  return [authorizationHeader(token), basicCredential(token), token].sort(
    (a, b) => b.length - a.length,
  );
}

export function scrub(text: string, token?: string): string {
  let out = text;
  for (const secret of spellings(token)) out = out.split(secret).join(REDACTED);
  return out
    .replace(AUTH_HEADER, `$1${REDACTED}`)
    .replace(URL_PASSWORD, `$1:${REDACTED}@`)
    .replace(GITHUB_TOKEN, REDACTED);
}
