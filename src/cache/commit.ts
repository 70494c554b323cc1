import { lstatSync, type Stats, statSync } from "node:fs";
import { copyFile, link, lstat, readlink, realpath, rename, rm, symlink } from "node:fs/promises";
import { dirname, sep } from "node:path";
import { HfgetError } from "../errors.js";
import { blobId, expectedHash, type RepoFile } from "../hub/types.js";
import { removeState } from "../state.js";
import { openNoFollow, tmpName } from "../util/atomic-write.js";
import { diskError } from "../util/io-error.js";
import { fileMatches } from "../verify.js";
import { makeDirs } from "./dirs.js";
import { localVerdict, readLocalMetadata, writeLocalMetadata } from "./local-metadata.js";
import { blobLinkTarget, type CachePaths, type LocalDirPaths } from "./paths.js";

/** Where one file's bytes go while downloading, and how they are made visible once verified. */
export interface Placement {
  /** The partial file (paths.ts names it: never a name huggingface_hub takes as its own). */
  readonly incomplete: string;
  readonly state: string;
  readonly lock: string;
  /** The path the user sees (snapshot file or local-dir file). */
  readonly location: string;
  /**
   * Already there and trustworthy (makes the snapshot link if only that is missing). A file of
   * another size than listed is never present: it is fetched again and replaced.
   */
  isPresent(): Promise<boolean>;
  /** Makes the folder of the partial file, checked against planted symlinks. */
  prepare(): Promise<void>;
  /** Moves the verified partial file into place (the only way a file becomes `blobs/<id>`). */
  commit(): Promise<void>;
}

/** Refuses to write through a symlinked folder that leads out of `root` (a planted symlink). */
async function checkInside(dir: string, rootReal: () => Promise<string>): Promise<void> {
  const r = await rootReal();
  const refuse = (d: string) =>
    new HfgetError("DISK", `refusing to write into ${dir}: it resolves to ${d}, outside ${r}`, {
      hint: "a symlink inside the target folder points elsewhere; remove it and rerun",
    });
  const inside = (d: string) => d === r || d.startsWith(r + sep);
  // Check the deepest part that exists before creating anything under it: mkdir -p through a
  // planted symlink would already create folders outside.
  let existing = dir;
  while (!(await exists(existing)) && dirname(existing) !== existing) existing = dirname(existing);
  const e = await realpath(existing);
  if (!inside(e)) throw refuse(e);
  await makeDirs(dir);
  const d = await realpath(dir);
  if (!inside(d)) throw refuse(d);
}

/**
 * The folders of one target (a repo's cache folder or a local dir) already made and checked in this
 * run: thousands of small files share a few folders, and each check costs several syscalls.
 */
export class SafeDirs {
  readonly #checked = new Map<string, Promise<void>>();
  /** The root resolved once per run (each realpath is a readlink per level of the path). */
  #rootReal: Promise<string> | undefined;
  constructor(readonly root: string) {}

  #resolveRoot = (): Promise<string> => {
    if (this.#rootReal === undefined) {
      const p = realpath(this.root);
      this.#rootReal = p;
      p.catch(() => {
        if (this.#rootReal === p) this.#rootReal = undefined;
      });
    }
    return this.#rootReal;
  };

  /** Folders whose check has succeeded: asked synchronously (see `ready`). */
  readonly #done = new Set<string>();

  ensure(dir: string): Promise<void> {
    let p = this.#checked.get(dir);
    if (p === undefined) {
      p = checkInside(dir, this.#resolveRoot);
      this.#checked.set(dir, p);
      p.then(
        () => this.#done.add(dir),
        () => this.#checked.delete(dir),
      );
    }
    return p;
  }

  /**
   * `ensure`, but undefined (nothing to await) when the folder was already checked: the files of a
   * folder then skip an await each, and a small file passes three such checks (its partial's,
   * its own and its metadata's folder).
   */
  ready(dir: string): Promise<void> | undefined {
    return this.#done.has(dir) ? undefined : this.ensure(dir);
  }
}

/**
 * stat/lstat that answers undefined for a missing path (or any failure) instead of throwing, and
 * synchronously: asked once per file under its lock, where a fresh download's answer is nearly always
 * "missing". The async call's ENOENT was a rejected promise with a captured stack plus a thread-pool
 * round trip per file (perf, many-files: ~3% of hfget's main-thread CPU in the rejection alone); the
 * sync one on a local path is one ~10 us syscall and makes no error object.
 */
function noEntryStat(path: string, follow: boolean): Stats | undefined {
  try {
    return follow ? statSync(path, { throwIfNoEntry: false }) : lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Atomically makes `link` a relative symlink to `target`; copies `blob` there where symlinks fail. */
async function placeLink(link: string, target: string, blob: string): Promise<void> {
  try {
    // A fresh download has no link yet: asked without an ENOENT error (see noEntryStat).
    if (noEntryStat(link, false) !== undefined && (await readlink(link)) === target) return;
  } catch {
    // missing or not a link
  }
  const tmp = tmpName(link);
  try {
    await symlink(target, tmp);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EINVAL" && code !== "ENOSYS") throw err;
    await copyFile(blob, tmp);
  }
  await rename(tmp, link);
}

/**
 * Makes `blob` from the same blob under another repo of the cache (the plan's `reuse`), under the
 * caller's lock on `blob`: a hard link made beside it (a copy where the link fails: EXDEV across
 * filesystems, or a filesystem without hard links), re-hashed, then renamed into place. The hash is
 * checked on what was linked or copied, not on the source before, so a source replaced or removed
 * meanwhile cannot slip in; a candidate that does not hash to its name is skipped (left for `cache
 * verify`). The source's own lock is not needed: committed blobs are only ever replaced by rename
 * or removed, and the link pins the inode that was hashed. Returns whether a candidate verified.
 */
async function reuseBlob(
  blob: string,
  candidates: readonly string[],
  file: RepoFile,
  ensureDir: () => Promise<void>,
): Promise<boolean> {
  const expected = expectedHash(file);
  await ensureDir();
  for (const from of candidates) {
    const tmp = tmpName(blob);
    try {
      try {
        await link(from, tmp);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== "EXDEV" && code !== "EPERM" && code !== "ENOTSUP" && code !== "EMLINK") throw err;
        await copyFile(from, tmp);
      }
      // link(2) does not follow a symlink at `from`: only a regular file is a blob.
      if ((await lstat(tmp)).isFile() && (await fileMatches(tmp, expected, file.size))) {
        await rename(tmp, blob);
        return true;
      }
    } catch (err) {
      const code = (err as { code?: string }).code;
      // The candidate went away (rm, prune, verify --fix) or cannot be read: try the next one.
      if (code !== "ENOENT" && code !== "EACCES" && code !== "EISDIR") throw err;
    } finally {
      await rm(tmp, { force: true }).catch(() => undefined);
    }
  }
  return false;
}

/**
 * A placement's partial file path. It is asked for ~8 times while the file is in flight (lock, open,
 * every request, close, commit): joined once then, and let go once committed (path.join was ~5% of
 * the main thread's CPU in many-files, perf). `prepare` makes its folder, checked against symlinks.
 */
function partialPath(join: () => string, dirs: SafeDirs) {
  let path: string | undefined;
  const get = (): string => {
    path ??= join();
    return path;
  };
  return {
    get,
    forget(): void {
      path = undefined;
    },
    prepare(): Promise<void> {
      const p = get();
      const check = dirs.ready(dirname(p));
      return check === undefined ? Promise.resolve() : guard(check, p);
    },
  };
}

/**
 * `reuseFrom`: the survey's candidates for this blob under other repos (the plan's `reuse`); tried,
 * under the lock, when the blob is not here yet.
 */
export function cachePlacement(
  paths: CachePaths,
  commit: string,
  file: RepoFile,
  dirs: SafeDirs,
  reuseFrom: readonly string[] = [],
): Placement {
  // Paths are joined when asked for, not kept: a run plans every file up front, and five joined
  // paths per file (each a tree of concatenated strings) held ~7 MB of heap for 3000 small files.
  const id = blobId(file);
  const blob = () => paths.blob(id);
  const link = () => paths.snapshotFile(commit, file.path);
  const ensureLink = async () => {
    const l = link();
    const ready = dirs.ready(dirname(l));
    if (ready !== undefined) await ready;
    await placeLink(l, blobLinkTarget(file.path, id), blob());
  };
  const partial = partialPath(() => paths.incomplete(id), dirs);
  return {
    get incomplete() {
      return partial.get();
    },
    prepare: partial.prepare,
    get state() {
      return paths.state(id);
    },
    get lock() {
      return paths.lock(id);
    },
    get location() {
      return link();
    },
    async isPresent() {
      const b = blob();
      const st = noEntryStat(b, true);
      let here = st?.isFile() === true && st.size === file.size;
      try {
        if (!here && reuseFrom.length > 0) {
          here = await reuseBlob(b, reuseFrom, file, () => dirs.ensure(dirname(b)));
        }
        if (!here) return false;
        await ensureLink();
      } catch (err) {
        throw diskError(err, link());
      }
      return true;
    },
    async commit() {
      try {
        await rename(partial.get(), blob());
        partial.forget();
        await ensureLink();
      } catch (err) {
        throw diskError(err, link());
      }
    },
  };
}

/** A local-dir file whose bytes the plan's survey hashed right, as it was then (lstat size, mtime). */
export interface HashedLocal {
  readonly size: number;
  readonly mtimeMs: number;
}

/**
 * `hashed`: the survey already hashed the file right; under the lock it is trusted without hashing
 * it again while its size and mtime are still those (huggingface_hub's own trust rests on mtime).
 */
export function localDirPlacement(
  paths: LocalDirPaths,
  commit: string,
  file: RepoFile,
  dirs: SafeDirs,
  hashed?: HashedLocal,
): Placement {
  // Paths joined when asked for, as in cachePlacement.
  const dest = () => paths.file(file.path);
  const expected = expectedHash(file);
  const writeMetadata = async () => {
    const metadata = paths.metadata(file.path);
    const ready = dirs.ready(dirname(metadata));
    if (ready !== undefined) await ready;
    // Under the file's lock (isPresent and commit run there), in place as huggingface_hub writes it.
    await writeLocalMetadata(metadata, `${commit}\n${expected.hex}\n${Date.now() / 1000}\n`);
  };
  const partial = partialPath(() => paths.incomplete(file.path), dirs);
  return {
    get incomplete() {
      return partial.get();
    },
    prepare: partial.prepare,
    get state() {
      return paths.state(file.path);
    },
    get lock() {
      return paths.lock(file.path);
    },
    get location() {
      return dest();
    },
    async isPresent() {
      const d = dest();
      const st = noEntryStat(d, false);
      if (st === undefined || !st.isFile() || st.size !== file.size) return false;
      const meta = await readLocalMetadata(paths.metadata(file.path));
      // The plan's rule (local-metadata.ts), asked again under the lock.
      const verdict = localVerdict(expected, st.mtimeMs, meta);
      if (verdict === "fetch") return false;
      if (verdict === "trusted") {
        if (meta?.commit !== commit) await writeMetadata().catch(() => undefined);
        return true;
      }
      const same = hashed !== undefined && hashed.size === st.size && hashed.mtimeMs === st.mtimeMs;
      if (!same && !(await fileMatches(d, expected, file.size))) return false;
      await writeMetadata().catch(() => undefined);
      return true;
    },
    async commit() {
      const d = dest();
      try {
        const ready = dirs.ready(dirname(d));
        if (ready !== undefined) await ready;
        // rename replaces a planted symlink at `dest` itself instead of writing through it, and
        // fails (EISDIR) where a folder is in the way.
        await rename(partial.get(), d);
        partial.forget();
        await writeMetadata();
      } catch (err) {
        throw diskError(err, d);
      }
    },
  };
}

/** Turns a failed folder check into a DISK error naming the path. */
async function guard(check: Promise<void>, path: string): Promise<void> {
  try {
    await check;
  } catch (err) {
    throw diskError(err, path);
  }
}

/** Re-exported for callers that open partial files: the one no-follow open lives in util/. */
export { openNoFollow };

/** Removes a file's partial bytes and state (after a verification failure). */
export async function discardIncomplete(placement: Placement): Promise<void> {
  await rm(placement.incomplete, { force: true });
  await removeState(placement.state);
}
