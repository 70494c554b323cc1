import { lstat, mkdir, readdir, readFile, readlink, rename, stat } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";
import { type RepoRef, repoFolderName } from "../repo.js";
import { blobAlgorithm, hashBlob } from "./hash-blob.js";
import { HashPool } from "./hash-pool.js";

/**
 * `hfget cache verify`: offline re-hash of every blob against its own name (sha256 for 64-hex
 * names, git blob sha1 for 40-hex), every snapshot link must resolve, and anything else in blobs/
 * is reported (partial downloads, stray objects). Reads only, unless `fix` moves bad blobs into
 * `<cache>/.hfget-quarantine/` (never deleted), so the next download fetches them again.
 */
export type CacheProblemKind = "corrupt" | "broken-link" | "partial" | "stray" | "unreadable";

export interface CacheProblem {
  readonly kind: CacheProblemKind;
  /** Path relative to the cache root. */
  readonly path: string;
  readonly detail: string;
  /** Where --fix moved it, relative to the cache root. */
  readonly movedTo?: string | undefined;
}

export type VerifyEvent =
  | { readonly type: "verify-start"; readonly blobs: number; readonly bytes: number }
  | { readonly type: "verify-bytes"; readonly bytes: number }
  | { readonly type: "verify-problem"; readonly problem: CacheProblem };

export interface VerifyCacheOptions {
  readonly repo?: RepoRef | undefined;
  /** A ref name or commit: only the blobs its snapshot links to. Needs `repo`. */
  readonly revision?: string | undefined;
  readonly fix?: boolean | undefined;
  readonly onEvent?: ((e: VerifyEvent) => void) | undefined;
  readonly signal?: AbortSignal | undefined;
  /**
   * Hashing threads: 0 hashes on the main thread. Default: one per core (at most 4) when there are
   * at least 32 MiB to hash, else 0.
   */
  readonly threads?: number | undefined;
}

export interface VerifyCacheResult {
  readonly blobs: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly problems: readonly CacheProblem[];
}

export const QUARANTINE_DIR = ".hfget-quarantine";

export { blobAlgorithm, hashBlob } from "./hash-blob.js";

/**
 * Below this many bytes the blobs are hashed on the main thread: starting worker threads costs tens
 * of milliseconds, more than hashing a few MB.
 */
const THREADS_MIN_BYTES = 32 * 1024 * 1024;
/** At most this many hashing threads (the disk, not the cores, is the limit beyond). */
const MAX_THREADS = 4;

async function listDir(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch {
    return [];
  }
}

async function walkSnapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string): Promise<void> => {
    for (const name of await listDir(d)) {
      const p = join(d, name);
      const st = await lstat(p);
      if (st.isDirectory()) await visit(p);
      else out.push(p);
    }
  };
  await visit(dir);
  return out;
}

async function commitOf(repoDir: string, revision: string): Promise<string | undefined> {
  if (/^[0-9a-f]{40}$/.test(revision)) return revision;
  try {
    return await readFile(join(repoDir, "refs", ...revision.split("/")), "utf8");
  } catch {
    return undefined;
  }
}

export async function verifyCache(root: string, opts: VerifyCacheOptions = {}): Promise<VerifyCacheResult> {
  const started = Date.now();
  const problems: CacheProblem[] = [];
  const rel = (p: string) => relative(root, p).split(sep).join("/");
  const report = (p: CacheProblem) => {
    problems.push(p);
    opts.onEvent?.({ type: "verify-problem", problem: p });
  };
  const folders = opts.repo
    ? [repoFolderName(opts.repo)]
    : (await listDir(root)).filter((n) => /^(models|datasets|spaces)--/.test(n));
  const toHash: { path: string; name: string; repoFolder: string; size: number }[] = [];
  for (const folder of folders) {
    const repoDir = join(root, folder);
    const blobsDir = join(repoDir, "blobs");
    let only: Set<string> | undefined;
    const snapshotDirs: string[] = [];
    if (opts.revision !== undefined) {
      const commit = await commitOf(repoDir, opts.revision);
      if (commit === undefined) {
        report({
          kind: "broken-link",
          path: rel(repoDir),
          detail: `no revision ${opts.revision} in the cache`,
        });
        continue;
      }
      snapshotDirs.push(join(repoDir, "snapshots", commit));
      only = new Set();
    } else {
      for (const c of await listDir(join(repoDir, "snapshots")))
        snapshotDirs.push(join(repoDir, "snapshots", c));
    }
    for (const snap of snapshotDirs) {
      for (const f of await walkSnapshot(snap)) {
        const st = await lstat(f);
        if (!st.isSymbolicLink()) continue; // a copy where symlinks fail: nothing names its hash
        const target = resolve(dirname(f), await readlink(f));
        const inBlobs = dirname(target) === blobsDir;
        let ok = inBlobs;
        try {
          if (!(await stat(target)).isFile()) ok = false;
        } catch {
          ok = false;
        }
        if (!ok) {
          report({
            kind: "broken-link",
            path: rel(f),
            detail: inBlobs ? `links to missing blob ${rel(target)}` : `links outside blobs/: ${target}`,
          });
        }
        if (inBlobs) only?.add(target.slice(blobsDir.length + 1));
      }
    }
    for (const name of await listDir(blobsDir)) {
      const path = join(blobsDir, name);
      const st = await lstat(path);
      const algo = blobAlgorithm(name);
      if (algo !== undefined && st.isFile()) {
        if (only === undefined || only.has(name))
          toHash.push({ path, name, repoFolder: folder, size: st.size });
        continue;
      }
      if (only !== undefined) continue;
      // `<blob id>.<suffix>`: a download's partial file or its resume state (hfget's or huggingface_hub's).
      const partial = /^[0-9a-f]{40}(?:[0-9a-f]{24})?\./.test(name) && st.isFile();
      report({
        kind: partial ? "partial" : "stray",
        path: rel(path),
        detail: partial
          ? `partial download, ${st.size} bytes (hfget cache prune removes it after a day)`
          : `not a blob (${st.isFile() ? "name is not a hash" : "not a regular file"})`,
      });
    }
  }
  const bytes = toHash.reduce((n, b) => n + b.size, 0);
  opts.onEvent?.({ type: "verify-start", blobs: toHash.length, bytes });
  const onBytes = (n: number) => opts.onEvent?.({ type: "verify-bytes", bytes: n });
  const threads = Math.min(
    opts.threads ?? (bytes >= THREADS_MIN_BYTES ? Math.min(availableParallelism(), MAX_THREADS) : 0),
    toHash.length,
  );
  const pool = threads > 0 ? new HashPool(threads) : undefined;
  const hash = (b: (typeof toHash)[number]) =>
    pool !== undefined
      ? pool.hash(b.path, blobAlgorithm(b.name)!, onBytes)
      : hashBlob(b.path, blobAlgorithm(b.name)!, onBytes, opts.signal);
  // Problems are reported in the order of toHash (folder, then name), whichever hash ends first.
  const found: (CacheProblem | null | undefined)[] = new Array(toHash.length).fill(undefined);
  let flushed = 0;
  const flush = () => {
    while (flushed < found.length && found[flushed] !== undefined) {
      const p = found[flushed++];
      if (p !== null && p !== undefined) report(p);
    }
  };
  const check = async (i: number): Promise<void> => {
    const b = toHash[i]!;
    const algo = blobAlgorithm(b.name)!;
    let got: string;
    try {
      got = await hash(b);
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      found[i] = { kind: "unreadable", path: rel(b.path), detail: (err as Error).message };
      return;
    }
    if (got === b.name) {
      found[i] = null;
      return;
    }
    let movedTo: string | undefined;
    if (opts.fix) movedTo = rel(await quarantine(root, b.repoFolder, b.path, b.name));
    found[i] = {
      kind: "corrupt",
      path: rel(b.path),
      detail: `${algo === "sha256" ? "sha256" : "git sha1"} is ${got}`,
      movedTo,
    };
  };
  // As many blobs in flight as threads (two on the main thread: one hashes while the other's read
  // waits on the disk); the pool hands each thread the next blob as it finishes one.
  let next = 0;
  const lane = async () => {
    while (next < toHash.length) {
      opts.signal?.throwIfAborted();
      await check(next++);
      flush();
    }
  };
  const onAbort = () => void pool?.close(new Error("interrupted"));
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    await Promise.all(Array.from({ length: Math.max(2, threads) }, lane));
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    await pool?.close();
  }
  flush();
  return { blobs: toHash.length, bytes, seconds: (Date.now() - started) / 1000, problems };
}

/** Moves a bad blob aside (same filesystem: a rename), so its name is free for a new download. */
async function quarantine(root: string, repoFolder: string, path: string, name: string): Promise<string> {
  const dir = join(root, QUARANTINE_DIR, repoFolder);
  await mkdir(dir, { recursive: true });
  const dest = join(dir, `${name}.${new Date().toISOString().replace(/[:.]/g, "-")}`);
  await rename(path, dest);
  return dest;
}
