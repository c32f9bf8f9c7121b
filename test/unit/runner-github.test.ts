import nock from "nock";
import { describe, expect, it } from "vitest";
import { OverseerOctokit } from "../../src/github/probot.js";
import { createRunnerGithub } from "../../src/runner/github.js";
import { MAX_PROMPT_COMMENTS } from "../../src/runner/prompt.js";

const API = "https://api.github.com";
const ISSUE = "/repos/octo/widgets/issues/3";

function comments(from: number, to: number) {
  return Array.from({ length: to - from + 1 }, (_, i) => ({
    id: from + i,
    user: { login: `user${from + i}` },
    body: `comment ${from + i}`,
    created_at: new Date(Date.UTC(2026, 0, 1, 0, from + i)).toISOString(),
  }));
}

function github() {
  return createRunnerGithub(new OverseerOctokit({ auth: "ghs_test" }));
}

/** Comment numbers the prompt gets, in its order. */
async function promptComments(total: number): Promise<number[]> {
  const issue = await github().issueForPrompt("octo/widgets", 3);
  expect(issue.comments).toHaveLength(Math.min(total, MAX_PROMPT_COMMENTS));
  return issue.comments.map((comment) => Number(comment.body.replace("comment ", "")));
}

describe("the comments an agent sees", () => {
  it("21 comments: the 20 most recent, oldest first (not just the one on a last page)", async () => {
    nock(API)
      .get(ISSUE)
      .reply(200, { title: "T", body: "B", comments: 21 })
      .get(`${ISSUE}/comments`)
      .query({ per_page: "100", page: "1" })
      .reply(200, comments(1, 21));
    expect(await promptComments(21)).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
  });

  it("105 comments: reads the last page, then the one before it for the rest", async () => {
    nock(API)
      .get(ISSUE)
      .reply(200, { title: "T", body: "B", comments: 105 })
      .get(`${ISSUE}/comments`)
      .query({ per_page: "100", page: "2" })
      .reply(200, comments(101, 105))
      .get(`${ISSUE}/comments`)
      .query({ per_page: "100", page: "1" })
      .reply(200, comments(1, 100));
    expect(await promptComments(105)).toEqual(Array.from({ length: 20 }, (_, i) => i + 86));
  });

  it("250 comments: one page is enough when it holds 20 or more", async () => {
    nock(API)
      .get(ISSUE)
      .reply(200, { title: "T", body: "B", comments: 250 })
      .get(`${ISSUE}/comments`)
      .query({ per_page: "100", page: "3" })
      .reply(200, comments(201, 250));
    expect(await promptComments(250)).toEqual(Array.from({ length: 20 }, (_, i) => i + 231));
  });

  it("a stale count past the last page steps back instead of giving nothing", async () => {
    nock(API)
      .get(ISSUE)
      .reply(200, { title: "T", body: "B", comments: 101 })
      .get(`${ISSUE}/comments`)
      .query({ per_page: "100", page: "2" })
      .reply(200, [])
      .get(`${ISSUE}/comments`)
      .query({ per_page: "100", page: "1" })
      .reply(200, comments(1, 100));
    expect(await promptComments(100)).toEqual(Array.from({ length: 20 }, (_, i) => i + 81));
  });

  it("only Overseer's status comment: no comment request, the prompt has none", async () => {
    nock(API).get(ISSUE).reply(200, { title: "T", body: "B", comments: 1 });
    const issue = await github().issueForPrompt("octo/widgets", 3, 1);
    expect(issue).toEqual({ title: "T", body: "B", comments: [] });
  });

  it("one comment besides the status comment: the page is read, Overseer's own left out", async () => {
    nock(API)
      .get(ISSUE)
      .reply(200, { title: "T", body: "B", comments: 2 })
      .get(`${ISSUE}/comments`)
      .query({ per_page: "100", page: "1" })
      .reply(200, [
        {
          user: { login: "overseer[bot]" },
          body: "<!-- overseer:status task=1 -->\nqueued",
          created_at: "2026-01-01T00:00:00Z",
        },
        ...comments(2, 2),
      ]);
    const issue = await github().issueForPrompt("octo/widgets", 3, 1);
    expect(issue.comments.map((comment) => comment.body)).toEqual(["comment 2"]);
  });

  it("no comments: no comment request at all", async () => {
    nock(API).get(ISSUE).reply(200, { title: "T", body: null, comments: 0 });
    const issue = await github().issueForPrompt("octo/widgets", 3);
    expect(issue).toEqual({ title: "T", body: null, comments: [] });
  });
});
