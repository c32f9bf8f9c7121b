import nock from "nock";
import { afterEach } from "vitest";

/**
 * Only GitHub's API is mocked, and strictly: after every test, a declared GitHub call that
 * was not made, or a call to GitHub that no mock declared, fails the test, naming the call.
 * Anything else off this machine is a bug in the test; loopback (the app under test, git
 * servers, PostgreSQL) stays reachable.
 */
nock.disableNetConnect();
nock.enableNetConnect(/^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/);

const unexpected: string[] = [];
/** Hosts (host:port) of GitHub stand-ins in this process: they check their own routes. */
const standIns = new Set<string>();

/**
 * The GitHub stand-in (test/support/github-stand-in.ts) answers on this host: its API calls
 * are not nock's to declare (the stand-in refuses undocumented routes itself and records
 * every call for the test to assert).
 */
export function answeredByStandIn(host: string): void {
  standIns.add(host);
}

interface NoMatchRequest {
  method?: string;
  host?: string;
  hostname?: string;
  path?: string;
  href?: string;
}

/** GitHub's API: api.github.com, or a GitHub Enterprise stand-in's /api/v3. */
function isGithubApi(request: NoMatchRequest): { method: string; where: string } | null {
  let host = request.hostname ?? request.host ?? "";
  let path = request.path ?? "";
  let hostWithPort = request.host ?? host;
  if (request.href) {
    try {
      const url = new URL(request.href);
      host = url.hostname;
      hostWithPort = url.host;
      path = `${url.pathname}${url.search}`;
    } catch {
      // Not a URL; keep what the options said.
    }
  }
  if (standIns.has(hostWithPort)) return null;
  if (host !== "api.github.com" && !path.startsWith("/api/v3/")) return null;
  return { method: (request.method ?? "GET").toUpperCase(), where: `${host}${path}` };
}

nock.emitter.on("no match", (request: NoMatchRequest) => {
  const call = isGithubApi(request);
  if (call) unexpected.push(`${call.method} ${call.where}`);
});

/**
 * Checks the GitHub calls so far (every declared one made, no undeclared one) and clears
 * the mocks: after it, any call to GitHub fails the test. Runs after every test; a test
 * may also call it half-way, before the part that must make no call at all.
 */
export function expectGithubCallsDone(): void {
  const notMade = nock.pendingMocks();
  const surprises = unexpected.splice(0);
  nock.cleanAll();
  const problems = [
    ...notMade.map((call) => `declared but not made: ${call}`),
    ...surprises.map((call) => `made but not declared: ${call}`),
  ];
  if (problems.length > 0) {
    throw new Error(`GitHub API calls did not match the test:\n  ${problems.join("\n  ")}`);
  }
}

afterEach(expectGithubCallsDone);
