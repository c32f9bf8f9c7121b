import { describe, expect, it } from "vitest";
import { defangClosingKeywords, defangMentions, defangSummary } from "../../src/domain/defang.js";

const ZWSP = "\u200b";

describe("defangClosingKeywords", () => {
  it.each([
    "Fixes #12",
    "fixed #12",
    "Closes: #12",
    "close #12",
    "Resolves acme/web#12",
    "resolved https://github.com/acme/web/issues/12",
    "FIX #12",
  ])("neutralises %j for another issue", (text) => {
    const out = defangClosingKeywords(text, 7);
    expect(out).not.toBe(text);
    expect(out.replaceAll(ZWSP, "")).toBe(text);
    // What GitHub looks for: a keyword, optional colon, whitespace, a reference.
    expect(out).not.toMatch(/\b(close[sd]?|fix(e[sd])?|resolve[sd]?):?\s+\S*#?\d+/i);
  });

  it("keeps the task's own issue, and leaves mere references alone", () => {
    expect(defangClosingKeywords("Fixes #7", 7)).toBe("Fixes #7");
    expect(defangClosingKeywords("See #12 and the prefix fixture", 7)).toBe(
      "See #12 and the prefix fixture",
    );
  });

  it("handles several in one text", () => {
    const out = defangClosingKeywords("Fixes #1, fixes #2 and closes #7.", 7);
    expect(out).toBe(`Fixes${ZWSP} #1, fixes${ZWSP} #2 and closes #7.`);
  });
});

describe("defangMentions", () => {
  it("keeps @mentions and team mentions from notifying, and e-mail addresses as they are", () => {
    expect(defangMentions("thanks @octocat and @acme/security")).toBe(
      `thanks @${ZWSP}octocat and @${ZWSP}acme/security`,
    );
    expect(defangMentions("mail dev@example.com")).toBe(`mail dev@${ZWSP}example.com`);
  });

  it("keeps a summary from posing as one of Overseer's markers", () => {
    expect(defangMentions("<!-- overseer:status -->")).not.toContain("<!--");
  });
});

describe("defangSummary", () => {
  it("does both", () => {
    const out = defangSummary("Fixes #3. Ping @boss.", 9);
    expect(out).toBe(`Fixes${ZWSP} #3. Ping @${ZWSP}boss.`);
  });
});
