import { join, sep } from "node:path";
import { type RepoRef, repoFolderName } from "../repo.js";

/**
 * Pure path functions for huggingface_hub's cache:
 *   {root}/{models|datasets|spaces}--{org}--{name}/blobs/<id>
 *   {root}/…/snapshots/<commit>/<path>   (relative symlink to ../../blobs/<id>)
 *   {root}/…/refs/<revision>            (commit sha, no trailing newline)
 *   {root}/.locks/{repo folder}/<id>.lock
 *   {root}/…/blobs/<id>.hfget-partial   (bytes being downloaded) and <id>.hfget-partial.json (resume state)
 *
 * The partial file's name is one no huggingface_hub version takes as its own: 0.x resumes (and, when
 * its size is complete, renames into blobs/ unchecked) `blobs/<id>.incomplete`; 1.x writes
 * `blobs/<id>.<uuid8>.incomplete`. Only a verified file is ever named `blobs/<id>`. `.incomplete`
 * files are huggingface_hub's (or an older hfget's): hfget leaves them alone.
 */

/** Suffix of hfget's partial file (cache blob or local-dir file). */
export const PARTIAL_SUFFIX = ".hfget-partial";
/** Suffix of the resume state beside it (written through `<state>.tmp`, its journal `<state>.log`). */
export const STATE_SUFFIX = ".hfget-partial.json";

/** True for a name (or path) hfget uses for a download in progress: partial bytes, resume state, its temp. */
export function isPartialName(name: string): boolean {
  return (
    name.endsWith(PARTIAL_SUFFIX) ||
    name.endsWith(STATE_SUFFIX) ||
    name.endsWith(`${STATE_SUFFIX}.tmp`) ||
    name.endsWith(`${STATE_SUFFIX}.log`)
  );
}
/**
 * A repo-relative path whose "/"-separated segments are all names (none empty, `.` or `..`), which
 * `join(base, ...path.split("/"))` would leave as it is on POSIX.
 */
const UNCLEAN = /(^|\/)\.{1,2}(\/|$)|\/\/|^\/|\/$|^$/;

/**
 * `join(base, ...rel.split("/"))`, by concatenation where that is the same string (a normalized
 * `base`, a clean `rel`, POSIX separators): several such paths are made per file of a download, and
 * path.join's normalization (an array, then the string rebuilt piece by piece) was ~23% of all the
 * bytes a 3000-file download allocated (sampling heap profile, many-files), hence much of its GC.
 * Anything else goes through join as before.
 */
export function under(base: string): (rel: string) => string {
  const root = join(base);
  const prefix = root.endsWith(sep) ? root : `${root}${sep}`;
  if (sep !== "/" || root === ".") return (rel) => join(root, ...rel.split("/"));
  return (rel) => (UNCLEAN.test(rel) ? join(root, ...rel.split("/")) : `${prefix}${rel}`);
}

export interface CachePaths {
  readonly root: string;
  readonly repoDir: string;
  blob(id: string): string;
  /** The partial file (hfget's own name, see above). */
  incomplete(id: string): string;
  /** Resume state beside the partial file. */
  state(id: string): string;
  snapshotDir(commit: string): string;
  snapshotFile(commit: string, path: string): string;
  ref(revision: string): string;
  lock(id: string): string;
}

export function cachePaths(root: string, repo: RepoRef): CachePaths {
  const folder = repoFolderName(repo);
  const repoDir = join(root, folder);
  const inBlobs = under(join(repoDir, "blobs"));
  const inSnapshots = under(join(repoDir, "snapshots"));
  const inLocks = under(join(root, ".locks", folder));
  return {
    root,
    repoDir,
    blob: (id) => inBlobs(id),
    incomplete: (id) => inBlobs(`${id}${PARTIAL_SUFFIX}`),
    state: (id) => inBlobs(`${id}${STATE_SUFFIX}`),
    snapshotDir: (commit) => inSnapshots(commit),
    snapshotFile: (commit, path) => inSnapshots(`${commit}/${path}`),
    ref: (revision) => join(repoDir, "refs", ...revision.split("/")),
    lock: (id) => inLocks(`${id}.lock`),
  };
}

/** The symlink target from snapshots/<commit>/<path> to blobs/<id>: ../../blobs/<id>, one more ../ per folder. */
export function blobLinkTarget(path: string, id: string): string {
  const depth = path.split("/").length - 1;
  return `${"../".repeat(depth + 2)}blobs/${id}`;
}

/**
 * --local-dir layout: the file, and beside huggingface_hub's metadata and lock for it in
 * `.cache/huggingface/download/`, hfget's partial file and resume state (huggingface_hub's own
 * partial files there are `<short hash>.<etag>.incomplete`).
 */
export interface LocalDirPaths {
  readonly root: string;
  file(path: string): string;
  metadata(path: string): string;
  incomplete(path: string): string;
  state(path: string): string;
  lock(path: string): string;
}

export function localDirPaths(root: string): LocalDirPaths {
  const inRoot = under(root);
  const inMeta = under(join(root, ".cache", "huggingface", "download"));
  return {
    root,
    file: (path) => inRoot(path),
    metadata: (path) => inMeta(`${path}.metadata`),
    incomplete: (path) => inMeta(`${path}${PARTIAL_SUFFIX}`),
    state: (path) => inMeta(`${path}${STATE_SUFFIX}`),
    lock: (path) => inMeta(`${path}.lock`),
  };
}
