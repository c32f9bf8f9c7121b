import { byteLength, fenced, oneLine, plain, truncated } from "./prompt-text.js";

/**
 * The parts of a revision's prompt: what was asked, the PR's unresolved review comments
 * (file, line, text), the reviews' summaries and the PR conversation since the last run.
 * All of it is written by GitHub users, so it follows the issue in the untrusted part of
 * the prompt file, each text fenced so that it cannot pose as Overseer's own sections,
 * within one byte budget spent in that order (the requests first: they are the point).
 */

export interface RevisionRequestText {
  author: string;
  body: string;
  createdAt: string;
  /** command (a `/revise` comment), review_comment, review */
  source: string;
}

export interface ReviewCommentText {
  id: number;
  /** Set on replies: the comment that started the thread. */
  inReplyTo: number | null;
  path: string;
  /** The line in the file (the last of a range); null when the code it was on has changed. */
  line: number | null;
  startLine: number | null;
  author: string;
  /** OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, NONE… as GitHub says. */
  association: string;
  body: string;
  createdAt: string;
}

export interface ReviewText {
  author: string;
  association: string;
  /** APPROVED, CHANGES_REQUESTED, COMMENTED… */
  state: string;
  body: string;
  submittedAt: string;
}

export interface ConversationText {
  author: string;
  association: string;
  body: string;
  createdAt: string;
}

export interface RevisionPrompt {
  number: number;
  maxRevisions: number;
  prNumber: number;
  requests: RevisionRequestText[];
  /** Unresolved review comments (resolved threads already left out), oldest first. */
  reviewComments: ReviewCommentText[];
  reviews: ReviewText[];
  conversation: ConversationText[];
  /** How many review comments were left out because their thread is resolved. */
  resolvedOmitted: number;
}

/** Budget for everything above together, in UTF-8 bytes, beside the issue's own. */
export const MAX_REVISION_TEXT_BYTES = 64 * 1024;
export const MAX_REVIEW_COMMENTS = 60;
const MIN_ENTRY_BYTES = 200;

export function revisionExpectations(revision: RevisionPrompt): string[] {
  return [
    `- This run is revision ${revision.number} (of at most ${revision.maxRevisions}) of pull request #${revision.prNumber}: the branch already holds the earlier work, and the sections after the issue say what to change.`,
    "- Add new commits on top of the branch. Do not rewrite, amend, rebase or drop the commits already on it: they are what reviewers have seen.",
    "- A revision that adds no commit fails, and the pull request stays as it is.",
  ];
}

interface Entry {
  heading: string;
  body: string;
}

export function revisionSections(revision: RevisionPrompt): string[] {
  const budget = new Budget(MAX_REVISION_TEXT_BYTES);
  const sections: string[] = [`## Revision ${revision.number}: what was asked`];
  const requests = revision.requests.map((request) => ({
    heading: `### ${requestLabel(request.source)} by @${plain(request.author)} at ${plain(request.createdAt)}`,
    body: request.body.trim() || "(no text: address the review comments below)",
  }));
  // The requests are the point of the revision: they are budgeted first.
  sections.push(
    ...(requests.length > 0
      ? budget.render(requests)
      : ["(no request text: address the unresolved review comments below)"]),
  );

  const threads = threadsOf(revision.reviewComments.slice(-MAX_REVIEW_COMMENTS));
  const omitted =
    revision.reviewComments.length - Math.min(revision.reviewComments.length, MAX_REVIEW_COMMENTS);
  const resolved =
    revision.resolvedOmitted > 0
      ? `; ${revision.resolvedOmitted} in resolved threads left out`
      : "";
  sections.push(
    `## Review comments on the pull request (${threads.length === 0 ? "none unresolved" : `${revision.reviewComments.length - omitted} unresolved`}${omitted > 0 ? `; ${omitted} older not shown` : ""}${resolved})`,
    ...budget.render(threads),
  );

  const reviews = revision.reviews
    .filter((review) => review.body.trim() !== "")
    .map((review) => ({
      heading: `### Review by @${plain(review.author)} (${plain(review.association)}): ${plain(review.state).toLowerCase().replaceAll("_", " ")}, at ${plain(review.submittedAt)}`,
      body: review.body,
    }));
  if (reviews.length > 0) sections.push("## Review summaries", ...budget.render(reviews));

  const conversation = revision.conversation.map((comment) => ({
    heading: `### Comment by @${plain(comment.author)} (${plain(comment.association)}) at ${plain(comment.createdAt)}`,
    body: comment.body,
  }));
  if (conversation.length > 0) {
    sections.push(
      "## The pull request's conversation since the last run",
      ...budget.render(conversation),
    );
  }
  if (budget.dropped > 0) {
    sections.push(
      `(${budget.dropped} more entries left out by Overseer to keep this prompt short.)`,
    );
  }
  return sections;
}

function requestLabel(source: string): string {
  if (source === "review") return "Review asking for changes";
  if (source === "review_comment") return "Review comment asking for a revision";
  return "Request";
}

/** Review comments grouped under the comment that opened their thread. */
function threadsOf(comments: ReviewCommentText[]): Entry[] {
  const roots = new Map<number, { root: ReviewCommentText | null; replies: ReviewCommentText[] }>();
  for (const comment of comments) {
    const rootId = comment.inReplyTo ?? comment.id;
    const thread = roots.get(rootId) ?? { root: null, replies: [] };
    if (comment.inReplyTo === null) thread.root = comment;
    else thread.replies.push(comment);
    roots.set(rootId, thread);
  }
  return [...roots.values()].map(({ root, replies }) => {
    const first = root ?? replies[0];
    const where = first ? location(first) : "a file";
    const parts = [root, ...replies]
      .filter((comment): comment is ReviewCommentText => comment !== null)
      .map(
        (comment) =>
          `@${plain(comment.author)} (${plain(comment.association)}) at ${plain(comment.createdAt)}:\n${comment.body}`,
      );
    return { heading: `### ${where}`, body: parts.join("\n\n---\n\n") };
  });
}

function location(comment: ReviewCommentText): string {
  // A path comes from the repository (anyone with a PR can name files): kept to one line,
  // without backticks, inside a code span.
  const path = oneLine(comment.path).replace(/`/g, "'").slice(0, 300) || "(unknown file)";
  if (comment.line === null) return `\`${path}\` (on code that has since changed)`;
  const lines =
    comment.startLine !== null && comment.startLine !== comment.line
      ? `lines ${comment.startLine}–${comment.line}`
      : `line ${comment.line}`;
  return `\`${path}\` ${lines}`;
}

/** A shared byte budget: entries are shown while it lasts, each cut to what is left. */
class Budget {
  dropped = 0;
  constructor(private left: number) {}

  render(entries: Entry[]): string[] {
    const out: string[] = [];
    for (const entry of entries) {
      if (this.left < MIN_ENTRY_BYTES) {
        this.dropped += 1;
        continue;
      }
      const text = truncated(entry.body, this.left);
      this.left -= Math.min(byteLength(entry.body), this.left);
      out.push(`${entry.heading}\n\n${fenced(text)}`);
    }
    return out;
  }
}
