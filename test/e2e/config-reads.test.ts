import nock from "nock";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import {
  API,
  ageConfigReads,
  mockInstallationToken,
  startTestApp,
  type TestApp,
} from "../support/github-app.js";
import { expectGithubCallsDone } from "../support/network.js";
import { labeledPayload, OWNER, REPO_PATH, taskOf } from "../support/scenario.js";

/**
 * `.github/overseer.yml` is read for a trigger label with the ETag of the last answer: an
 * unchanged file is a 304 (no rate limit) answered with the stored text; a changed or
 * deleted one is seen at once; a missing one (a 404 has no ETag) is trusted for a minute.
 */

const CONFIG = /\/contents\/\.github(%2F|\/)overseer\.yml/;
const inRepo = (uri: string) => uri.includes(`${REPO_PATH}/contents/`) && CONFIG.test(uri);
const inOwnersDotGithub = (uri: string) =>
  uri.includes(`/repos/${OWNER}/.github/contents/`) && CONFIG.test(uri);

let db: TestDatabase;
let app: TestApp;
let issue = 900;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url);
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});
beforeEach(async () => {
  issue += 1;
  mockInstallationToken().persist();
  await db.pool.query("DELETE FROM github_conditional_reads");
});

/** Labels a new issue (its status comment and label answered) and returns its task. */
async function label(number = issue) {
  nock(API)
    .post(`${REPO_PATH}/issues/${number}/comments`)
    .reply(201, { id: 910_000 + number })
    .post(`${REPO_PATH}/issues/${number}/labels`)
    .reply(200, []);
  expect((await app.send("issues", labeledPayload(number))).status).toBe(202);
  await app.settleOutbox();
  const task = await taskOf(db.pool, number);
  expect(task?.state).toBe("queued");
  return task;
}

/** The repository's file, answered 200 with `etag` to a request that carried none. */
function fileFirstRead(yaml: string, etag: string) {
  return nock(API, { badheaders: ["if-none-match"] })
    .get(inRepo)
    .reply(200, yaml, { "content-type": "text/plain; charset=utf-8", etag });
}

describe("reading .github/overseer.yml for a trigger label", () => {
  it("asks with the stored ETag, and uses the stored text when GitHub answers 304", async () => {
    fileFirstRead("max_attempts: 7\n", '"v1"');
    expect(await label(issue)).toMatchObject({ max_attempts: 7 });
    expectGithubCallsDone();

    mockInstallationToken().persist();
    const conditional = nock(API, { reqheaders: { "if-none-match": '"v1"' } })
      .get(inRepo)
      .reply(304, "", { etag: '"v1"' });
    // The file was found, so the owner's .github repository is not asked (no mock for it).
    expect(await label(issue + 1000)).toMatchObject({ max_attempts: 7 });
    expect(conditional.isDone()).toBe(true);
  });

  it("a changed file is read at once: its ETag no longer matches", async () => {
    fileFirstRead("max_attempts: 7\n", '"v1"');
    await label(issue);
    expectGithubCallsDone();

    mockInstallationToken().persist();
    nock(API, { reqheaders: { "if-none-match": '"v1"' } })
      .get(inRepo)
      .reply(200, "max_attempts: 4\n", {
        "content-type": "text/plain; charset=utf-8",
        etag: '"v2"',
      });
    expect(await label(issue + 1000)).toMatchObject({ max_attempts: 4 });
    const stored = await db.pool.query(
      "SELECT etag, body FROM github_conditional_reads WHERE key = $1",
      [`config:${OWNER}/Hello-World`.toLowerCase()],
    );
    expect(stored.rows).toEqual([{ etag: '"v2"', body: "max_attempts: 4\n" }]);
  });

  it("a deleted file is seen at once: the conditional request answers 404", async () => {
    fileFirstRead("max_attempts: 7\n", '"v1"');
    await label(issue);
    expectGithubCallsDone();

    mockInstallationToken().persist();
    nock(API, { reqheaders: { "if-none-match": '"v1"' } })
      .get(inRepo)
      .reply(404, { message: "Not Found" });
    nock(API).get(inOwnersDotGithub).reply(404, { message: "Not Found" });
    expect(await label(issue + 1000)).toMatchObject({ max_attempts: 3 });
  });

  it("a missing file is not asked for again within a minute; after that it is, and a new file counts", async () => {
    nock(API)
      .get(inRepo)
      .reply(404, { message: "Not Found" })
      .get(inOwnersDotGithub)
      .reply(404, { message: "Not Found" });
    expect(await label(issue)).toMatchObject({ max_attempts: 3 });
    expectGithubCallsDone();

    // No mock for either file: a request for one would fail the test.
    mockInstallationToken().persist();
    expect(await label(issue + 1000)).toMatchObject({ max_attempts: 3 });
    expectGithubCallsDone();

    mockInstallationToken().persist();
    await ageConfigReads(db.pool);
    nock(API)
      .get(inRepo)
      .reply(200, "max_attempts: 5\n", { "content-type": "text/plain; charset=utf-8" });
    expect(await label(issue + 2000)).toMatchObject({ max_attempts: 5 });
  });

  it("a file found only in the owner's .github repository is asked for conditionally too", async () => {
    nock(API)
      .get(inRepo)
      .reply(404, { message: "Not Found" })
      .get(inOwnersDotGithub)
      .reply(200, "max_attempts: 6\n", {
        "content-type": "text/plain; charset=utf-8",
        etag: '"o1"',
      });
    expect(await label(issue)).toMatchObject({ max_attempts: 6 });
    expectGithubCallsDone();

    mockInstallationToken().persist();
    await ageConfigReads(db.pool);
    nock(API).get(inRepo).reply(404, { message: "Not Found" });
    nock(API, { reqheaders: { "if-none-match": '"o1"' } })
      .get(inOwnersDotGithub)
      .reply(304, "");
    expect(await label(issue + 1000)).toMatchObject({ max_attempts: 6 });
  });

  it("a file over 64 KB is refused whether GitHub sends it or a 304 stands for it, and is not kept", async () => {
    const big = `label: overseer\n${`# ${"x".repeat(100)}\n`.repeat(700)}`;
    const told: string[] = [];
    const replies = () =>
      nock(API)
        .post(`${REPO_PATH}/issues/${issue}/comments`, (body) => {
          told.push(body.body);
          return true;
        })
        .reply(201, { id: 920_000 + told.length });
    fileFirstRead(big, '"big"');
    replies();
    expect((await app.send("issues", labeledPayload(issue))).status).toBe(202);
    await app.settleOutbox();
    const kept = await db.pool.query("SELECT key FROM github_conditional_reads");
    expect(kept.rows).toEqual([]);
    expectGithubCallsDone();

    // The watchdog keeps whatever it read: such an answer stored with its ETag.
    await db.pool.query(
      "INSERT INTO github_conditional_reads (key, etag, body) VALUES ($1, $2, to_jsonb($3::text))",
      [`config:${OWNER}/Hello-World`.toLowerCase(), '"big"', big],
    );
    mockInstallationToken().persist();
    nock(API, { reqheaders: { "if-none-match": '"big"' } })
      .get(inRepo)
      .reply(304, "");
    // A label on another issue; the reply for a broken config is said once per issue.
    issue += 1000;
    replies();
    expect((await app.send("issues", labeledPayload(issue))).status).toBe(202);
    await app.settleOutbox();
    expect(told).toHaveLength(2);
    for (const body of told) expect(body).toContain("Overseer reads at most 64 KB");
    const tasks = await db.pool.query("SELECT 1 FROM tasks WHERE issue_number = ANY($1)", [
      [issue, issue - 1000],
    ]);
    expect(tasks.rowCount).toBe(0);
  });
});
