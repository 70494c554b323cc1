import { createHash } from "node:crypto";
import { readdir, readFile, readlink, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { cachePaths } from "../cache/paths.js";
import { readTree } from "../cache/tree-cache.js";
import { isCommitSha } from "../hub/resolve-revision.js";
import type { RepoRef, RepoType } from "../repo.js";

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

/** Every file of a commit the cache knows of, sorted by path. */
export async function localFiles(cacheDir: string, repo: RepoRef, commit: string): Promise<LocalFile[]> {
  const paths = cachePaths(cacheDir, repo);
  const tree = await readTree(paths.repoDir, commit);
  const out: LocalFile[] = [];
  if (tree) {
    for (const [path, e] of tree) {
      if (e.lfs_sha256) out.push(lfsFile(path, e.lfs_sha256, e.lfs_size ?? e.size));
      else out.push({ path, size: e.size, oid: e.blob_id });
    }
  } else {
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
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
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
  | { type: "directory"; oid: string; size: 0; path: string };

function fileEntry(f: LocalFile): Entry {
  const e: Entry = { type: "file", oid: f.oid, size: f.size, path: f.path };
  if (f.lfs) e.lfs = { oid: f.lfs.sha256, size: f.size, pointerSize: f.lfs.pointerSize };
  return e;
}

/** A folder's oid: the cache does not keep git trees, so a stable stand-in derived from commit and path. */
function dirEntry(commit: string, path: string): Entry {
  return { type: "directory", oid: gitBlobSha1(Buffer.from(`${commit}:${path}`)), size: 0, path };
}

function dirsOf(files: readonly LocalFile[]): Set<string> {
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.path.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  }
  return dirs;
}

function treeListing(
  commit: string,
  files: readonly LocalFile[],
  under: string,
  recursive: boolean,
): Entry[] {
  const prefix = under === "" ? "" : `${under}/`;
  const out: Entry[] = [];
  const dirs = [...dirsOf(files)].filter((d) => d.startsWith(prefix));
  for (const d of dirs.sort()) {
    if (recursive || !d.slice(prefix.length).includes("/")) out.push(dirEntry(commit, d));
  }
  for (const f of files) {
    if (!f.path.startsWith(prefix)) continue;
    if (recursive || !f.path.slice(prefix.length).includes("/")) out.push(fileEntry(f));
  }
  return out;
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

/** `/api/...` answered from the cache; undefined for a route the cache cannot answer (not an API route it knows). */
export async function localApi(
  cacheDir: string,
  method: string,
  url: URL,
  body: Buffer,
  contentType: string | undefined,
  /** Whether this repo may be answered at all (default: every repo). */
  allow: (repo: RepoRef) => boolean = () => true,
): Promise<LocalAnswer | undefined> {
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
  if (!allow(repo)) return undefined;
  const label = `${type === "model" ? "" : `${type}s/`}${repo.id}`;
  if (!(await repoExists(cacheDir, repo)))
    return notFound("RepoNotFound", `offline: ${label} is not in the server's cache`);
  if (chosen.action === "refs") {
    const refsDir = join(cachePaths(cacheDir, repo).repoDir, "refs");
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
  const files = await localFiles(cacheDir, repo, commit);
  const commitHeader = { "x-repo-commit": commit };
  if (chosen.action === "info" || chosen.action === "revision") {
    if (chosen.action === "revision" && chosen.args.length !== 1) return undefined;
    const blobs = ["true", "1", "True"].includes(url.searchParams.get("blobs") ?? "");
    const info: Record<string, unknown> = { _id: gitBlobSha1(Buffer.from(label)).slice(0, 24), id: repo.id };
    if (type === "model") info.modelId = repo.id;
    if (repo.id.includes("/")) info.author = repo.id.split("/")[0];
    Object.assign(info, {
      sha: commit,
      disabled: false,
      tags: [],
      siblings: files.map((f) =>
        blobs
          ? {
              rfilename: f.path,
              size: f.size,
              blobId: f.oid,
              ...(f.lfs
                ? { lfs: { sha256: f.lfs.sha256, size: f.size, pointerSize: f.lfs.pointerSize } }
                : {}),
            }
          : { rfilename: f.path },
      ),
      usedStorage: files.reduce((n, f) => n + f.size, 0),
    });
    if (type === "space") info.sdk = "static";
    return json(200, info, commitHeader);
  }
  if (chosen.action === "tree") {
    if (method !== "GET" && method !== "HEAD") return undefined;
    const under = chosen.args.slice(1).join("/").replace(/\/+$/, "");
    if (under !== "" && !dirsOf(files).has(under))
      return notFound("EntryNotFound", `offline: ${under} does not exist at ${commit}`, commit);
    const recursive = ["true", "1", "True"].includes(url.searchParams.get("recursive") ?? "");
    return json(200, treeListing(commit, files, under, recursive), commitHeader);
  }
  // paths-info
  if (method !== "POST") return undefined;
  const byPath = new Map(files.map((f) => [f.path, f]));
  const dirs = dirsOf(files);
  const out: Entry[] = [];
  for (const p of parsePathsBody(body, contentType)) {
    const f = byPath.get(p);
    if (f) out.push(fileEntry(f));
    else if (dirs.has(p)) out.push(dirEntry(commit, p));
  }
  return json(200, out, commitHeader);
}
