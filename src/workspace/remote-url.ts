import { ConfigError } from "../errors.js";
import { WorkspaceError } from "./errors.js";
import type { RemoteProtocol } from "./git.js";

/**
 * Where Overseer's git fetches from and pushes to: the configured GitHub host (GHE_HOST,
 * GHE_PROTOCOL) and the repository's full name, nothing else. A payload's `clone_url` only
 * serves as a cross-check; a worker's `remote.origin.*` is never read.
 */

const NAME_PART = /^[A-Za-z0-9._-]{1,100}$/;

/** `<protocol>://<host>/<owner>/<name>.git` for a repository on the configured host. */
export function repositoryUrl(githubUrl: string, fullName: string): string {
  const base = parseBase(githubUrl);
  const parts = fullName.split("/");
  const [owner, name] = parts;
  const ok = (part: string | undefined): part is string =>
    part !== undefined && NAME_PART.test(part) && part !== "." && part !== "..";
  if (parts.length !== 2 || !ok(owner) || !ok(name)) {
    throw new WorkspaceError(`not a repository name: ${JSON.stringify(fullName)}`);
  }
  return `${base.protocol}//${base.host}/${owner}/${name}.git`;
}

/**
 * A payload that places the repository on another host than the one Overseer is
 * configured for comes from a misconfigured App or a forged delivery; either way nothing
 * is cloned.
 */
export function assertOnConfiguredHost(githubUrl: string, cloneUrl: string): void {
  const expected = parseBase(githubUrl).host.toLowerCase();
  let actual: string | null = null;
  try {
    const parsed = new URL(cloneUrl);
    if (parsed.protocol === "https:" || parsed.protocol === "http:") {
      actual = parsed.host.toLowerCase();
    }
  } catch {
    // Not a URL at all (a path, an scp-style address): refused below.
  }
  if (actual === expected) return;
  throw new ConfigError(
    `refusing the repository's clone_url ${JSON.stringify(cloneUrl)}: it is not on the configured GitHub host ${expected} (set GHE_HOST and GHE_PROTOCOL to the host the App is installed on)`,
  );
}

/** The transport of a URL Overseer may use, or a refusal: https or http, never file:, ssh or a path. */
export function remoteProtocolOf(url: string): RemoteProtocol {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new WorkspaceError(
      `unusable clone_url (expected an http(s) URL): ${JSON.stringify(url)}`,
    );
  }
  if (parsed.protocol === "https:") return "https";
  if (parsed.protocol === "http:") return "http";
  throw new WorkspaceError(
    `unusable clone_url (scheme ${parsed.protocol} is not allowed; only https, or http for a local stand-in)`,
  );
}

function parseBase(githubUrl: string): URL {
  const base = new URL(githubUrl);
  if (base.protocol !== "https:" && base.protocol !== "http:") {
    throw new ConfigError(`GitHub URL ${githubUrl} is neither https nor http`);
  }
  return base;
}
