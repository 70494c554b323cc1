import { join } from "node:path";
import { type RepoRef, repoFolderName } from "../repo.js";

/**
 * Pure path functions for huggingface_hub's cache:
 *   {root}/{models|datasets|spaces}--{org}--{name}/blobs/<id>
 *   {root}/…/snapshots/<commit>/<path>   (relative symlink to ../../blobs/<id>)
 *   {root}/…/refs/<revision>            (commit sha, no trailing newline)
 *   {root}/.locks/{repo folder}/<id>.lock
 */
export interface CachePaths {
  readonly root: string;
  readonly repoDir: string;
  blob(id: string): string;
  incomplete(id: string): string;
  /** Resume state beside the .incomplete file. */
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
    incomplete: (id) => join(repoDir, "blobs", `${id}.incomplete`),
    state: (id) => join(repoDir, "blobs", `${id}.incomplete.hfget.json`),
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

/** --local-dir layout: the file, and huggingface_hub's metadata file for it. */
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
    incomplete: (path) => join(meta, ...`${path}.incomplete`.split("/")),
    state: (path) => join(meta, ...`${path}.incomplete.hfget.json`.split("/")),
    lock: (path) => join(meta, ...`${path}.lock`.split("/")),
  };
}
