import { createHash } from "node:crypto";
import type { RepoRef } from "../repo.js";

/**
 * What the upstream confirmed about who may read what, for the times it cannot be asked.
 *
 * With the upstream reachable every client's request is checked there with the client's own token.
 * When it is not, a cached file is served only:
 * - to anyone, when the upstream said the file (or its whole repo) is public: an anonymous request
 *   for it succeeded, or the repo's info said `private: false, gated: false`;
 * - to a client whose token the upstream accepted for that very file less than `ttlMs` ago.
 * Per file, not per repo: a gated repo's README.md downloads without access, which says nothing
 * about its weights. Kept in memory only: after a restart nothing is confirmed until upstream answers.
 */
/** Token grants remembered at most (each a short string and a number). */
const MAX_GRANTS = 100_000;

export class AccessMemory {
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #publicRepos = new Set<string>();
  readonly #publicFiles = new Set<string>();
  readonly #grants = new Map<string, number>();

  constructor(ttlMs: number, now: () => number = Date.now) {
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  /** A hash of the client's Authorization header, never the header itself; "anon" without one. */
  static clientKey(authorization: string | undefined): string {
    return authorization ? createHash("sha256").update(authorization).digest("hex").slice(0, 16) : "anon";
  }

  /** The upstream served this file to this client (anonymous: to anyone). */
  granted(authorization: string | undefined, repo: RepoRef, path: string): void {
    const client = AccessMemory.clientKey(authorization);
    if (client === "anon") this.#publicFiles.add(fileKey(repo, path));
    else {
      const key = `${client} ${fileKey(repo, path)}`;
      this.#grants.delete(key);
      this.#grants.set(key, this.#now());
      // Oldest first (insertion order): drop the expired, and never keep more than MAX_GRANTS.
      for (const [k, at] of this.#grants) {
        if (this.#grants.size <= MAX_GRANTS && this.#now() - at < this.#ttlMs) break;
        this.#grants.delete(k);
      }
    }
  }

  /** The upstream's repo info said it is neither private nor gated. */
  repoIsPublic(repo: RepoRef): void {
    this.#publicRepos.add(repoKey(repo));
  }

  /** The upstream's repo info said this repo is public (its API answers may be served from disk). */
  repoKnownPublic(repo: RepoRef): boolean {
    return this.#publicRepos.has(repoKey(repo));
  }

  /** May this client have this cached file while the upstream cannot be asked? */
  mayRead(authorization: string | undefined, repo: RepoRef, path: string): boolean {
    if (this.#publicRepos.has(repoKey(repo)) || this.#publicFiles.has(fileKey(repo, path))) return true;
    const client = AccessMemory.clientKey(authorization);
    if (client === "anon") return false;
    const at = this.#grants.get(`${client} ${fileKey(repo, path)}`);
    return at !== undefined && this.#now() - at < this.#ttlMs;
  }
}

function repoKey(repo: RepoRef): string {
  return `${repo.type} ${repo.id}`;
}

function fileKey(repo: RepoRef, path: string): string {
  return `${repoKey(repo)} ${path}`;
}

/**
 * `/api/{models|datasets|spaces}/{id}[/revision/{rev}]`'s answer, when it says the repo is public.
 * The id in the body must be the one asked for (a repo named "revision" must not confuse it).
 */
export function publicRepoFromInfo(pathname: string, status: number, body: Buffer): RepoRef | undefined {
  if (status !== 200) return undefined;
  const m = /^\/api\/(models|datasets|spaces)\/([^/]+(?:\/[^/]+)??)(?:\/revision\/[^/]+)?$/.exec(pathname);
  if (m === null) return undefined;
  let info: unknown;
  try {
    info = JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
  if (typeof info !== "object" || info === null) return undefined;
  const { id, private: priv, gated } = info as { id?: unknown; private?: unknown; gated?: unknown };
  let wanted: string;
  try {
    wanted = decodeURIComponent(m[2] ?? "");
  } catch {
    return undefined;
  }
  if (id !== wanted || priv !== false || gated !== false) return undefined;
  const type = m[1] === "models" ? "model" : m[1] === "datasets" ? "dataset" : "space";
  return { type, id: wanted };
}
