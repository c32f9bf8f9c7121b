import { generateKeyPairSync } from "node:crypto";
import nock from "nock";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createOverseerProbot } from "../../src/github/probot.js";
import { createRunnerGithub } from "../../src/runner/github.js";

const { privateKey } = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  privateKeyEncoding: { type: "pkcs1", format: "pem" },
  publicKeyEncoding: { type: "spki", format: "pem" },
});

describe("the installation token git pushes with", () => {
  it("comes from the GitHub Enterprise host, not api.github.com", async () => {
    const api = "https://ghe.example.com/api/v3";
    nock(api)
      .post("/app/installations/4242/access_tokens")
      .reply(201, {
        token: "ghs_fromtheenterprisehost",
        expires_at: new Date(Date.now() + 3_600_000).toISOString(),
      });
    const probot = createOverseerProbot(
      { appId: 1, privateKey, webhookSecret: "test", githubApiUrl: api },
      pino({ level: "silent" }),
    );
    const github = createRunnerGithub(await probot.auth(4242));
    expect(await github.installationToken()).toBe("ghs_fromtheenterprisehost");
  });
});
