import { describe, expect, it } from "vitest";
import { helpText, MAX_REVISION_REQUEST_LENGTH, parseCommands } from "../../src/domain/commands.js";

describe("/revise carries its request", () => {
  it("takes the rest of the line", () => {
    expect(parseCommands("/revise rename foo to bar")).toEqual({
      commands: ["revise"],
      unknown: [],
      revisionRequest: "rename foo to bar",
    });
  });

  it("takes the lines after it, code and quotes included, up to the next command", () => {
    const body = [
      "Thanks! A few things.",
      "",
      "/revise",
      "Rename `foo` to `bar`:",
      "",
      "```ts",
      "/stop is not a command here",
      "```",
      "> keep this quoted example",
      "",
      "/status",
      "and this belongs to no command",
    ].join("\n");
    const parsed = parseCommands(body);
    expect(parsed.commands).toEqual(["revise", "status"]);
    expect(parsed.revisionRequest).toBe(
      [
        "Rename `foo` to `bar`:",
        "",
        "```ts",
        "/stop is not a command here",
        "```",
        "> keep this quoted example",
      ].join("\n"),
    );
  });

  it("joins several /revise in one comment, in order", () => {
    expect(parseCommands("/revise first\n/retry\n/revise second\r\nmore").revisionRequest).toBe(
      "first\n\nsecond\r\nmore",
    );
  });

  it("a /revise with nothing after it has no request (the review comments are the request)", () => {
    const parsed = parseCommands("/revise\n\n");
    expect(parsed).toEqual({ commands: ["revise"], unknown: [] });
  });

  it("a /revise that GitHub does not show (code, quote, comment) is neither a command nor a request", () => {
    for (const body of [
      "`/revise x`",
      "> /revise x",
      "    /revise x",
      "<!-- /revise x -->",
      "```\n/revise x\n```",
    ]) {
      expect(parseCommands(body), body).toEqual({ commands: [], unknown: [] });
    }
  });

  it("commands after a hidden block still end the request at the right place", () => {
    const body = "/revise a\n\n```\n/cancel\n```\nb\n/help";
    const parsed = parseCommands(body);
    expect(parsed.commands).toEqual(["revise", "help"]);
    expect(parsed.revisionRequest).toBe("a\n\n```\n/cancel\n```\nb");
  });

  it("is case-insensitive and survives a byte-order mark and CRLF", () => {
    expect(parseCommands("\uFEFF/ReViSe do it\r\n").revisionRequest).toBe("do it");
  });

  it("caps a huge request", () => {
    const request = parseCommands(
      `/revise ${"x".repeat(MAX_REVISION_REQUEST_LENGTH + 5_000)}`,
    ).revisionRequest;
    expect(request?.length).toBeLessThan(MAX_REVISION_REQUEST_LENGTH + 100);
    expect(request).toMatch(/\[… cut by Overseer: 5000 more characters\]$/);
  });

  it("/revize and /revisee are typos answered with the help, not requests", () => {
    expect(parseCommands("/revize it")).toEqual({ commands: [], unknown: ["/revize"] });
    expect(parseCommands("/revisee")).toEqual({ commands: [], unknown: ["/revisee"] });
  });

  it("the help lists /revise", () => {
    expect(helpText()).toContain("- `/revise`: on the PR or here");
  });
});
