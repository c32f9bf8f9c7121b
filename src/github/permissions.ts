/**
 * Who may command Overseer on a repository. GitHub is asked once per person per minute or
 * so: commands come in bursts (a `/stop` then a `/retry`), and permissions rarely change
 * within a minute.
 */

export const PERMISSION_RANK = {
  none: 0,
  read: 1,
  triage: 2,
  write: 3,
  maintain: 4,
  admin: 5,
} as const;

export type Permission = keyof typeof PERMISSION_RANK;
export type RequiredPermission = "write" | "maintain" | "admin";

const ROUTE = "GET /repos/{owner}/{repo}/collaborators/{username}/permission";

/** Just the part of an Octokit this module uses, so tests and callers can pass a stand-in. */
export interface PermissionClient {
  request(
    route: typeof ROUTE,
    params: { owner: string; repo: string; username: string },
  ): Promise<{ data: unknown }>;
}

export interface PermissionCacheOptions {
  ttlMs?: number;
  /** Oldest entries go first beyond this, so a busy installation cannot grow it forever. */
  maxEntries?: number;
  now?: () => number;
}

/**
 * Remembers resolved permissions for a short while. It stores the pending lookup, not just
 * its result, so commands arriving at the same moment share one request.
 */
export class PermissionCache {
  readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  private readonly entries = new Map<string, { expiresAt: number; value: Promise<Permission> }>();

  constructor(options: PermissionCacheOptions = {}) {
    this.ttlMs = options.ttlMs ?? 60_000;
    this.maxEntries = options.maxEntries ?? 1_000;
    this.now = options.now ?? Date.now;
  }

  static key(parts: {
    installationId?: number | null;
    owner: string;
    repo: string;
    username: string;
  }): string {
    // Logins and repository names are case-insensitive on GitHub.
    return [parts.installationId ?? "-", parts.owner, parts.repo, parts.username]
      .map((part) => String(part).toLowerCase())
      .join("/");
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cached lookup for `key`, or a new one from `load` that others will then share. */
  async getOrLoad(key: string, load: () => Promise<Permission>): Promise<Permission> {
    const now = this.now();
    const hit = this.entries.get(key);
    if (hit && hit.expiresAt > now) return hit.value;
    if (hit) this.entries.delete(key);

    const value = load();
    const entry = { expiresAt: now + this.ttlMs, value };
    this.entries.set(key, entry);
    this.evict(now);
    // A failed lookup says nothing about the person; let the next command ask again.
    value.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
    });
    return value;
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  private evict(now: number): void {
    if (this.entries.size <= this.maxEntries) return;
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt <= now) this.entries.delete(key);
    }
    // Maps iterate in insertion order, so this drops the oldest lookups first.
    for (const key of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) return;
      this.entries.delete(key);
    }
  }
}

export interface CommandPermissionQuery {
  owner: string;
  repo: string;
  username: string;
  required: RequiredPermission;
  cache?: PermissionCache;
  /** Part of the cache key; one process may serve several installations (and hosts). */
  installationId?: number | null;
  /** The person's and the repository owner's accounts, as the payload gives them. */
  userId?: number;
  repoOwner?: { login: string; id?: number; type?: string };
}

/**
 * The account that owns a personal repository administers it, so GitHub need not be asked.
 * Both id and login must match: a renamed account keeps its id, a reused login does not.
 */
export function isPersonalRepoOwner(
  user: { login: string; id?: number },
  owner: { login: string; id?: number; type?: string } | undefined,
): boolean {
  return (
    owner?.type === "User" &&
    owner.id !== undefined &&
    user.id === owner.id &&
    user.login.toLowerCase() === owner.login.toLowerCase()
  );
}

export async function hasCommandPermission(
  octokit: PermissionClient,
  query: CommandPermissionQuery,
): Promise<{ allowed: boolean; permission: Permission }> {
  const { owner, repo, username, required, cache } = query;
  if (isPersonalRepoOwner({ login: username, id: query.userId }, query.repoOwner)) {
    return { allowed: true, permission: "admin" };
  }
  const load = () => fetchPermission(octokit, owner, repo, username);
  const permission = cache
    ? await cache.getOrLoad(PermissionCache.key({ ...query }), load)
    : await load();
  return { allowed: permissionAtLeast(permission, required), permission };
}

export function permissionAtLeast(permission: Permission, required: Permission): boolean {
  return PERMISSION_RANK[permission] >= PERMISSION_RANK[required];
}

async function fetchPermission(
  octokit: PermissionClient,
  owner: string,
  repo: string,
  username: string,
): Promise<Permission> {
  try {
    const response = await octokit.request(ROUTE, { owner, repo, username });
    return permissionFromResponse(response.data);
  } catch (error) {
    // Not a collaborator (or no such user): no permission, which is an answer, not a failure.
    if (statusOf(error) === 404) return "none";
    throw error;
  }
}

/**
 * Reads the endpoint's answer. `role_name` tells maintain and triage apart, which the legacy
 * `permission` field folds into write and read. A custom role has its own name there, so
 * the `user.permissions` flags it grants come next, and the legacy field last.
 */
export function permissionFromResponse(data: unknown): Permission {
  const body = isRecord(data) ? data : {};
  const role = typeof body.role_name === "string" ? body.role_name.toLowerCase() : null;
  if (role && isPermission(role)) return role;

  const user = isRecord(body.user) ? body.user : null;
  const flags = user && isRecord(user.permissions) ? user.permissions : null;
  if (flags) {
    if (flags.admin === true) return "admin";
    if (flags.maintain === true) return "maintain";
    if (flags.push === true) return "write";
    if (flags.triage === true) return "triage";
    if (flags.pull === true) return "read";
  }

  const legacy = typeof body.permission === "string" ? body.permission.toLowerCase() : null;
  if (legacy && isPermission(legacy)) return legacy;
  return "none";
}

/** The reply to someone who may not command: who may, and what they have. */
export function refusalText(
  username: string,
  permission: Permission | string,
  required: RequiredPermission,
  what = "command Overseer here",
): string {
  const who = required === "admin" ? "admin access" : `${required} access or higher`;
  const have = permission === "none" ? "no access" : permission;
  return `@${username}, only people with ${who} can ${what} (you have ${have}).`;
}

function isPermission(value: string): value is Permission {
  return Object.hasOwn(PERMISSION_RANK, value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function statusOf(error: unknown): number | undefined {
  return isRecord(error) && typeof error.status === "number" ? error.status : undefined;
}
