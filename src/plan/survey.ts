import { lstat, readdir, readlink, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
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

/**
 * The names in each folder the survey looks into, read once (one readdir per folder instead of a
 * failed lstat, readlink or open per missing file: a fresh 3000-file download has ~3 of those per
 * file). A name listed is then lstat'ed as before. A folder that cannot be listed (missing: nothing
 * in it; unreadable: unknown) answers "maybe" only where it exists. A name the listing spells
 * otherwise than the hub (a case-insensitive or normalising filesystem) looks missing: the file is
 * then fetched, and the check under its lock finds it (the survey's answers are re-checked there).
 */
export class DirNames {
  readonly #dirs = new Map<string, Promise<Set<string> | "unknown">>();
  /** The listings already read: most files of a folder are answered without an await. */
  readonly #read = new Map<string, Set<string> | "unknown">();

  /** False when `path` is surely not there; true when it may be (then ask the filesystem). */
  mayExist(path: string): boolean | Promise<boolean> {
    const dir = dirname(path);
    const read = this.#read.get(dir);
    if (read !== undefined) return read === "unknown" || read.has(basename(path));
    let names = this.#dirs.get(dir);
    if (names === undefined) {
      names = readdir(dir).then(
        (list) => new Set(list),
        (err: unknown) => {
          const code = (err as { code?: string }).code;
          return code === "ENOENT" || code === "ENOTDIR" ? new Set<string>() : "unknown";
        },
      );
      this.#dirs.set(dir, names);
      void names.then((n) => this.#read.set(dir, n));
    }
    return names.then((n) => n === "unknown" || n.has(basename(path)));
  }
}

/** `names.mayExist(path)` that awaits only when the folder's listing is still being read. */
function surelyMissing(names: DirNames, path: string): boolean | Promise<boolean> {
  const may = names.mayExist(path);
  return typeof may === "boolean" ? !may : may.then((m) => !m);
}

type Sized = { size: number; mtimeMs: number } | undefined;

/**
 * Size and mtime of a regular file at `path`, undefined otherwise. A value, not a promise, when the
 * folder's listing already says it is missing (most files of a fresh download): no promise per file.
 */
function fileSize(path: string, follow: boolean, names: DirNames): Sized | Promise<Sized> {
  const missing = surelyMissing(names, path);
  return missing === true ? undefined : statSized(path, follow, missing);
}

async function statSized(path: string, follow: boolean, missing: boolean | Promise<boolean>): Promise<Sized> {
  if (missing !== false && (await missing)) return undefined;
  try {
    const st = follow ? await stat(path) : await lstat(path);
    return st.isFile() ? { size: st.size, mtimeMs: st.mtimeMs } : undefined;
  } catch {
    return undefined;
  }
}

const NO_PARTIAL: Partial<FileSurvey> = {};

/** What a partial file of ours says; answered without an await when its folder's listing lacks it. */
function partialOf(
  incomplete: string,
  state: () => string,
  file: RepoFile,
  names: DirNames,
): Partial<FileSurvey> | Promise<Partial<FileSurvey>> {
  return names.mayExist(incomplete) === false ? NO_PARTIAL : readPartial(incomplete, state(), file, names);
}

async function readPartial(
  incomplete: string,
  state: string,
  file: RepoFile,
  names: DirNames,
): Promise<Partial<FileSurvey>> {
  const p = await fileSize(incomplete, false, names);
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
async function reuseCandidates(
  file: RepoFile,
  others: readonly string[],
  names: DirNames,
): Promise<string[]> {
  if (file.lfs === undefined || others.length === 0) return [];
  const found: string[] = [];
  for (const dir of others) {
    const p = join(dir, "blobs", file.lfs.sha256);
    const st = await fileSize(p, false, names);
    if (st !== undefined && st.size === file.size) found.push(p);
  }
  return found;
}

/**
 * `others`: the cache's other repo folders (otherRepoDirs), searched for an LFS blob this repo
 * lacks; empty (the default) searches none. `names`: folder listings shared by the files of one
 * survey (a fresh one reads every folder again).
 */
export async function surveyFile(
  target: SurveyTarget,
  file: RepoFile,
  others: readonly string[] = [],
  names: DirNames = new DirNames(),
): Promise<FileSurvey> {
  if (target.kind === "cache") {
    const { paths, commit } = target;
    const id = blobId(file);
    const blobP = fileSize(paths.blob(id), false, names);
    const blob = blobP instanceof Promise ? await blobP : blobP;
    const link = paths.snapshotFile(commit, file.path);
    let linkOk = false;
    const noLink = surelyMissing(names, link);
    if (noLink === false || (noLink !== true && !(await noLink))) {
      try {
        linkOk = (await readlink(link)) === blobLinkTarget(file.path, id);
      } catch {
        // missing, or a copy where symlinks fail: a regular file of the listed size counts
        const copy = await fileSize(link, false, names);
        linkOk = copy !== undefined && copy.size === file.size;
      }
    }
    const reuse =
      blob?.size === file.size || file.lfs === undefined || others.length === 0
        ? []
        : await reuseCandidates(file, others, names);
    const part = partialOf(paths.incomplete(id), () => paths.state(id), file, names);
    return {
      path: file.path,
      ...(blob === undefined ? {} : { blobSize: blob.size }),
      ...(reuse.length > 0 ? { reuseFrom: reuse } : {}),
      linkOk,
      ...(part instanceof Promise ? await part : part),
    };
  }
  const { paths } = target;
  const localP = fileSize(paths.file(file.path), false, names);
  const local = localP instanceof Promise ? await localP : localP;
  const metaPath = paths.metadata(file.path);
  const noMeta = surelyMissing(names, metaPath);
  const metadata =
    noMeta === true || (noMeta !== false && (await noMeta)) ? undefined : await readLocalMetadata(metaPath);
  const dest = paths.file(file.path);
  const expected = expectedHash(file);
  const hashed =
    local !== undefined &&
    local.size === file.size &&
    localVerdict(expected, local.mtimeMs, metadata) === "hash"
      ? await fileMatches(dest, expected, file.size)
      : undefined;
  const part = partialOf(paths.incomplete(file.path), () => paths.state(file.path), file, names);
  return {
    path: file.path,
    ...(local === undefined ? {} : { localSize: local.size, localMtimeMs: local.mtimeMs }),
    ...(hashed === undefined ? {} : { localHashOk: hashed }),
    ...(metadata === undefined ? {} : { metadata }),
    ...(part instanceof Promise ? await part : part),
  };
}

/** Surveys every file, a few dozen at once (independent stat calls, not thousands in a row). */
export async function survey(
  target: SurveyTarget,
  files: readonly RepoFile[],
  concurrency = 32,
): Promise<Map<string, FileSurvey>> {
  return surveyor(target, concurrency)(files);
}

/**
 * `survey` for a run that plans its files a batch at a time (a listing page as it arrives): the
 * folder listings and the cache's other repos are read once for the run, not once per batch, so
 * every batch sees the target as it was when the run began, as one survey of the whole listing did.
 */
export function surveyor(
  target: SurveyTarget,
  concurrency = 32,
): (files: readonly RepoFile[]) => Promise<Map<string, FileSurvey>> {
  const limit = pLimit(concurrency);
  const names = new DirNames();
  let others: Promise<string[]> | undefined;
  return async (files) => {
    if (target.kind === "cache" && others === undefined && files.some((f) => f.lfs !== undefined))
      others = otherRepoDirs(target.paths);
    const other = (await others) ?? [];
    const out = await Promise.all(files.map((f) => limit(() => surveyFile(target, f, other, names))));
    return new Map(out.map((s) => [s.path, s]));
  };
}
