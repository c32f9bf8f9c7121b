import { describe, expect, it } from "vitest";
import { claimOutcome } from "../../src/domain/claim.js";

describe("claimOutcome", () => {
  it("reads the claim off the claimed rule: running, one attempt charged, status and label", () => {
    expect(claimOutcome(false)).toEqual({
      state: "running",
      charge: "attempts",
      effects: [{ type: "status_comment" }, { type: "state_label", state: "running" }],
    });
  });

  it("a pending revision charges a revision and brings the PR's check run up to date", () => {
    expect(claimOutcome(true)).toEqual({
      state: "running",
      charge: "revisions",
      effects: [
        { type: "check_run" },
        { type: "status_comment" },
        { type: "state_label", state: "running" },
      ],
    });
  });
});
