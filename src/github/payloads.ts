import { z } from "zod";
import { InputError } from "../errors.js";

/**
 * The fields of GitHub's webhook payloads that Overseer reads, checked at the edge so a
 * malformed payload is refused with a message naming the field, not a TypeError deep in
 * a handler.
 */
const user = z.object({
  login: z.string(),
  id: z.number().optional(),
  type: z.string().optional(),
});
const label = z.object({ name: z.string() });

export const repositorySchema = z.object({
  id: z.number(),
  name: z.string(),
  full_name: z.string(),
  clone_url: z.string(),
  default_branch: z.string().default("main"),
  owner: z.object({ login: z.string(), id: z.number().optional(), type: z.string().optional() }),
});

const issue = z.object({
  number: z.number().int().positive(),
  title: z.string(),
  labels: z.array(label).default([]),
  pull_request: z.object({}).passthrough().nullish(),
  /** When GitHub says the event happened: a label event's time, or a close's (`closed_at`). */
  updated_at: z.string().nullish(),
  closed_at: z.string().nullish(),
});

const base = z.object({
  repository: repositorySchema,
  installation: z.object({ id: z.number() }).nullish(),
  sender: user,
});

export const issueEventSchema = base.extend({ issue, label: label.optional() });

export const issueCommentSchema = base.extend({
  issue,
  comment: z.object({
    id: z.number(),
    body: z
      .string()
      .nullable()
      .transform((body) => body ?? ""),
    user,
    performed_via_github_app: z.object({ id: z.number() }).passthrough().nullish(),
  }),
});

export const pullRequestEventSchema = base.extend({
  pull_request: z.object({
    number: z.number().int().positive(),
    html_url: z.string(),
    merged: z.boolean().nullish(),
    body: z.string().nullish(),
    head: z.object({
      ref: z.string(),
      sha: z.string(),
      repo: z.object({ id: z.number() }).nullish(),
    }),
  }),
});

const pullRequestRef = z.object({
  number: z.number().int().positive(),
  title: z.string().default(""),
  head: z.object({ ref: z.string() }),
});

export const pullRequestReviewSchema = base.extend({
  review: z.object({
    id: z.number(),
    state: z.string(),
    body: z
      .string()
      .nullish()
      .transform((body) => body ?? ""),
    user: user.nullish(),
  }),
  pull_request: pullRequestRef,
});

export const pullRequestReviewCommentSchema = base.extend({
  comment: z.object({
    id: z.number(),
    body: z
      .string()
      .nullable()
      .transform((body) => body ?? ""),
    user,
    path: z.string().default(""),
    line: z.number().nullish(),
    start_line: z.number().nullish(),
    performed_via_github_app: z.object({ id: z.number() }).passthrough().nullish(),
  }),
  pull_request: pullRequestRef,
});

export const pullRequestReviewThreadSchema = base.extend({
  thread: z.object({
    node_id: z.string(),
    comments: z.array(z.object({ id: z.number() })).default([]),
  }),
  pull_request: z.object({ number: z.number().int().positive() }),
});

export type Repository = z.infer<typeof repositorySchema>;
export type IssueEvent = z.infer<typeof issueEventSchema>;
export type IssueCommentEvent = z.infer<typeof issueCommentSchema>;
export type PullRequestEvent = z.infer<typeof pullRequestEventSchema>;
export type PullRequestReviewEvent = z.infer<typeof pullRequestReviewSchema>;
export type PullRequestReviewCommentEvent = z.infer<typeof pullRequestReviewCommentSchema>;

/** Signed by GitHub yet not the shape we read: answered 400 and recorded, never retried. */
export class PayloadError extends InputError {
  override name = "PayloadError";
}

export function parsePayload<T>(schema: z.ZodType<T>, payload: unknown, event: string): T {
  const parsed = schema.safeParse(payload);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new PayloadError(
    `malformed ${event} payload: ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "invalid"}`,
  );
}
