import { readdir, readFile, realpath, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import type { RepoType } from "../repo.js";

/**
 * A read-only scan of a huggingface_hub cache, computed the way huggingface_hub's
 * `scan_cache_dir` (utils/_cache_manager.py) does, so `hfget cache ls` and `hf cache ls` print the
 * same numbers: a blob shared by several snapshots (or revisions) is counted once per repo, sizes
 * are apparent sizes (st_size), times come from the blobs' atime/mtime.
 */
export interface CachedRevision {
  readonly commit: string;
  readonly snapshotPath: string;
  readonly refs: readonly string[];
  /** Bytes of the distinct blobs this snapshot links to. */
  readonly sizeOnDisk: number;
  readonly nbFiles: number;
  /** Seconds since the epoch. */
  readonly lastModified: number;
  /** Snapshot paths (repo-relative, `/`-separated) and the blob each resolves to. */
  readonly files: readonly { readonly path: string; readonly blobPath: string; readonly size: number }[];
}

export interface CachedRepo {
  readonly type: RepoType;
  readonly id: string;
  /** `model/org/name`, as `hf cache ls` prints it. */
  readonly cacheId: string;
  readonly repoPath: string;
  readonly sizeOnDisk: number;
  readonly nbFiles: number;
  readonly lastAccessed: number;
  readonly lastModified: number;
  readonly revisions: readonly CachedRevision[];
}

export interface CacheScan {
  readonly root: string;
  readonly repos: readonly CachedRepo[];
  readonly sizeOnDisk: number;
  /** One line each, like huggingface_hub's CorruptedCacheException messages. */
  readonly warnings: readonly string[];
}

/** OS helper files huggingface_hub ignores. */
const IGNORED = new Set([".DS_Store", "Thumbs.db", "desktop.ini"]);

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Every non-folder entry under `dir` (symlinks followed for folders, like Python's glob("**\/*")). */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      if (await isDir(p)) await visit(p);
      else out.push(p);
    }
  };
  await visit(dir);
  return out;
}

class Corrupted extends Error {}

async function scanRepo(repoPath: string, name: string): Promise<CachedRepo> {
  if (!(await isDir(repoPath))) throw new Corrupted(`Repo path is not a directory: ${repoPath}`);
  const cut = name.indexOf("--");
  if (cut < 0) throw new Corrupted(`Repo path is not a valid HuggingFace cache directory: ${repoPath}`);
  const type = name.slice(0, cut - 1);
  const id = name.slice(cut + 2).replaceAll("--", "/");
  if (type !== "model" && type !== "dataset" && type !== "space") {
    throw new Corrupted(
      `Repo type must be \`dataset\`, \`model\` or \`space\`, found \`${type}\` (${repoPath}).`,
    );
  }
  const snapshots = join(repoPath, "snapshots");
  if (!(await isDir(snapshots)))
    throw new Corrupted(`Snapshots dir doesn't exist in cached repo: ${snapshots}`);
  const refsPath = join(repoPath, "refs");
  const refsByHash = new Map<string, string[]>();
  try {
    const st = await stat(refsPath);
    if (!st.isDirectory()) throw new Corrupted(`Refs directory cannot be a file: ${refsPath}`);
    for (const ref of await filesUnder(refsPath)) {
      if (IGNORED.has(ref.slice(ref.lastIndexOf(sep) + 1))) continue;
      const commit = await readFile(ref, "utf8");
      const list = refsByHash.get(commit) ?? [];
      list.push(relative(refsPath, ref).split(sep).join("/"));
      refsByHash.set(commit, list);
    }
  } catch (err) {
    if (err instanceof Corrupted) throw err;
  }
  const blobStats = new Map<string, { size: number; atime: number; mtime: number }>();
  const revisions: CachedRevision[] = [];
  for (const commit of (await readdir(snapshots)).sort()) {
    if (IGNORED.has(commit)) continue;
    const revPath = join(snapshots, commit);
    if (!(await isDir(revPath))) throw new Corrupted(`Snapshots folder corrupted. Found a file: ${revPath}`);
    const files: { path: string; blobPath: string; size: number }[] = [];
    for (const f of await filesUnder(revPath)) {
      let blobPath: string;
      try {
        blobPath = await realpath(f);
      } catch {
        throw new Corrupted(`Blob missing (broken symlink): ${f}`);
      }
      let s = blobStats.get(blobPath);
      if (s === undefined) {
        const st = await stat(blobPath);
        s = { size: st.size, atime: st.atimeMs / 1000, mtime: st.mtimeMs / 1000 };
        blobStats.set(blobPath, s);
      }
      files.push({ path: relative(revPath, f).split(sep).join("/"), blobPath, size: s.size });
    }
    const distinct = new Set(files.map((f) => f.blobPath));
    let size = 0;
    for (const b of distinct) size += blobStats.get(b)!.size;
    const lastModified =
      files.length > 0
        ? Math.max(...files.map((f) => blobStats.get(f.blobPath)!.mtime))
        : (await stat(revPath)).mtimeMs / 1000;
    revisions.push({
      commit,
      snapshotPath: revPath,
      refs: (refsByHash.get(commit) ?? []).sort(),
      sizeOnDisk: size,
      nbFiles: files.length,
      lastModified,
      files,
    });
    refsByHash.delete(commit);
  }
  if (refsByHash.size > 0) {
    const missing = [...refsByHash.entries()].map(([c, r]) => `${JSON.stringify(c)}: ${r.join(",")}`);
    throw new Corrupted(
      `Reference(s) refer to missing commit hashes: {${missing.join(", ")}} (${repoPath}).`,
    );
  }
  const stats = [...blobStats.values()];
  let lastAccessed: number;
  let lastModified: number;
  if (stats.length > 0) {
    lastAccessed = Math.max(...stats.map((s) => s.atime));
    lastModified = Math.max(...stats.map((s) => s.mtime));
  } else {
    const st = await stat(repoPath);
    lastAccessed = st.atimeMs / 1000;
    lastModified = st.mtimeMs / 1000;
  }
  return {
    type,
    id,
    cacheId: `${type}/${id}`,
    repoPath,
    sizeOnDisk: stats.reduce((n, s) => n + s.size, 0),
    nbFiles: stats.length,
    lastAccessed,
    lastModified,
    revisions,
  };
}

/** Scans the cache root; a root that does not exist gives an empty scan. Never writes. */
export async function scanCache(root: string): Promise<CacheScan> {
  let names: string[];
  try {
    names = (await readdir(root)).sort();
  } catch {
    return { root, repos: [], sizeOnDisk: 0, warnings: [] };
  }
  const repos: CachedRepo[] = [];
  const warnings: string[] = [];
  for (const name of names) {
    if (IGNORED.has(name) || name === ".locks" || name === "CACHEDIR.TAG" || name.startsWith(".hfget-"))
      continue;
    try {
      repos.push(await scanRepo(join(root, name), name));
    } catch (err) {
      if (err instanceof Corrupted) warnings.push(err.message);
      else if ((err as { code?: string }).code !== undefined)
        warnings.push(`${join(root, name)}: ${(err as Error).message}`);
      else throw err;
    }
  }
  return { root, repos, sizeOnDisk: repos.reduce((n, r) => n + r.sizeOnDisk, 0), warnings };
}

/** huggingface_hub's `_format_size`: 1000-based, one decimal, `3.4G`, `519.0`. */
export function formatCacheSize(num: number): string {
  let n = num;
  for (const unit of ["", "K", "M", "G", "T", "P", "E", "Z"]) {
    if (Math.abs(n) < 1000) return `${n.toFixed(1)}${unit}`;
    n /= 1000;
  }
  return `${n.toFixed(1)}Y`;
}

/** huggingface_hub's `format_timesince`: "a few seconds ago", "3 days ago". */
export function formatTimeSince(ts: number, now = Date.now() / 1000): string {
  const chunks: [string, number, number | undefined][] = [
    ["second", 1, 60],
    ["minute", 60, 60],
    ["hour", 3600, 24],
    ["day", 86400, 6],
    ["week", 86400 * 7, 6],
    ["month", 86400 * 30, 11],
    ["year", 86400 * 365, undefined],
  ];
  const delta = now - ts;
  if (delta < 20) return "a few seconds ago";
  let value = 0;
  let label = "second";
  for (const [l, div, max] of chunks) {
    value = pyRound(delta / div);
    label = l;
    if (max !== undefined && value <= max) break;
  }
  return `${value} ${label}${value > 1 ? "s" : ""} ago`;
}

/** Python's round(): halves go to the even neighbour. */
function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}
