/**
 * Text someone else wrote (a worker's summary, a log line), made safe to post: it can
 * neither notify people nor act on issues. The text stays readable; a zero-width space
 * breaks the pattern GitHub looks for and renders as nothing.
 */

const ZERO_WIDTH_SPACE = "\u200b";

/** `@someone` and `@org/team` no longer notify; `<!--` can no longer pose as our markers. */
export function defangMentions(text: string): string {
  return text
    .replace(/@(?=[A-Za-z0-9])/g, `@${ZERO_WIDTH_SPACE}`)
    .replace(/<!--/g, `<!-${ZERO_WIDTH_SPACE}-`);
}

/**
 * GitHub closes an issue named after one of these words in a merged PR's body: `Fixes #12`,
 * `closes: owner/repo#12`, `Resolved https://github.com/owner/repo/issues/12`.
 */
const CLOSING_REFERENCE =
  /\b(close[sd]?|fix(?:e[sd])?|resolve[sd]?)(\s*:?\s+)((?:[\w.-]+\/[\w.-]+)?#\d+|https?:\/\/[^\s)>\]]+\/(?:issues|pull)\/\d+)/gi;

/** Closing keywords for any issue but `ownIssue` (written `#N`) no longer close anything. */
export function defangClosingKeywords(text: string, ownIssue: number): string {
  return text.replace(CLOSING_REFERENCE, (whole, keyword: string, gap: string, ref: string) =>
    ref === `#${ownIssue}` ? whole : `${keyword}${ZERO_WIDTH_SPACE}${gap}${ref}`,
  );
}

/** A worker's summary as the body of the PR for `ownIssue`. */
export function defangSummary(text: string, ownIssue: number): string {
  return defangMentions(defangClosingKeywords(text, ownIssue));
}
