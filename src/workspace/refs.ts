import { type GitRunOptions, git } from "./git.js";

/** Commit ids of the given full ref names; absent refs are missing from the map. */
export async function readRefs(mirror: string, refs: readonly string[], opts: GitRunOptions) {
  const out = await git(
    mirror,
    ["for-each-ref", "--format=%(refname)%00%(objectname)", ...refs],
    opts,
  );
  const wanted = new Set(refs);
  const found = new Map<string, string>();
  for (const line of out.split("\n")) {
    const [name, sha] = line.split("\0");
    // for-each-ref patterns also match refs below them; only exact names count.
    if (name && sha && wanted.has(name)) found.set(name, sha);
  }
  return found;
}
