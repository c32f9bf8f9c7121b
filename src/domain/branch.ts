/**
 * Task branch names. Pure: no I/O, so the same (issue, title) always yields the same name on
 * every host and in every release that keeps these constants.
 */

export const BRANCH_PREFIX = "overseer/";

/** Long enough to be recognisable in a PR list, short enough for terminals and file systems. */
export const SLUG_MAX_LENGTH = 48;

/** Used when nothing ASCII survives from the title (all emoji, all CJK, empty). */
const FALLBACK_SLUG = "task";

/**
 * Only this much of the title is looked at: a 10 kB title must cost no more than a short one,
 * and NFKD can expand a character into several, so keep a generous margin over the cap.
 */
const TITLE_SCAN_LIMIT = SLUG_MAX_LENGTH * 8;

export function slugify(title: string, maxLength = SLUG_MAX_LENGTH): string {
  const ascii = title
    .slice(0, TITLE_SCAN_LIMIT)
    .toLowerCase()
    .normalize("NFKD")
    // Combining marks go so that "Café" reads "cafe" rather than "caf".
    .replace(/\p{M}+/gu, "");
  const dashed = ascii.replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  let slug = dashed.slice(0, maxLength);
  if (dashed.length > maxLength) {
    // Prefer cutting at a word boundary, unless that would throw away most of the slug.
    const cut = slug.lastIndexOf("-");
    if (cut >= maxLength / 2) slug = slug.slice(0, cut);
  }
  slug = slug.replace(/-+$/, "");
  return slug === "" ? FALLBACK_SLUG : slug;
}

/** `overseer/<issue>-<slug>`: the slug alphabet is [a-z0-9-], so every git ref rule holds. */
export function branchName(issueNumber: number, title: string): string {
  if (!Number.isSafeInteger(issueNumber) || issueNumber <= 0) {
    throw new RangeError(`issue number must be a positive integer, got ${issueNumber}`);
  }
  const name = `${BRANCH_PREFIX}${issueNumber}-${slugify(title)}`;
  if (!isValidBranchName(name)) {
    throw new Error(`internal error: generated branch name "${name}" is not a valid ref`);
  }
  return name;
}

/** ASCII control characters (and DEL): never meaningful in a name, often an attack. */
export function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/**
 * What else git forbids anywhere in a ref (refs.c `refname_disposition`): space and
 * ~ ^ : ? * [ \. Non-ASCII is allowed by git and so allowed here.
 */
const FORBIDDEN_CHARACTER = /[ ~^:?*[\\]/;

/** A lone surrogate has no UTF-8 encoding, so git would see different bytes than we compare. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * `git check-ref-format <ref>` in TypeScript (without --allow-onelevel unless asked,
 * without --refspec-pattern or --normalize).
 */
export function isValidRefName(ref: string, options: { allowOneLevel?: boolean } = {}): boolean {
  if (ref === "" || ref === "@") return false;
  if (hasControlCharacter(ref) || FORBIDDEN_CHARACTER.test(ref) || LONE_SURROGATE.test(ref)) {
    return false;
  }
  if (ref.includes("..") || ref.includes("@{")) return false;
  if (ref.endsWith(".")) return false;
  const components = ref.split("/");
  if (!options.allowOneLevel && components.length < 2) return false;
  return components.every(
    (component) => component !== "" && !component.startsWith(".") && !component.endsWith(".lock"),
  );
}

/** Longer names are refused everywhere (file systems cap a path component near this). */
export const BRANCH_NAME_MAX_LENGTH = 255;

/**
 * `git check-ref-format --branch`: a valid `refs/heads/<name>` that git's CLI also accepts,
 * of at most BRANCH_NAME_MAX_LENGTH characters. The one branch-name rule: repository
 * config (`base`) and workspaces both ask this function, so a base the config accepts is
 * one the workspace can use.
 */
export function isValidBranchName(name: string): boolean {
  return (
    name.length <= BRANCH_NAME_MAX_LENGTH &&
    !name.startsWith("-") &&
    name !== "HEAD" &&
    // `@` alone means HEAD wherever git reads a revision.
    name !== "@" &&
    isValidRefName(`refs/heads/${name}`)
  );
}
