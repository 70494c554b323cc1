import { createHash } from "node:crypto";
import { readdir, readFile, readlink, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { cachePaths } from "../cache/paths.js";
import { readTree, type TreeEntry } from "../cache/tree-cache.js";
import { isCommitSha } from "../hub/resolve-revision.js";
import type { RepoRef, RepoType } from "../repo.js";
import { readInfoMemo, readListingMemo, treeOids } from "./memo.js";

/**
 * The hub's API answered from the cache on disk alone, for `--offline` (and an unreachable upstream):
 * the revision through refs/, the file list from `trees/<commit>.json` when huggingface_hub (>= 1.22)
 * or hfget wrote one (a complete snapshot), else from the snapshot's links; sizes from the blobs, hashes
 * from the blob names. An LFS file's git oid is that of its pointer, which is a function of its sha256
 * and size, so it is the hub's own.
 */
export interface LocalFile {
  readonly path: string;
  readonly size: number;
  /** git blob sha1 (of the pointer for LFS files). */
  readonly oid: string;
  readonly lfs?: { readonly sha256: string; readonly pointerSize: number } | undefined;
}

export interface LocalAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

const API_TYPES: Record<string, RepoType> = { models: "model", datasets: "dataset", spaces: "space" };
const ACTIONS = new Set(["revision", "tree", "paths-info", "refs"]);

function lfsPointer(sha256: string, size: number): Buffer {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${size}\n`);
}

function gitBlobSha1(content: Buffer): string {
  return createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex");
}

function lfsFile(path: string, sha256: string, size: number): LocalFile {
  const pointer = lfsPointer(sha256, size);
  return { path, size, oid: gitBlobSha1(pointer), lfs: { sha256, pointerSize: pointer.length } };
}

/** The commit a revision names in the cache (refs/ for a branch or tag), if its snapshot is there. */
export async function localCommit(
  cacheDir: string,
  repo: RepoRef,
  revision: string,
): Promise<string | undefined> {
  const paths = cachePaths(cacheDir, repo);
  let commit = revision;
  if (!isCommitSha(commit)) {
    try {
      commit = (await readFile(paths.ref(revision), "utf8")).trim();
    } catch {
      return undefined;
    }
    if (!isCommitSha(commit)) return undefined;
  }
  try {
    return (await stat(paths.snapshotDir(commit))).isDirectory() ? commit : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What the cache knows of a commit's files. `complete` when a whole listing is on disk: the
 * upstream's as the server heard it (.hfget-serve/listing/<commit>.json), else trees/<commit>.json
 * (written by hfget or huggingface_hub >= 1.22 after a whole-repo download). Then every folder's
 * git tree oid is known: the upstream's, or computed from its entries. Otherwise the files are the
 * snapshot's links, which may be a part of the commit only, and no folder oid can be known.
 */
export interface LocalListing {
  /** Sorted by path. */
  readonly files: LocalFile[];
  readonly complete: boolean;
  /** Folder path ("" = root) -> git tree oid; empty when the listing is not complete. */
  readonly dirOids: ReadonlyMap<string, string>;
}

function fromTreeEntries(entries: Iterable<[string, TreeEntry]>): LocalFile[] {
  const out: LocalFile[] = [];
  for (const [path, e] of entries) {
    if (e.lfs_sha256) out.push(lfsFile(path, e.lfs_sha256, e.lfs_size ?? e.size));
    else out.push({ path, size: e.size, oid: e.blob_id });
  }
  return out;
}

const byPath = (a: LocalFile, b: LocalFile): number => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

export async function localListing(cacheDir: string, repo: RepoRef, commit: string): Promise<LocalListing> {
  const paths = cachePaths(cacheDir, repo);
  const memo = await readListingMemo(paths.repoDir, commit);
  const tree = memo ? undefined : await readTree(paths.repoDir, commit);
  if (memo || tree) {
    const files = fromTreeEntries(memo ? Object.entries(memo.files) : (tree ?? new Map())).sort(byPath);
    const dirOids = treeOids(new Map(files.map((f) => [f.path, f.oid])));
    for (const [dir, oid] of Object.entries(memo?.dirs ?? {})) {
      if (dirOids.has(dir) && /^[0-9a-f]{40}$/.test(oid)) dirOids.set(dir, oid);
    }
    return { files, complete: true, dirOids };
  }
  const out: LocalFile[] = [];
  const root = paths.snapshotDir(commit);
  const visit = async (rel: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(join(root, ...rel.split("/").filter(Boolean)));
    } catch {
      return;
    }
    for (const n of names) {
      const p = rel ? `${rel}/${n}` : n;
      const abs = join(root, ...p.split("/"));
      let id: string;
      try {
        id = basename(await readlink(abs));
      } catch {
        if ((await stat(abs).catch(() => undefined))?.isDirectory()) await visit(p);
        continue;
      }
      const size = (await stat(paths.blob(id)).catch(() => undefined))?.size;
      if (size === undefined) continue;
      if (/^[0-9a-f]{64}$/.test(id)) out.push(lfsFile(p, id, size));
      else if (/^[0-9a-f]{40}$/.test(id)) out.push({ path: p, size, oid: id });
    }
  };
  await visit("");
  return { files: out.sort(byPath), complete: false, dirOids: new Map() };
}

/** Every file of a commit the cache knows of, sorted by path. */
export async function localFiles(cacheDir: string, repo: RepoRef, commit: string): Promise<LocalFile[]> {
  return (await localListing(cacheDir, repo, commit)).files;
}

function json(status: number, value: unknown, headers: Record<string, string> = {}): LocalAnswer {
  return {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
    body: Buffer.from(JSON.stringify(value)),
  };
}

function notFound(code: string, message: string, commit?: string): LocalAnswer {
  const h: Record<string, string> = { "x-error-code": code, "x-error-message": message };
  if (commit) h["x-repo-commit"] = commit;
  return json(404, { error: message }, h);
}

type Entry =
  | {
      type: "file";
      oid: string;
      size: number;
      path: string;
      lfs?: { oid: string; size: number; pointerSize: number };
    }
  /**
   * oid null: the folder's git tree oid cannot be known (the cache has a part of the commit only).
   * null rather than left out: huggingface_hub's RepoFolder reads `kwargs.pop("oid")` and a missing
   * key would fail the whole listing; a made-up oid would be a lie clients might compare.
   */
  | { type: "directory"; oid: string | null; size: 0; path: string };

function fileEntry(f: LocalFile): Entry {
  const e: Entry = { type: "file", oid: f.oid, size: f.size, path: f.path };
  if (f.lfs) e.lfs = { oid: f.lfs.sha256, size: f.size, pointerSize: f.lfs.pointerSize };
  return e;
}

function dirEntry(listing: LocalListing, path: string): Entry {
  return { type: "directory", oid: listing.dirOids.get(path) ?? null, size: 0, path };
}

function dirsOf(files: readonly LocalFile[]): Set<string> {
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.path.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  }
  return dirs;
}

/**
 * The entries under `under` as the hub lists them: depth first, each folder's children in git
 * order (name bytes, a folder's name compared as "name/"), a folder before its contents.
 */
function treeListing(listing: LocalListing, under: string, recursive: boolean): Entry[] {
  interface Node {
    readonly path: string;
    readonly dirs: Map<string, Node>;
    readonly files: Map<string, LocalFile>;
  }
  const root: Node = { path: "", dirs: new Map(), files: new Map() };
  for (const f of listing.files) {
    const segs = f.path.split("/");
    let node = root;
    for (const seg of segs.slice(0, -1)) {
      let next = node.dirs.get(seg);
      if (next === undefined) {
        next = { path: node.path === "" ? seg : `${node.path}/${seg}`, dirs: new Map(), files: new Map() };
        node.dirs.set(seg, next);
      }
      node = next;
    }
    node.files.set(segs[segs.length - 1] ?? "", f);
  }
  let start: Node | undefined = root;
  for (const seg of under === "" ? [] : under.split("/")) start = start?.dirs.get(seg);
  const out: Entry[] = [];
  const visit = (node: Node): void => {
    const items: { key: Buffer; dir?: Node; file?: LocalFile }[] = [];
    for (const [name, dir] of node.dirs) items.push({ key: Buffer.from(`${name}/`), dir });
    for (const [name, file] of node.files) items.push({ key: Buffer.from(name), file });
    items.sort((a, b) => Buffer.compare(a.key, b.key));
    for (const it of items) {
      if (it.dir) {
        out.push(dirEntry(listing, it.dir.path));
        if (recursive) visit(it.dir);
      } else if (it.file) out.push(fileEntry(it.file));
    }
  };
  if (start) visit(start);
  return out;
}

/** Cursors as the hub's (and the fake hub's) look: base64 of `{"offset": n}`; opaque to clients. */
function parseCursor(cursor: string | null): number | undefined {
  if (cursor === null) return 0;
  try {
    const o = (JSON.parse(Buffer.from(cursor, "base64").toString("utf8")) as { offset?: unknown }).offset;
    return typeof o === "number" && Number.isSafeInteger(o) && o >= 0 ? o : undefined;
  } catch {
    return undefined;
  }
}

function parsePathsBody(body: Buffer, contentType: string | undefined): string[] {
  const raw = body.toString("utf8");
  if ((contentType ?? "").includes("json")) {
    try {
      const p = (JSON.parse(raw) as { paths?: unknown }).paths;
      if (typeof p === "string") return [p];
      if (Array.isArray(p)) return p.filter((x): x is string => typeof x === "string");
    } catch {
      return [];
    }
    return [];
  }
  return new URLSearchParams(raw).getAll("paths");
}

async function repoExists(cacheDir: string, repo: RepoRef): Promise<boolean> {
  return (await stat(cachePaths(cacheDir, repo).repoDir).catch(() => undefined))?.isDirectory() === true;
}

export interface LocalApiOptions {
  /** Whether this repo may be answered at all (default: every repo). */
  readonly allow?: (repo: RepoRef) => boolean | Promise<boolean>;
  /** Tree entries per page (the hub's is 1000). */
  readonly pageSize?: number | undefined;
}

const TRUE = ["true", "1", "True"];

/** `/api/...` answered from the cache; undefined for a route the cache cannot answer (not an API route it knows). */
export async function localApi(
  cacheDir: string,
  method: string,
  url: URL,
  body: Buffer,
  contentType: string | undefined,
  opts: LocalApiOptions = {},
): Promise<LocalAnswer | undefined> {
  const allow = opts.allow ?? (() => true);
  const pageSize = Math.max(1, opts.pageSize ?? 1000);
  const segs = url.pathname.split("/").slice(2); // "", "api", ...
  const type = API_TYPES[segs[0] ?? ""];
  if (type === undefined) return undefined;
  const rest = segs.slice(1).map((s) => decodeURIComponent(s));
  // Where the action word sits decides whether the id has one segment or two (as the hub's router).
  const candidates: { id: string; action: string; args: string[] }[] = [];
  for (const k of [2, 1]) {
    const action = rest[k];
    if (action !== undefined && ACTIONS.has(action))
      candidates.push({ id: rest.slice(0, k).join("/"), action, args: rest.slice(k + 1) });
  }
  if (rest.length === 1 || rest.length === 2)
    candidates.push({ id: rest.join("/"), action: "info", args: [] });
  let chosen = candidates[0];
  for (const c of candidates) {
    if (await repoExists(cacheDir, { type, id: c.id })) {
      chosen = c;
      break;
    }
  }
  if (chosen === undefined || chosen.id.split("/").some((s) => s === "" || s === "." || s === ".."))
    return undefined;
  const repo: RepoRef = { type, id: chosen.id };
  if (!(await allow(repo))) return undefined;
  const label = `${type === "model" ? "" : `${type}s/`}${repo.id}`;
  if (!(await repoExists(cacheDir, repo)))
    return notFound("RepoNotFound", `offline: ${label} is not in the server's cache`);
  const repoDir = cachePaths(cacheDir, repo).repoDir;
  if (chosen.action === "refs") {
    const refsDir = join(repoDir, "refs");
    const branches: { name: string; ref: string; targetCommit: string }[] = [];
    const walk = async (rel: string): Promise<void> => {
      const names = await readdir(join(refsDir, ...rel.split("/").filter(Boolean))).catch(() => []);
      for (const n of names.sort()) {
        const p = rel ? `${rel}/${n}` : n;
        const c = await localCommit(cacheDir, repo, p);
        if (c && !p.startsWith("refs/")) branches.push({ name: p, ref: `refs/heads/${p}`, targetCommit: c });
        else if (!c) await walk(p);
      }
    };
    await walk("");
    return json(200, { branches, tags: [], converts: [] });
  }
  const revision = chosen.action === "info" ? "main" : (chosen.args[0] ?? "");
  const commit = await localCommit(cacheDir, repo, revision);
  if (commit === undefined)
    return notFound("RevisionNotFound", `offline: ${label}@${revision} is not in the server's cache`);
  const listing = await localListing(cacheDir, repo, commit);
  const files = listing.files;
  const commitHeader = { "x-repo-commit": commit };
  if (chosen.action === "info" || chosen.action === "revision") {
    if (chosen.action === "revision" && chosen.args.length !== 1) return undefined;
    const blobs = TRUE.includes(url.searchParams.get("blobs") ?? "");
    // What the upstream said of this commit when it was asked (private, gated, lastModified, ...);
    // without it only what the cache itself tells: no field is made up.
    const heard = await readInfoMemo(repoDir, commit);
    const info: Record<string, unknown> = heard ? { ...heard } : { id: repo.id };
    if (!heard) {
      if (type === "model") info.modelId = repo.id;
      if (repo.id.includes("/")) info.author = repo.id.split("/")[0];
    }
    info.id = repo.id;
    info.sha = commit;
    info.siblings = files.map((f) =>
      blobs
        ? {
            rfilename: f.path,
            size: f.size,
            blobId: f.oid,
            ...(f.lfs ? { lfs: { sha256: f.lfs.sha256, size: f.size, pointerSize: f.lfs.pointerSize } } : {}),
          }
        : { rfilename: f.path },
    );
    // `expand=a&expand=b` (or `expand[]=`): the hub answers those fields only, beside _id and id.
    const expand = [...url.searchParams.getAll("expand"), ...url.searchParams.getAll("expand[]")];
    if (expand.length > 0) {
      const picked: Record<string, unknown> = {};
      for (const k of ["_id", "id", ...expand]) if (k in info) picked[k] = info[k];
      return json(200, picked, commitHeader);
    }
    return json(200, info, commitHeader);
  }
  if (chosen.action === "tree") {
    if (method !== "GET" && method !== "HEAD") return undefined;
    const under = chosen.args.slice(1).join("/").replace(/\/+$/, "");
    if (under !== "" && !dirsOf(files).has(under))
      return notFound("EntryNotFound", `offline: ${under} does not exist at ${commit}`, commit);
    const recursive = TRUE.includes(url.searchParams.get("recursive") ?? "");
    // `expand=true` adds lastCommit and security scan results on the hub: neither is in the cache,
    // so entries come without them (clients take both as optional).
    const offset = parseCursor(url.searchParams.get("cursor"));
    if (offset === undefined) return json(400, { error: "Invalid cursor" }, { "x-error-code": "BadRequest" });
    const limitParam = Number(url.searchParams.get("limit") ?? Number.NaN);
    const limit =
      Number.isSafeInteger(limitParam) && limitParam > 0 ? Math.min(limitParam, pageSize) : pageSize;
    const all = treeListing(listing, under, recursive);
    const headers: Record<string, string> = { ...commitHeader };
    if (!listing.complete) headers["x-hfget-listing"] = "partial";
    if (offset + limit < all.length) {
      const next = new URLSearchParams(url.search);
      next.set("cursor", Buffer.from(JSON.stringify({ offset: offset + limit })).toString("base64"));
      // Relative: relay() puts the server's own origin in front.
      headers.link = `<${url.pathname}?${next.toString()}>; rel="next"`;
    }
    return json(200, all.slice(offset, offset + limit), headers);
  }
  // paths-info
  if (method !== "POST") return undefined;
  const known = new Map(files.map((f) => [f.path, f]));
  const dirs = dirsOf(files);
  const out: Entry[] = [];
  for (const p of parsePathsBody(body, contentType)) {
    const f = known.get(p);
    if (f) out.push(fileEntry(f));
    else if (dirs.has(p)) out.push(dirEntry(listing, p));
  }
  return json(200, out, commitHeader);
}
