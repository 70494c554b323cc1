import { HfgetError } from "../errors.js";
import { type RepoRef, repoLabel } from "../repo.js";
import type { ApiTreeEntry } from "./api-types.js";
import type { HubClient } from "./client.js";
import { header } from "./http.js";
import { checkRepoPath } from "./paths.js";
import type { RepoFile } from "./types.js";

const MAX_PAGES = 100_000;

/** `<url>; rel="next"` from a Link header, if any. */
export function nextLink(link: string | undefined): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(",")) {
    const m = /<([^>]*)>\s*;(.*)$/.exec(part.trim());
    if (m?.[1] !== undefined && /\brel\s*=\s*"?next"?/i.test(m[2] ?? "")) return m[1];
  }
  return undefined;
}

/**
 * Mirrors send next-links that point at huggingface.co; keep the configured endpoint instead.
 * Same origin: kept. Other origin: the `/api/...` path and query are moved onto the endpoint.
 */
export function keepEndpoint(next: string, current: string, endpoint: string): string {
  const url = new URL(next, current);
  const ep = new URL(endpoint);
  if (url.origin === ep.origin) return url.href;
  const apiAt = url.pathname.indexOf("/api/");
  const path = apiAt >= 0 ? url.pathname.slice(apiAt) : url.pathname;
  return `${endpoint}${path}${url.search}`;
}

const HEX40 = /^[0-9a-f]{40}$/;
const HEX64 = /^[0-9a-f]{64}$/;

function toRepoFile(raw: unknown, what: string): RepoFile | undefined {
  const bad = (why: string): never => {
    throw new HfgetError("PROTOCOL", `${what}: the listing has a malformed entry (${why})`, {
      hint: "the endpoint is not answering like a hub; check --mirror / HF_ENDPOINT",
    });
  };
  if (typeof raw !== "object" || raw === null) return bad("not an object");
  const e = raw as Partial<ApiTreeEntry>;
  if (e.type !== "file") return undefined;
  if (typeof e.path !== "string") return bad("no path");
  const path = checkRepoPath(e.path);
  if (typeof e.size !== "number" || !Number.isSafeInteger(e.size) || e.size < 0)
    return bad(`bad size for ${path}`);
  if (typeof e.oid !== "string" || !HEX40.test(e.oid)) return bad(`bad oid for ${path}`);
  if (e.lfs !== undefined && e.lfs !== null) {
    const sha256 = e.lfs.oid;
    if (typeof sha256 !== "string" || !HEX64.test(sha256)) return bad(`bad LFS oid for ${path}`);
    if (typeof e.lfs.size === "number" && e.lfs.size !== e.size)
      return bad(`LFS size differs from size for ${path}`);
    return { path, size: e.size, gitOid: e.oid, lfs: { sha256 } };
  }
  return { path, size: e.size, gitOid: e.oid };
}

export interface ListFilesOptions {
  readonly signal?: AbortSignal | undefined;
  /** Called once per page fetched (for progress). */
  readonly onPage?: (filesSoFar: number) => void;
  /** The client for the pages after the first (another retry policy on the same endpoint). */
  readonly rest?: HubClient | undefined;
}

/**
 * Every file of the repo at `commit` (directories skipped), following `Link` pages. Paths are
 * checked before they are yielded; a path listed twice, or as both a file and a folder, is refused.
 */
export async function* listFiles(
  hub: HubClient,
  repo: RepoRef,
  commit: string,
  opts: ListFilesOptions = {},
): AsyncGenerator<RepoFile> {
  for await (const page of listPages(hub, repo, commit, opts)) yield* page.files;
}

/** One page of a listing: its files, and whether it is the last page. */
export interface ListingPage {
  readonly files: readonly RepoFile[];
  readonly last: boolean;
}

/**
 * listFiles a page at a time, as each page's answer arrives (checked as a whole listing is: a path
 * on a later page that repeats an earlier one is refused there). Every page is yielded, even one of
 * folders only (empty), so a consumer sees the listing advance.
 */
export async function* listPages(
  hub: HubClient,
  repo: RepoRef,
  commit: string,
  opts: ListFilesOptions = {},
): AsyncGenerator<ListingPage> {
  const what = `${repoLabel(repo)}@${commit.slice(0, 12)}`;
  let url: string | undefined = `${hub.apiRepoUrl(repo)}/tree/${encodeURIComponent(commit)}?recursive=true`;
  const seenUrls = new Set<string>();
  const files = new Set<string>();
  const dirs = new Set<string>();
  let count = 0;
  for (let page = 0; url !== undefined; page++) {
    if (page >= MAX_PAGES || seenUrls.has(url)) {
      throw new HfgetError("PROTOCOL", `${what}: the listing's pages never end`, {
        hint: "the endpoint's pagination loops",
      });
    }
    seenUrls.add(url);
    const client = page === 0 ? hub : (opts.rest ?? hub);
    const { data, headers } = await client.getJson(
      url,
      client.errorContext(what, "REVISION_NOT_FOUND"),
      opts.signal,
    );
    if (!Array.isArray(data)) {
      throw new HfgetError("PROTOCOL", `${what}: the listing is not a JSON array`, {
        hint: "the endpoint is not answering like a hub; check --mirror / HF_ENDPOINT",
      });
    }
    const out: RepoFile[] = [];
    for (const raw of data) {
      const file = toRepoFile(raw, what);
      if (file === undefined) continue;
      if (files.has(file.path) || dirs.has(file.path)) {
        throw new HfgetError("PROTOCOL", `${what}: the listing names ${JSON.stringify(file.path)} twice`);
      }
      files.add(file.path);
      const segs = file.path.split("/");
      for (let i = 1; i < segs.length; i++) {
        const dir = segs.slice(0, i).join("/");
        if (files.has(dir)) {
          throw new HfgetError(
            "PROTOCOL",
            `${what}: the listing has ${JSON.stringify(dir)} as a file and a folder`,
          );
        }
        dirs.add(dir);
      }
      count++;
      out.push(file);
    }
    opts.onPage?.(count);
    const next = nextLink(header(headers, "link"));
    url = next === undefined ? undefined : keepEndpoint(next, url, hub.endpoint);
    yield { files: out, last: url === undefined };
  }
}
