import { lstat, readdir, readlink, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import pLimit from "p-limit";
import { type LocalMetadata, localVerdict, readLocalMetadata } from "../cache/local-metadata.js";
import { blobLinkTarget, type CachePaths, type LocalDirPaths } from "../cache/paths.js";
import { blobId, expectedHash, type RepoFile } from "../hub/types.js";
import { loadState } from "../state.js";
import { fileMatches } from "../verify.js";

/**
 * The survey step: one read-only I/O pass per selected file recording what is on disk. It decides
 * nothing (plan.ts does); it never writes, so dry-run and `ls` can use it.
 */
export interface FileSurvey {
  readonly path: string;
  /** Cache: size of `blobs/<id>` when it is a regular file. */
  readonly blobSize?: number;
  /** Cache: the snapshot link exists and points at `blobs/<id>` (or is a copy of the blob's size). */
  readonly linkOk?: boolean;
  /** Local dir: size and mtime (ms) of the file when it is a regular file. */
  readonly localSize?: number;
  readonly localMtimeMs?: number;
  /** Local dir: huggingface_hub's `.metadata` (commit, etag, timestamp in seconds). */
  readonly metadata?: LocalMetadata;
  /**
   * Local dir: the file's bytes hashed to the listed hash. Set only where huggingface_hub hashes
   * (`localVerdict` says `hash`: an LFS file of the listed size without usable metadata).
   */
  readonly localHashOk?: boolean;
  /** hfget's partial file (`.hfget-partial`) size, when there is one. */
  readonly partialSize?: number;
  /** Bytes its resume state records as done (the state matched this file's size and hash). */
  readonly resumeDone?: number;
  /**
   * Cache, LFS files only: `blobs/<sha256>` of the listed size under other repo folders of the same
   * cache (sorted by folder), which the commit step may link or copy instead of fetching (after
   * re-hashing it: a name is not proof of content).
   */
  readonly reuseFrom?: readonly string[];
}

/** Where one target keeps its files: the cache of a repo at a commit, or a local dir. */
export type SurveyTarget =
  | { readonly kind: "cache"; readonly paths: CachePaths; readonly commit: string }
  | { readonly kind: "local"; readonly paths: LocalDirPaths };

async function fileSize(
  path: string,
  follow: boolean,
): Promise<{ size: number; mtimeMs: number } | undefined> {
  try {
    const st = follow ? await stat(path) : await lstat(path);
    return st.isFile() ? { size: st.size, mtimeMs: st.mtimeMs } : undefined;
  } catch {
    return undefined;
  }
}

async function partial(incomplete: string, state: string, file: RepoFile): Promise<Partial<FileSurvey>> {
  const p = await fileSize(incomplete, false);
  if (p === undefined) return {};
  const h = expectedHash(file);
  const saved = await loadState(state, { size: file.size, hash: `${h.algorithm}:${h.hex}` });
  const done = saved?.done.reduce((n, [a, b]) => n + (b - a), 0);
  return { partialSize: p.size, ...(done === undefined ? {} : { resumeDone: done }) };
}

/** The other repo folders of the cache holding `paths.repoDir` (models--, datasets--, spaces--), sorted. */
export async function otherRepoDirs(paths: CachePaths): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(paths.root);
  } catch {
    return [];
  }
  const own = basename(paths.repoDir);
  return names
    .filter((n) => n !== own && /^(models|datasets|spaces)--/.test(n))
    .sort()
    .map((n) => join(paths.root, n));
}

/** The same LFS blob (by name and size) under other repo folders. */
async function reuseCandidates(file: RepoFile, others: readonly string[]): Promise<string[]> {
  if (file.lfs === undefined || others.length === 0) return [];
  const found: string[] = [];
  for (const dir of others) {
    const p = join(dir, "blobs", file.lfs.sha256);
    const st = await fileSize(p, false);
    if (st !== undefined && st.size === file.size) found.push(p);
  }
  return found;
}

/**
 * `others`: the cache's other repo folders (otherRepoDirs), searched for an LFS blob this repo
 * lacks; empty (the default) searches none.
 */
export async function surveyFile(
  target: SurveyTarget,
  file: RepoFile,
  others: readonly string[] = [],
): Promise<FileSurvey> {
  if (target.kind === "cache") {
    const { paths, commit } = target;
    const id = blobId(file);
    const blob = await fileSize(paths.blob(id), false);
    const link = paths.snapshotFile(commit, file.path);
    let linkOk = false;
    try {
      linkOk = (await readlink(link)) === blobLinkTarget(file.path, id);
    } catch {
      // missing, or a copy where symlinks fail: a regular file of the listed size counts
      const copy = await fileSize(link, false);
      linkOk = copy !== undefined && copy.size === file.size;
    }
    const reuse = blob?.size === file.size ? [] : await reuseCandidates(file, others);
    return {
      path: file.path,
      ...(blob === undefined ? {} : { blobSize: blob.size }),
      ...(reuse.length > 0 ? { reuseFrom: reuse } : {}),
      linkOk,
      ...(await partial(paths.incomplete(id), paths.state(id), file)),
    };
  }
  const { paths } = target;
  const local = await fileSize(paths.file(file.path), false);
  const metadata = await readLocalMetadata(paths.metadata(file.path));
  const dest = paths.file(file.path);
  const expected = expectedHash(file);
  const hashed =
    local !== undefined &&
    local.size === file.size &&
    localVerdict(expected, local.mtimeMs, metadata) === "hash"
      ? await fileMatches(dest, expected, file.size)
      : undefined;
  return {
    path: file.path,
    ...(local === undefined ? {} : { localSize: local.size, localMtimeMs: local.mtimeMs }),
    ...(hashed === undefined ? {} : { localHashOk: hashed }),
    ...(metadata === undefined ? {} : { metadata }),
    ...(await partial(paths.incomplete(file.path), paths.state(file.path), file)),
  };
}

/** Surveys every file, a few dozen at once (independent stat calls, not thousands in a row). */
export async function survey(
  target: SurveyTarget,
  files: readonly RepoFile[],
  concurrency = 32,
): Promise<Map<string, FileSurvey>> {
  const limit = pLimit(concurrency);
  const others =
    target.kind === "cache" && files.some((f) => f.lfs !== undefined)
      ? await otherRepoDirs(target.paths)
      : [];
  const out = await Promise.all(files.map((f) => limit(() => surveyFile(target, f, others))));
  return new Map(out.map((s) => [s.path, s]));
}
