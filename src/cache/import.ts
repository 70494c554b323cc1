import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, lstat, rename, rm, rmdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as tar from "tar-stream";

/** One entry the extractor yields (tar-stream's Source, not exported). */
type TarEntry = tar.Extract extends AsyncIterable<infer E> ? E : never;

import { HfgetError } from "../errors.js";
import type { RepoFile } from "../hub/types.js";
import { type RepoRef, repoLabel } from "../repo.js";
import { openNoFollow, writeFileAtomic } from "../util/atomic-write.js";
import { diskError } from "../util/io-error.js";
import { createContentHash } from "../verify.js";
import { archiveError, MANIFEST_NAME, MAX_MANIFEST_BYTES, type Manifest, parseManifest } from "./archive.js";
import { cachePlacement, localDirPlacement, SafeDirs } from "./commit.js";
import { makeDirs } from "./dirs.js";
import { tryLock } from "./lock.js";
import { cachePaths, localDirPaths, PARTIAL_SUFFIX } from "./paths.js";
import { writeCachedirTag, writeTree } from "./tree-cache.js";

/**
 * `hfget import`: reads an archive written by `hfget export` (archive.ts) entry by entry and hashes
 * each blob while writing it to a staging file (a name ending in `.hfget-partial`, which
 * huggingface_hub never reads and `hfget cache prune` cleans). Nothing becomes visible until the
 * whole archive has been read and every blob it lists matched its hash: then, under each blob's
 * lock (the one huggingface_hub takes), the staged files are renamed into blobs/ (or the local
 * dir), then the snapshot links, trees/<commit>.json (complete snapshots only), the refs and
 * CACHEDIR.TAG are written. A truncated, tampered or hostile archive fails before that step and
 * its staged files are removed, so it commits nothing at all (a repo folder it created is removed
 * again when empty). A kill -9 during the read can leave staged `.hfget-partial` files only.
 */
export interface ImportOptions {
  /** Cache root, unless `localDir` is set. */
  readonly cacheDir: string;
  /** Plain files in this folder (huggingface_hub's --local-dir layout) instead of the cache. */
  readonly localDir?: string | undefined;
  readonly signal?: AbortSignal | undefined;
  /** How long to wait for a blob lock another process holds (default: as long as it takes). */
  readonly lockTimeoutMs?: number | undefined;
  /** Hears once per lock that another process holds (the import then waits for it). */
  readonly onLockWait?: ((lock: string) => void) | undefined;
}

export interface ImportResult {
  readonly repo: RepoRef;
  readonly commit: string;
  readonly files: number;
  readonly blobs: number;
  /** Bytes read from the archive and verified. */
  readonly bytes: number;
  /** Blobs the cache already had (their archive copy was verified, then dropped). */
  readonly alreadyPresent: number;
  readonly refs: readonly string[];
  readonly complete: boolean;
  /** The snapshot folder (or the local dir). */
  readonly path: string;
}

const LOCK_POLL_MS = 200;

async function waitLock(path: string, opts: ImportOptions) {
  const { signal, lockTimeoutMs } = opts;
  const until = lockTimeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + lockTimeoutMs;
  for (let tries = 0; ; tries++) {
    const release = await tryLock(path);
    if (release !== undefined) return release;
    if (tries === 0) opts.onLockWait?.(path);
    signal?.throwIfAborted();
    if (Date.now() > until) {
      throw new HfgetError("DISK", `another process holds the lock ${path}`, {
        hint: "wait for the download using it to end, then import again",
      });
    }
    await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
  }
}

async function exists(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined)) !== undefined;
}

function toRepoFile(f: Manifest["files"][number]): RepoFile {
  return {
    path: f.path,
    size: f.size,
    gitOid: f.gitOid ?? f.blob,
    lfs: f.algorithm === "sha256" ? { sha256: f.blob } : undefined,
  };
}

/** Reads a whole (small) entry, refusing more than `max` bytes. */
async function readSmall(entry: TarEntry, max: number): Promise<string> {
  if ((entry.header.size ?? 0) > max) throw archiveError(`${MANIFEST_NAME} is larger than ${max} bytes`);
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of entry) {
    n += (c as Buffer).length;
    if (n > max) throw archiveError(`${MANIFEST_NAME} is larger than ${max} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Why an archive entry is refused (undefined: a blob entry that may be read). */
function entryProblem(h: tar.Header): string | undefined {
  const name = JSON.stringify(h.name.slice(0, 200));
  if (h.type !== "file") return `entry ${name} is a ${h.type ?? "special entry"}, not a regular file`;
  if (!/^blobs\/(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(h.name)) return `unexpected entry ${name}`;
  return undefined;
}

export async function importSnapshot(opts: ImportOptions, input: Readable): Promise<ImportResult> {
  const extract = tar.extract();
  let readError: unknown;
  const feeding = pipeline(input, extract).catch((err: unknown) => {
    readError = err;
  });
  const iterator = extract[Symbol.asyncIterator]();
  /** A failure of the tar parser (or the input) as the one archive error. */
  const asArchiveError = (err: unknown): unknown => {
    if (err instanceof HfgetError) return err;
    const e = (readError ?? err) as { code?: string; message?: string };
    if (e instanceof HfgetError) return e;
    if (e.code === "ABORT_ERR" && opts.signal?.aborted) return opts.signal.reason;
    const msg = e.message ?? String(e);
    return archiveError(
      /end of data/i.test(msg)
        ? "it is truncated (the data ends inside an entry)"
        : `it is not a readable tar (${msg})`,
    );
  };
  const next = async (): Promise<TarEntry | undefined> => {
    try {
      const r = await iterator.next();
      return r.done ? undefined : r.value;
    } catch (err) {
      throw asArchiveError(err);
    }
  };
  const staged = new Map<string, string>();
  let cleanup: (() => Promise<void>) | undefined;
  try {
    const first = await next();
    if (first === undefined) throw archiveError("it is empty");
    if (first.header.name !== MANIFEST_NAME || first.header.type !== "file") {
      throw archiveError(
        `its first entry is ${JSON.stringify(first.header.name.slice(0, 200))}, not ${MANIFEST_NAME}`,
        "only archives written by hfget export can be imported",
      );
    }
    let manifest: Manifest;
    try {
      manifest = parseManifest(await readSmall(first, MAX_MANIFEST_BYTES));
    } catch (err) {
      throw asArchiveError(err);
    }
    const repo: RepoRef = { type: manifest.repoType, id: manifest.repo };
    const { commit } = manifest;
    const label = `${repoLabel(repo)}@${commit}`;
    const local = opts.localDir === undefined ? undefined : localDirPaths(opts.localDir);
    const cache = cachePaths(opts.cacheDir, repo);
    const root = local ? local.root : cache.repoDir;
    const stageDir = local
      ? join(local.root, ".cache", "huggingface", "download")
      : join(cache.repoDir, "blobs");
    const created = !(await exists(root));
    await makeDirs(root);
    const dirs = new SafeDirs(root);
    try {
      await dirs.ensure(stageDir);
    } catch (err) {
      throw err instanceof HfgetError
        ? err
        : new HfgetError("DISK", `cannot create ${stageDir}`, { cause: err });
    }
    cleanup = async () => {
      for (const p of staged.values()) await rm(p, { force: true }).catch(() => undefined);
      if (created) {
        // Only folders this import made, and only when empty: never anything else.
        const made = local ? [stageDir, dirname(stageDir), dirname(dirname(stageDir))] : [stageDir];
        for (const d of made) await rmdir(d).catch(() => undefined);
        await rmdir(root).catch(() => undefined);
      }
    };
    const wanted = new Map(manifest.files.map((f) => [f.blob, f]));
    const tag = randomBytes(4).toString("hex");
    let bytes = 0;
    for (let entry = await next(); entry !== undefined; entry = await next()) {
      opts.signal?.throwIfAborted();
      const h = entry.header;
      const problem = entryProblem(h);
      if (problem !== undefined) throw archiveError(problem);
      const blob = h.name.slice("blobs/".length);
      const f = wanted.get(blob);
      if (f === undefined) throw archiveError(`blob ${blob} is not in its manifest`);
      if (staged.has(blob)) throw archiveError(`blob ${blob} appears twice`);
      if (h.size !== f.size)
        throw archiveError(`blob ${blob} has ${h.size} bytes, its manifest says ${f.size}`);
      const stagePath = join(stageDir, `${blob}.import-${tag}${PARTIAL_SUFFIX}`);
      staged.set(blob, stagePath);
      const hash = createContentHash({ algorithm: f.algorithm, hex: blob }, f.size);
      const fh = await openNoFollow(stagePath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL);
      let n = 0;
      try {
        for await (const chunk of entry) {
          const buf = chunk as Buffer;
          hash.update(buf);
          n += buf.length;
          await fh.write(buf);
        }
      } catch (err) {
        throw asArchiveError(err);
      } finally {
        await fh.close();
      }
      if (n !== f.size)
        throw archiveError(`it is truncated (blob ${blob} ends after ${n} of ${f.size} bytes)`);
      if (hash.digest("hex") !== blob) {
        throw archiveError(`blob ${blob} (${f.path}) does not match its ${f.algorithm} hash`);
      }
      bytes += n;
    }
    await feeding;
    if (readError !== undefined) throw asArchiveError(readError);
    const missing = [...wanted.keys()].filter((b) => !staged.has(b));
    if (missing.length > 0) {
      throw archiveError(
        `it is truncated: ${missing.length} of its ${wanted.size} blobs are missing (${wanted.get(missing[0]!)!.path}, ...)`,
      );
    }

    // Every blob is verified: make them visible, each under its lock.
    let alreadyPresent = 0;
    try {
      if (local === undefined) {
        for (const [blob, stagePath] of staged) {
          const release = await waitLock(cache.lock(blob), opts);
          try {
            const st = await stat(cache.blob(blob)).catch(() => undefined);
            if (st?.isFile() && st.size === wanted.get(blob)!.size) {
              alreadyPresent++;
              await rm(stagePath, { force: true });
            } else {
              await rename(stagePath, cache.blob(blob));
            }
            staged.delete(blob);
          } finally {
            await release();
          }
        }
        for (const f of manifest.files) {
          if (!(await cachePlacement(cache, commit, toRepoFile(f), dirs).isPresent())) {
            throw new HfgetError("DISK", `${label}: could not link ${f.path} to its blob`, {
              hint: "another process changed the cache meanwhile: import again",
            });
          }
        }
        if (manifest.complete) await writeTree(cache.repoDir, commit, manifest.files.map(toRepoFile));
        for (const r of manifest.refs) {
          const p = cache.ref(r);
          await dirs.ensure(dirname(p));
          await writeFileAtomic(p, commit);
        }
        await writeCachedirTag(opts.cacheDir).catch(() => undefined);
      } else {
        const uses = new Map<string, number>();
        for (const f of manifest.files) uses.set(f.blob, (uses.get(f.blob) ?? 0) + 1);
        for (const f of manifest.files) {
          const placement = localDirPlacement(local, commit, toRepoFile(f), dirs);
          const release = await waitLock(placement.lock, opts);
          try {
            await placement.prepare();
            const stagePath = staged.get(f.blob)!;
            const left = uses.get(f.blob)! - 1;
            uses.set(f.blob, left);
            if (left === 0) {
              await rename(stagePath, placement.incomplete);
              staged.delete(f.blob);
            } else {
              await copyFile(stagePath, placement.incomplete);
            }
            await placement.commit();
          } finally {
            await release();
          }
        }
        if (manifest.complete) {
          await writeTree(join(local.root, ".cache", "huggingface"), commit, manifest.files.map(toRepoFile));
        }
      }
    } catch (err) {
      if (err instanceof HfgetError || (err as { code?: string }).code === undefined) throw err;
      throw diskError(err, local ? local.root : cache.repoDir, "cannot write into");
    }
    return {
      repo,
      commit,
      files: manifest.files.length,
      blobs: wanted.size,
      bytes,
      alreadyPresent,
      refs: local ? [] : manifest.refs,
      complete: manifest.complete,
      path: local ? local.root : cache.snapshotDir(commit),
    };
  } catch (err) {
    extract.destroy();
    input.destroy();
    await feeding;
    await cleanup?.();
    throw err;
  }
}
