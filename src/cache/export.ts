import { createReadStream, createWriteStream } from "node:fs";
import { lstat, open, readdir, readFile, realpath, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join, relative, sep } from "node:path";
import { pipeline } from "node:stream/promises";
import * as tar from "tar-stream";

/** What pack.entry takes (tar-stream's own HeaderArgument, not exported). */
type TarHeader = Parameters<tar.Pack["entry"]>[0];

import { HfgetError } from "../errors.js";
import { makeFilter } from "../glob.js";
import { isCommitSha } from "../hub/resolve-revision.js";
import { type RepoRef, repoLabel } from "../repo.js";
import { tmpName } from "../util/atomic-write.js";
import { createContentHash } from "../verify.js";
import {
  ARCHIVE_FORMAT,
  ARCHIVE_VERSION,
  blobEntryName,
  MANIFEST_NAME,
  type Manifest,
  type ManifestFile,
} from "./archive.js";
import { cachePaths } from "./paths.js";
import { readTree } from "./tree-cache.js";

/**
 * `hfget export`: one snapshot of the local cache (never the network) as a tar stream, see
 * archive.ts for its layout. Every blob is re-hashed while it is streamed, so a cache blob that
 * rotted on disk stops the export (exit 5) instead of travelling to the offline machine.
 */
export interface ExportOptions {
  readonly cacheDir: string;
  readonly repo: RepoRef;
  /** Branch, tag, refs/pr/N or a commit sha (default main). */
  readonly revision: string;
  readonly include: readonly string[];
  readonly exclude: readonly string[];
  readonly signal?: AbortSignal | undefined;
}

export interface ExportResult {
  readonly repo: RepoRef;
  readonly commit: string;
  readonly files: number;
  readonly blobs: number;
  /** Bytes of content (distinct blobs) written into the archive. */
  readonly bytes: number;
  readonly complete: boolean;
  readonly refs: readonly string[];
}

const HINT = "download it first (hfget <repo> --revision <rev>), or check --cache-dir / HF_HUB_CACHE";

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      const st = await stat(p).catch(() => undefined);
      if (st?.isDirectory()) await visit(p);
      else out.push(relative(dir, p).split(sep).join("/"));
    }
  };
  await visit(dir);
  return out;
}

async function resolveCommit(opts: ExportOptions): Promise<string> {
  if (isCommitSha(opts.revision)) return opts.revision;
  const paths = cachePaths(opts.cacheDir, opts.repo);
  try {
    const c = (await readFile(paths.ref(opts.revision), "utf8")).trim();
    if (isCommitSha(c)) return c;
  } catch {
    // below
  }
  throw new HfgetError(
    "OFFLINE",
    `${repoLabel(opts.repo)}@${opts.revision} is not in the cache ${opts.cacheDir}`,
    { hint: HINT },
  );
}

/** The refs under refs/ that point at `commit`. */
async function refsTo(refsDir: string, commit: string): Promise<string[]> {
  let names: string[];
  try {
    names = await listFiles(refsDir);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const n of names) {
    const c = await readFile(join(refsDir, ...n.split("/")), "utf8").catch(() => "");
    if (c.trim() === commit) out.push(n);
  }
  return out;
}

const BLOB_NAME = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Works out what the archive holds: the manifest, and each distinct blob's path on disk. */
export async function planExport(opts: ExportOptions): Promise<{
  manifest: Manifest;
  blobs: Map<string, { path: string; size: number; algorithm: ManifestFile["algorithm"] }>;
}> {
  const paths = cachePaths(opts.cacheDir, opts.repo);
  const commit = await resolveCommit(opts);
  const snap = paths.snapshotDir(commit);
  if (!(await stat(snap).catch(() => undefined))?.isDirectory()) {
    throw new HfgetError("OFFLINE", `${repoLabel(opts.repo)}@${commit} has no snapshot in ${opts.cacheDir}`, {
      hint: HINT,
    });
  }
  const blobsDir = join(paths.repoDir, "blobs");
  const realBlobs = await realpath(blobsDir).catch(() => blobsDir);
  const filtered = opts.include.length > 0 || opts.exclude.length > 0;
  const filter = makeFilter(opts.include, opts.exclude);
  const tree = await readTree(paths.repoDir, commit);
  const present = new Set(await listFiles(snap));
  const label = `${repoLabel(opts.repo)}@${commit}`;

  /** The blob a snapshot file links to: its name, or undefined when it is not a link into blobs/. */
  const linkedBlob = async (p: string): Promise<string | undefined> => {
    const file = paths.snapshotFile(commit, p);
    if (!(await lstat(file)).isSymbolicLink()) return undefined;
    const target = await realpath(file).catch(() => undefined);
    if (target === undefined || dirname(target) !== realBlobs) return undefined;
    const name = basename(target);
    return BLOB_NAME.test(name) ? name : undefined;
  };

  const files: ManifestFile[] = [];
  if (tree !== undefined) {
    const wanted = [...tree.keys()].filter(filter).sort();
    const missing = wanted.filter((p) => !present.has(p));
    if (missing.length > 0) {
      const s =
        missing.slice(0, 3).join(", ") + (missing.length > 3 ? `, ... (${missing.length - 3} more)` : "");
      throw new HfgetError(
        "OFFLINE",
        `${label} is incomplete in the cache: ${missing.length} of its ${wanted.length} files are missing (${s})`,
        {
          hint: "download the rest first, or narrow the export with --include/--exclude",
        },
      );
    }
    for (const p of wanted) {
      const e = tree.get(p)!;
      const blob = e.lfs_sha256 ?? e.blob_id;
      const linked = await linkedBlob(p);
      if (linked !== undefined && linked !== blob) {
        throw new HfgetError(
          "VERIFY_FAILED",
          `${label}: ${p} links to blob ${linked}, but its tree says ${blob}`,
          {
            hint: "run hfget cache verify, then download it again",
          },
        );
      }
      files.push({
        path: p,
        size: e.size,
        blob,
        algorithm: e.lfs_sha256 !== undefined ? "sha256" : "git-sha1",
        gitOid: e.blob_id,
      });
    }
  } else {
    for (const p of [...present].filter(filter).sort()) {
      const blob = await linkedBlob(p);
      if (blob === undefined) {
        throw new HfgetError(
          "DISK",
          `${label}: ${p} is not a link to a blob, and the cache has no trees/${commit}.json to say its hash`,
          { hint: "download the repo again with hfget (it writes the file list), or exclude that file" },
        );
      }
      const st = await stat(join(blobsDir, blob));
      files.push({
        path: p,
        size: st.size,
        blob,
        algorithm: blob.length === 64 ? "sha256" : "git-sha1",
        gitOid: blob.length === 40 ? blob : undefined,
      });
    }
  }
  if (files.length === 0) {
    throw new HfgetError("OFFLINE", `${label}: no cached file matches the filters`, {
      hint: "check --include/--exclude",
    });
  }
  const blobs = new Map<string, { path: string; size: number; algorithm: ManifestFile["algorithm"] }>();
  for (const f of files) {
    if (blobs.has(f.blob)) continue;
    // With a tree, a file may be a plain copy where symlinks are not supported: read that instead.
    const blobPath = join(blobsDir, f.blob);
    const path = (await stat(blobPath).catch(() => undefined))?.isFile()
      ? blobPath
      : paths.snapshotFile(commit, f.path);
    blobs.set(f.blob, { path, size: f.size, algorithm: f.algorithm });
  }
  const manifest: Manifest = {
    format: ARCHIVE_FORMAT,
    version: ARCHIVE_VERSION,
    repoType: opts.repo.type,
    repo: opts.repo.id,
    commit,
    refs: await refsTo(join(paths.repoDir, "refs"), commit),
    complete: tree !== undefined && !filtered,
    files,
  };
  return { manifest, blobs };
}

function corrupt(label: string, blob: string, what: string): HfgetError {
  return new HfgetError("VERIFY_FAILED", `${label}: cache blob ${blob} ${what}`, {
    hint: "run hfget cache verify --fix, download it again, then export",
  });
}

/** An errno failure of the output (EPIPE: the reader went away; ENOSPC) as one DISK line. */
function outputError(err: unknown, signal: AbortSignal | undefined): unknown {
  const code = (err as { code?: string }).code;
  if (code === "ABORT_ERR" && signal?.aborted) return signal.reason;
  if (err instanceof HfgetError || code === undefined) return err;
  return new HfgetError("DISK", `cannot write the archive: ${code}`, {
    hint: code === "EPIPE" ? "the reading side stopped first: see its error" : "check the target's space",
    cause: err,
  });
}

/** Streams the archive into `out` (a file or stdout); resolves once every byte is handed over. */
export async function exportSnapshot(opts: ExportOptions, out: NodeJS.WritableStream): Promise<ExportResult> {
  const { manifest, blobs } = await planExport(opts);
  const label = `${repoLabel(opts.repo)}@${manifest.commit}`;
  const pack = tar.pack();
  const piped = pipeline(pack, out, opts.signal ? { signal: opts.signal } : {});
  piped.catch(() => undefined); // awaited below; a failure while adding entries is thrown from there
  // The output failing (a closed pipe, a full disk) must end a wait for an entry's callback too.
  const outputFailed = piped.then(
    () => new Promise<never>(() => undefined),
    (err: unknown) => Promise.reject(err),
  );
  outputFailed.catch(() => undefined);
  const orFail = <T>(p: Promise<T>): Promise<T> => Promise.race([p, outputFailed]);
  const add = (header: TarHeader, body?: Buffer) =>
    new Promise<void>((resolve, reject) => {
      pack.entry(header, body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });
  const header = (name: string, size: number): TarHeader => ({
    name,
    size,
    mode: 0o644,
    mtime: new Date(0),
    type: "file",
  });
  let bytes = 0;
  try {
    const json = Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`);
    await orFail(add(header(MANIFEST_NAME, json.length), json));
    for (const [blob, b] of blobs) {
      opts.signal?.throwIfAborted();
      const fh = await open(b.path, "r");
      let size: number;
      try {
        size = (await fh.stat()).size;
      } finally {
        await fh.close();
      }
      if (size !== b.size) throw corrupt(label, blob, `has ${size} bytes, ${b.size} expected`);
      const hash = createContentHash({ algorithm: b.algorithm, hex: blob }, b.size);
      await orFail(
        new Promise<void>((resolve, reject) => {
          const entry = pack.entry(header(blobEntryName(blob), b.size), (err) =>
            err ? reject(err) : resolve(),
          );
          // Destroying the pack (a bad blob, a failed output) errors the open entry: reject, not crash.
          entry.on("error", reject);
          const src = createReadStream(b.path, { highWaterMark: 1024 * 1024 });
          src.on("data", (chunk: Buffer | string) => {
            const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
            hash.update(buf);
            if (!entry.write(buf)) {
              src.pause();
              entry.once("drain", () => src.resume());
            }
          });
          src.on("error", reject);
          src.on("end", () => {
            // The entry's bytes are all out: a mismatch must fail the stream before its tar footer.
            if (hash.digest("hex") !== blob) {
              const err = corrupt(label, blob, "does not match its hash");
              pack.destroy(err);
              reject(err);
              return;
            }
            entry.end(undefined); // streamx types want an argument; undefined ends without writing
          });
        }),
      );
      bytes += b.size;
    }
    pack.finalize();
  } catch (err) {
    pack.destroy(err instanceof Error ? err : new Error(String(err)));
    await piped.catch(() => undefined);
    throw outputError(err, opts.signal);
  }
  await piped.catch((err: unknown) => {
    throw outputError(err, opts.signal);
  });
  return {
    repo: opts.repo,
    commit: manifest.commit,
    files: manifest.files.length,
    blobs: blobs.size,
    bytes,
    complete: manifest.complete,
    refs: manifest.refs,
  };
}

/** Exports into `file` through a temp name beside it, renamed only once the archive is whole. */
export async function exportToFile(opts: ExportOptions, file: string): Promise<ExportResult> {
  const tmp = tmpName(file);
  try {
    const out = createWriteStream(tmp, { flags: "wx" });
    const r = await exportSnapshot(opts, out);
    await rename(tmp, file);
    return r;
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    if (err instanceof HfgetError) throw err;
    const code = (err as { code?: string }).code;
    if (code === undefined) throw err;
    throw new HfgetError("DISK", `cannot write ${file}: ${code}`, {
      hint: "check the folder exists and has space",
      cause: err,
    });
  }
}
