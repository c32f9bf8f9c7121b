import { describe, expect, it } from "vitest";
import {
  type Decision,
  type DecisionAction,
  githubTime,
  newestDecision,
  orderDecision,
} from "../../src/domain/decisions.js";

const at = (seconds: number) => new Date(Date.UTC(2025, 0, 1, 12, 0, seconds));

function decision(action: DecisionAction, seconds: number): Decision {
  return { action, at: at(seconds), login: "octocat", deliveryId: `d-${action}-${seconds}` };
}

describe("ordering an issue's decisions by GitHub's times", () => {
  it("applies the first decision, and any without a time, as it comes", () => {
    expect(orderDecision({ action: "labeled", at: at(1) }, [null, null])).toBe("newer");
    expect(orderDecision({ action: "labeled", at: null }, [decision("unlabeled", 9)])).toBe(
      "newer",
    );
  });

  it("applies a later decision and refuses an earlier one, whatever the actions", () => {
    const actions: DecisionAction[] = ["labeled", "unlabeled", "closed"];
    for (const recorded of actions) {
      for (const incoming of actions) {
        expect(orderDecision({ action: incoming, at: at(6) }, [decision(recorded, 5)])).toBe(
          "newer",
        );
        expect(orderDecision({ action: incoming, at: at(4) }, [decision(recorded, 5)])).toBe(
          "stale",
        );
      }
    }
  });

  it("orders against the newest of the label's decision and the issue's close", () => {
    const recorded = [decision("labeled", 3), decision("closed", 7)];
    expect(orderDecision({ action: "unlabeled", at: at(5) }, recorded)).toBe("stale");
    expect(orderDecision({ action: "labeled", at: at(8) }, recorded)).toBe("newer");
    expect(newestDecision(recorded)?.action).toBe("closed");
    expect(newestDecision([null, decision("unlabeled", 2), null])?.action).toBe("unlabeled");
    expect(newestDecision([null, null])).toBeNull();
  });

  it("within GitHub's second, takes the same action as the one applied, a different one as it comes", () => {
    expect(orderDecision({ action: "labeled", at: at(5) }, [decision("labeled", 5)])).toBe("same");
    expect(orderDecision({ action: "unlabeled", at: at(5) }, [decision("labeled", 5)])).toBe(
      "newer",
    );
  });

  it("reads GitHub's times, and nothing else, as times", () => {
    expect(githubTime("2019-05-15T15:20:18Z")?.toISOString()).toBe("2019-05-15T15:20:18.000Z");
    expect(githubTime(null)).toBeNull();
    expect(githubTime(undefined)).toBeNull();
    expect(githubTime("")).toBeNull();
    expect(githubTime("yesterday")).toBeNull();
  });
});
