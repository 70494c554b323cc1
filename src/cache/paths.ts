import { join } from "node:path";
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
  return {
    root,
    repoDir,
    blob: (id) => join(repoDir, "blobs", id),
    incomplete: (id) => join(repoDir, "blobs", `${id}${PARTIAL_SUFFIX}`),
    state: (id) => join(repoDir, "blobs", `${id}${STATE_SUFFIX}`),
    snapshotDir: (commit) => join(repoDir, "snapshots", commit),
    snapshotFile: (commit, path) => join(repoDir, "snapshots", commit, ...path.split("/")),
    ref: (revision) => join(repoDir, "refs", ...revision.split("/")),
    lock: (id) => join(root, ".locks", folder, `${id}.lock`),
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
  const meta = join(root, ".cache", "huggingface", "download");
  return {
    root,
    file: (path) => join(root, ...path.split("/")),
    metadata: (path) => join(meta, ...`${path}.metadata`.split("/")),
    incomplete: (path) => join(meta, ...`${path}${PARTIAL_SUFFIX}`.split("/")),
    state: (path) => join(meta, ...`${path}${STATE_SUFFIX}`.split("/")),
    lock: (path) => join(meta, ...`${path}.lock`.split("/")),
  };
}
