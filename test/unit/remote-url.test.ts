import { describe, expect, it } from "vitest";
import { readEnv } from "../../src/config/env.js";
import { ConfigError } from "../../src/errors.js";
import {
  assertOnConfiguredHost,
  repositoryUrl,
  WorkspaceError,
} from "../../src/workspace/index.js";

describe("where Overseer's git goes", () => {
  it("is the configured host and the repository's full name, github.com by default", () => {
    expect(readEnv({}).githubUrl).toBe("https://github.com");
    expect(readEnv({ GHE_HOST: "git.corp.example:8443" }).githubUrl).toBe(
      "https://git.corp.example:8443",
    );
    expect(readEnv({ GHE_HOST: "127.0.0.1:9000", GHE_PROTOCOL: "http" }).githubUrl).toBe(
      "http://127.0.0.1:9000",
    );
    expect(repositoryUrl("https://github.com", "Acme/Web")).toBe("https://github.com/Acme/Web.git");
    expect(repositoryUrl("http://127.0.0.1:9000", "acme/web")).toBe(
      "http://127.0.0.1:9000/acme/web.git",
    );
  });

  it.each(["acme", "acme/web/extra", "../etc", "acme/..", "acme/we b", "acme/web?x=1"])(
    "refuses the repository name %j",
    (name) => {
      expect(() => repositoryUrl("https://github.com", name)).toThrow(WorkspaceError);
    },
  );

  it("accepts a payload clone_url on the configured host", () => {
    expect(() =>
      assertOnConfiguredHost("https://github.com", "https://github.com/acme/web.git"),
    ).not.toThrow();
    expect(() =>
      assertOnConfiguredHost("http://127.0.0.1:9000", "http://127.0.0.1:9000/acme/web.git"),
    ).not.toThrow();
  });

  it.each([
    "https://evil.example/acme/web.git",
    "https://github.com.evil.example/acme/web.git",
    "http://127.0.0.1:9001/acme/web.git",
    "file:///srv/git/acme/web.git",
    "/srv/git/acme/web.git",
    "git@github.com:acme/web.git",
    "ssh://git@github.com/acme/web.git",
    "ext::sh -c touch% /tmp/pwned",
  ])("refuses a payload clone_url %j as a configuration error", (cloneUrl) => {
    const host = cloneUrl.includes("127.0.0.1") ? "http://127.0.0.1:9000" : "https://github.com";
    expect(() => assertOnConfiguredHost(host, cloneUrl)).toThrow(ConfigError);
    expect(() => assertOnConfiguredHost(host, cloneUrl)).toThrow(
      /not on the configured GitHub host/,
    );
  });
});
