import nock from "nock";
import { ProbotOctokit } from "probot";
import { describe, expect, it } from "vitest";
import {
  hasCommandPermission,
  PERMISSION_RANK,
  PermissionCache,
  permissionAtLeast,
  permissionFromResponse,
  refusalText,
} from "../../src/github/permissions.js";

const API = "https://api.github.com";
const PATH = "/repos/o/r/collaborators/u/permission";

function octokit() {
  return new ProbotOctokit({
    auth: { token: "t" },
    throttle: { enabled: false },
    retry: { enabled: false },
  });
}

/** What GitHub answers for a collaborator with this role (legacy `permission` folded). */
function answer(role: string, legacy: string) {
  return { permission: legacy, role_name: role, user: { login: "u" } };
}

describe("PERMISSION_RANK", () => {
  it("orders none < read < triage < write < maintain < admin", () => {
    const order = Object.entries(PERMISSION_RANK)
      .sort(([, a], [, b]) => a - b)
      .map(([name]) => name);
    expect(order).toEqual(["none", "read", "triage", "write", "maintain", "admin"]);
    expect(permissionAtLeast("maintain", "write")).toBe(true);
    expect(permissionAtLeast("triage", "write")).toBe(false);
  });
});

describe("hasCommandPermission", () => {
  it.each<[string, string, string, boolean]>([
    ["admin", "admin", "admin", true],
    ["maintain", "write", "maintain", true],
    ["write", "write", "write", true],
    ["triage", "read", "triage", false],
    ["read", "read", "read", false],
  ])(
    "role %s (legacy %s) resolves to %s; allowed for write: %s",
    async (role, legacy, expected, allowed) => {
      nock(API).get(PATH).reply(200, answer(role, legacy));
      const result = await hasCommandPermission(octokit(), {
        owner: "o",
        repo: "r",
        username: "u",
        required: "write",
      });
      expect(result).toEqual({ allowed, permission: expected });
      expect(nock.isDone()).toBe(true);
    },
  );

  it("compares against the required level", async () => {
    nock(API).get(PATH).times(3).reply(200, answer("maintain", "write"));
    const client = octokit();
    const ask = (required: "write" | "maintain" | "admin") =>
      hasCommandPermission(client, { owner: "o", repo: "r", username: "u", required });
    expect((await ask("write")).allowed).toBe(true);
    expect((await ask("maintain")).allowed).toBe(true);
    expect((await ask("admin")).allowed).toBe(false);
    expect(nock.isDone()).toBe(true);
  });

  it("falls back to the permission flags, then the legacy field, for a custom role", async () => {
    nock(API)
      .get(PATH)
      .reply(200, {
        permission: "write",
        role_name: "release-manager",
        user: {
          login: "u",
          permissions: { admin: false, maintain: true, push: true, triage: true, pull: true },
        },
      });
    const withFlags = await hasCommandPermission(octokit(), {
      owner: "o",
      repo: "r",
      username: "u",
      required: "maintain",
    });
    expect(withFlags).toEqual({ allowed: true, permission: "maintain" });

    nock(API)
      .get(PATH)
      .reply(200, { permission: "read", role_name: "auditor", user: { login: "u" } });
    const legacyOnly = await hasCommandPermission(octokit(), {
      owner: "o",
      repo: "r",
      username: "u",
      required: "write",
    });
    expect(legacyOnly).toEqual({ allowed: false, permission: "read" });
    expect(nock.isDone()).toBe(true);
  });

  it("treats 404 (not a collaborator) as no permission", async () => {
    nock(API).get(PATH).reply(404, { message: "Not Found" });
    const result = await hasCommandPermission(octokit(), {
      owner: "o",
      repo: "r",
      username: "u",
      required: "write",
    });
    expect(result).toEqual({ allowed: false, permission: "none" });
    expect(nock.isDone()).toBe(true);
  });

  it("lets other API failures through, uncached", async () => {
    const cache = new PermissionCache();
    nock(API).get(PATH).reply(500, { message: "boom" });
    nock(API).get(PATH).reply(200, answer("write", "write"));
    const query = { owner: "o", repo: "r", username: "u", required: "write" as const, cache };
    await expect(hasCommandPermission(octokit(), query)).rejects.toMatchObject({ status: 500 });
    expect(await hasCommandPermission(octokit(), query)).toEqual({
      allowed: true,
      permission: "write",
    });
    expect(nock.isDone()).toBe(true);
  });

  it("asks GitHub once for a burst of commands, and again after the TTL", async () => {
    let now = 1_000_000;
    const cache = new PermissionCache({ ttlMs: 60_000, now: () => now });
    const client = octokit();
    const query = {
      owner: "o",
      repo: "r",
      username: "u",
      required: "write" as const,
      cache,
      installationId: 7,
    };
    const scope = nock(API).get(PATH).reply(200, answer("write", "write"));

    const first = await hasCommandPermission(client, query);
    expect(scope.isDone()).toBe(true);
    expect(first).toEqual({ allowed: true, permission: "write" });

    // No interceptor is left: a second request would fail with nock's "no match" error.
    const second = await hasCommandPermission(client, { ...query, username: "U" });
    expect(second).toEqual(first);
    expect(nock.pendingMocks()).toEqual([]);
    expect(nock.isDone()).toBe(true);

    now += 60_001;
    nock(API).get(PATH).reply(200, answer("read", "read"));
    expect(await hasCommandPermission(client, query)).toEqual({
      allowed: false,
      permission: "read",
    });
    expect(nock.isDone()).toBe(true);
  });

  it("shares one in-flight request between simultaneous commands", async () => {
    const cache = new PermissionCache();
    nock(API).get(PATH).delay(20).reply(200, answer("admin", "admin"));
    const client = octokit();
    const query = { owner: "o", repo: "r", username: "u", required: "admin" as const, cache };
    const results = await Promise.all([
      hasCommandPermission(client, query),
      hasCommandPermission(client, query),
      hasCommandPermission(client, query),
    ]);
    expect(results.every((result) => result.allowed)).toBe(true);
    expect(nock.isDone()).toBe(true);
  });

  it("keys the cache by installation, repository and user", async () => {
    const cache = new PermissionCache();
    nock(API).get(PATH).times(2).reply(200, answer("write", "write"));
    const client = octokit();
    const base = { owner: "o", repo: "r", username: "u", required: "write" as const, cache };
    await hasCommandPermission(client, { ...base, installationId: 1 });
    await hasCommandPermission(client, { ...base, installationId: 2 });
    expect(nock.isDone()).toBe(true);
    expect(cache.size).toBe(2);
  });
});

describe("PermissionCache", () => {
  it("drops the oldest entries beyond its size", async () => {
    const cache = new PermissionCache({ maxEntries: 2 });
    for (const key of ["a", "b", "c"]) await cache.getOrLoad(key, async () => "read");
    expect(cache.size).toBe(2);
    let loads = 0;
    await cache.getOrLoad("a", async () => {
      loads++;
      return "write";
    });
    expect(loads).toBe(1);
  });
});

describe("permissionFromResponse", () => {
  it.each<[unknown, string]>([
    [{ role_name: "maintain", permission: "write" }, "maintain"],
    [{ role_name: "triage", permission: "read" }, "triage"],
    [{ role_name: "custom", permission: "admin" }, "admin"],
    [{ role_name: "custom", permission: "mystery" }, "none"],
    [{ permission: "none" }, "none"],
    [{}, "none"],
    [null, "none"],
  ])("%j → %s", (data, expected) => {
    expect(permissionFromResponse(data)).toBe(expected);
  });
});

describe("refusalText", () => {
  it("says who may command and what the person has", () => {
    expect(refusalText("mallory", "read", "write")).toBe(
      "@mallory, only people with write access or higher can command Overseer here (you have read).",
    );
    expect(refusalText("mallory", "write", "maintain")).toContain(
      "only people with maintain access or higher",
    );
    expect(refusalText("mallory", "maintain", "admin")).toBe(
      "@mallory, only people with admin access can command Overseer here (you have maintain).",
    );
    expect(refusalText("eve", "none", "write")).toContain("(you have no access)");
  });
});
