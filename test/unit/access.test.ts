import type http from "node:http";
import { describe, expect, it } from "vitest";
import { formatTable } from "../../src/cli/output.js";
import { parseTaskName } from "../../src/db/task-views.js";
import {
  authenticate,
  checkCsrf,
  issueSession,
  SESSION_MS,
  safeNext,
  verifySession,
} from "../../src/web/access.js";
import { html } from "../../src/web/html.js";

const TOKEN = "a-long-admin-token-for-tests";

function request(
  remoteAddress: string,
  headers: Record<string, string> = {},
): http.IncomingMessage {
  return {
    socket: { remoteAddress },
    headers: { host: "127.0.0.1:3000", ...headers },
  } as unknown as http.IncomingMessage;
}

describe("access without OVERSEER_ADMIN_TOKEN", () => {
  it.each(["127.0.0.1", "::1", "::ffff:127.0.0.1"])("lets %s in", (address) => {
    expect(authenticate(request(address), undefined)).toEqual({
      ok: true,
      principal: { via: "loopback" },
    });
  });

  it.each(["127.0.0.2", "10.0.0.7", "::ffff:192.168.1.4", ""])(
    "refuses %s with a line saying how to enable access",
    (address) => {
      const decision = authenticate(request(address), undefined);
      expect(decision).toMatchObject({ ok: false, status: 403 });
      if (decision.ok) return;
      expect(decision.reason).toContain("Set OVERSEER_ADMIN_TOKEN");
    },
  );

  it("refuses a request a proxy on this host forwarded (it came from someone else)", () => {
    for (const header of ["x-forwarded-for", "forwarded", "x-real-ip"]) {
      expect(
        authenticate(request("127.0.0.1", { [header]: "203.0.113.9" }), undefined),
      ).toMatchObject({
        ok: false,
        status: 403,
      });
    }
  });

  it("refuses a page of another site whose name resolves to 127.0.0.1 (DNS rebinding)", () => {
    expect(
      authenticate(request("127.0.0.1", { host: "evil.example:3000" }), undefined),
    ).toMatchObject({
      ok: false,
      status: 403,
    });
    for (const host of ["localhost:3000", "[::1]:3000", "app.localhost", "127.0.0.1"]) {
      expect(authenticate(request("127.0.0.1", { host }), undefined).ok).toBe(true);
    }
  });
});

describe("access with OVERSEER_ADMIN_TOKEN", () => {
  it("needs the token even on loopback; a bearer header with it is enough", () => {
    expect(authenticate(request("127.0.0.1"), TOKEN)).toMatchObject({
      ok: false,
      status: 401,
      login: true,
    });
    expect(authenticate(request("10.1.2.3", { authorization: `Bearer ${TOKEN}` }), TOKEN)).toEqual({
      ok: true,
      principal: { via: "bearer" },
    });
    expect(
      authenticate(request("10.1.2.3", { authorization: `Bearer ${TOKEN}x` }), TOKEN),
    ).toMatchObject({ ok: false, status: 401 });
    expect(
      authenticate(request("10.1.2.3", { authorization: `Basic ${TOKEN}` }), TOKEN),
    ).toMatchObject({
      ok: false,
    });
  });

  it("accepts a session it signed until it expires, and nothing tampered with", () => {
    const now = Date.now();
    const session = issueSession(TOKEN, now);
    expect(verifySession(TOKEN, session, now + 1_000)).toBe(true);
    expect(verifySession(TOKEN, session, now + SESSION_MS + 1)).toBe(false);
    expect(verifySession("another-admin-token-entirely", session, now)).toBe(false);
    const [version, expiry, signature] = session.split(".");
    expect(verifySession(TOKEN, `${version}.${Number(expiry) + 1_000_000}.${signature}`, now)).toBe(
      false,
    );
    expect(
      authenticate(request("10.1.2.3", { cookie: `other=1; overseer_session=${session}` }), TOKEN),
    ).toEqual({ ok: true, principal: { via: "session" } });
  });
});

describe("CSRF", () => {
  const cookie = { cookie: `overseer_csrf=${"ab".repeat(32)}` };
  it("needs the form's token to match the cookie for ambient authority (session, loopback)", () => {
    const req = request("127.0.0.1", cookie);
    expect(checkCsrf(req, { via: "loopback" }, "ab".repeat(32))).toBeNull();
    expect(checkCsrf(req, { via: "session" }, "cd".repeat(32))).toMatch(/does not match/);
    expect(checkCsrf(req, { via: "loopback" }, null)).toMatch(/missing/);
    expect(checkCsrf(request("127.0.0.1"), { via: "loopback" }, "ab".repeat(32))).toMatch(
      /missing/,
    );
  });

  it("refuses another origin even with a matching token; a bearer token needs none", () => {
    const req = request("127.0.0.1", { ...cookie, origin: "http://evil.example" });
    expect(checkCsrf(req, { via: "loopback" }, "ab".repeat(32))).toMatch(/evil\.example/);
    const crossSite = request("127.0.0.1", { ...cookie, "sec-fetch-site": "cross-site" });
    expect(checkCsrf(crossSite, { via: "session" }, "ab".repeat(32))).toMatch(/another site/);
    expect(checkCsrf(request("10.0.0.1"), { via: "bearer" }, null)).toBeNull();
  });
});

describe("small parsers", () => {
  it("safeNext keeps the redirect after login on this site", () => {
    expect(safeNext("/tasks/3?x=1")).toBe("/tasks/3?x=1");
    for (const bad of [
      "https://evil.example/",
      "//evil.example",
      "/\\evil.example",
      "",
      null,
      "tasks",
    ]) {
      expect(safeNext(bad)).toBe("/");
    }
  });

  it("parseTaskName takes an id or owner/name#N, and says what it expected otherwise", () => {
    expect(parseTaskName("42")).toEqual({ id: 42 });
    expect(parseTaskName("octo/widgets#17")).toEqual({ repo: "octo/widgets", issue: 17 });
    expect(() => parseTaskName("widgets#17")).toThrow(/owner\/name#issue/);
    expect(() => parseTaskName("42; DROP TABLE tasks")).toThrow(/not a task/);
  });

  it("html escapes everything interpolated", () => {
    const title = `<script>alert("x")</script> & 'quotes'`;
    expect(html`<td>${title}</td>`.value).toBe(
      "<td>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;</td>",
    );
  });

  it("tables align on plain text, paint only on a terminal, and strip a title's escape sequences", () => {
    const rows = [["1", { text: "failed", colour: "red" as const }, "Fix \u001b]0;owned\u0007it"]];
    expect(formatTable(["ID", "STATE", "TITLE"], rows, false)).toEqual([
      "ID  STATE   TITLE",
      "1   failed  Fix it",
    ]);
    const painted = formatTable(["ID", "STATE", "TITLE"], rows, true);
    expect(painted[1]).toBe("1   \u001b[31mfailed\u001b[0m  Fix it");
  });
});
