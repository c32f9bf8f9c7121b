import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import {
  branchName,
  isValidBranchName,
  isValidRefName,
  SLUG_MAX_LENGTH,
  slugify,
} from "../../src/domain/branch.js";

/** git itself is the reference: every verdict below is also asked of the real binary. */
function gitAccepts(ref: string, ...flags: string[]): boolean {
  return spawnSync("git", ["check-ref-format", ...flags, ref], { stdio: "ignore" }).status === 0;
}

const HOSTILE_TITLES = [
  "..",
  "a..b",
  "@{upstream}",
  "@",
  "-rf /",
  "--force",
  "refs/heads/main",
  "/leading/and/trailing/",
  "branch.lock",
  "trailing.",
  ".hidden",
  "tab\there\nnewline\u0000nul\u001bescape\u007fdel",
  "~^:?*[\\ ",
  "   ",
  "",
  "🚀".repeat(2_500), // 10 kB of emoji
  `${"🚀".repeat(2_500)} real words after`,
  "Ｆｕｌｌｗｉｄｔｈ ｔｉｔｌｅ",
  "Café crème brûlée — naïve façade",
  "İstanbul ıi ß",
  "中文标题",
  "a".repeat(10_000),
  "word ".repeat(100),
  "\ud800 lone surrogate",
];

describe("branchName", () => {
  it("is overseer/<issue>-<slug> from the title", () => {
    expect(branchName(42, "Fix the login page")).toBe("overseer/42-fix-the-login-page");
    expect(branchName(7, "Café crème")).toBe("overseer/7-cafe-creme");
  });

  it("is stable for a given issue and title", () => {
    for (const title of HOSTILE_TITLES) {
      expect(branchName(3, title)).toBe(branchName(3, title));
    }
  });

  it.each(HOSTILE_TITLES.map((title) => [JSON.stringify(title).slice(0, 60), title]))(
    "gives a valid name for the hostile title %s",
    (_label, title) => {
      const name = branchName(12, title);
      expect(name).toMatch(/^overseer\/12-[a-z0-9]+(-[a-z0-9]+)*$/);
      expect(name.length).toBeLessThanOrEqual("overseer/12-".length + SLUG_MAX_LENGTH);
      expect(isValidBranchName(name)).toBe(true);
      expect(gitAccepts(name, "--branch")).toBe(true);
      expect(gitAccepts(`refs/heads/${name}`)).toBe(true);
    },
  );

  it("falls back to a fixed slug when no ASCII survives", () => {
    expect(branchName(5, "🚀🚀🚀")).toBe("overseer/5-task");
    expect(branchName(5, "中文标题")).toBe("overseer/5-task");
  });

  it("cuts long titles at a word boundary", () => {
    const slug = slugify("implement the entire distributed consensus protocol from scratch today");
    expect(slug.length).toBeLessThanOrEqual(SLUG_MAX_LENGTH);
    expect(slug).toBe("implement-the-entire-distributed-consensus");
  });

  it("looks only at the start of a huge title, so its cost does not grow with it", () => {
    // Everything past the first few hundred characters is never read: the same name comes
    // out whatever follows, and a title of emoji gives the fallback slug.
    expect(branchName(1, "🚀".repeat(5_000) + "x".repeat(100_000))).toBe("overseer/1-task");
    const long = "word ".repeat(20_000);
    expect(branchName(1, long)).toBe(branchName(1, `${long.slice(0, 400)}${"z".repeat(100_000)}`));
  });

  it.each([0, -1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 2])(
    "refuses the issue number %s",
    (issue) => {
      expect(() => branchName(issue, "x")).toThrow(RangeError);
    },
  );
});

const REF_CORPUS = [
  "refs/heads/main",
  "refs/heads/overseer/1-x",
  "main",
  "refs/heads/a..b",
  "refs/heads/a.b",
  "refs/heads/.hidden",
  "refs/heads/x/.y",
  "refs/heads/x.lock",
  "refs/heads/x.lock/y",
  "refs/heads/x.locked",
  "refs/heads/trailing.",
  "refs/heads/trailing/",
  "/refs/heads/x",
  "refs//heads/x",
  "refs/heads/a@{b",
  "refs/heads/a@b",
  "refs/heads/a{b",
  "@",
  "refs/@",
  "refs/heads/@",
  "refs/heads/sp ace",
  "refs/heads/tab\tx",
  "refs/heads/del\u007fx",
  "refs/heads/esc\u001bx",
  "refs/heads/til~de",
  "refs/heads/car^et",
  "refs/heads/co:lon",
  "refs/heads/q?",
  "refs/heads/st*r",
  "refs/heads/br[acket",
  "refs/heads/back\\slash",
  "refs/heads/émoji-🚀",
  "refs/heads/-leading-dash",
  "refs/heads/x.",
  "refs/heads/.",
  "refs/heads/..",
  "refs/heads/x/..",
  "refs/heads/a/./b",
  "",
  "a/b",
  "HEAD",
];

describe("isValidRefName", () => {
  it.each(REF_CORPUS.map((ref) => [JSON.stringify(ref), ref]))(
    "agrees with git check-ref-format on %s",
    (_label, ref) => {
      expect(isValidRefName(ref)).toBe(gitAccepts(ref));
      expect(isValidRefName(ref, { allowOneLevel: true })).toBe(
        gitAccepts(ref, "--allow-onelevel"),
      );
    },
  );

  it("rejects strings git would receive as different bytes", () => {
    expect(isValidRefName("refs/heads/\ud800x")).toBe(false);
  });
});

describe("isValidBranchName", () => {
  it.each([
    ["overseer/1-x", true],
    ["main", true],
    ["-x", false],
    ["HEAD", false],
    ["a..b", false],
    ["x.lock", false],
  ] as const)("%s → %s", (name, expected) => {
    expect(isValidBranchName(name)).toBe(expected);
    if (name !== "HEAD") expect(gitAccepts(name, "--branch")).toBe(expected);
  });
});
