import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { RepoFile } from "../hub/types.js";

/**
 * huggingface_hub (>= 1.22) `trees/<commit>.json` (its `_tree_cache.py`, format_version 1): the
 * full file list of a commit. Its offline mode reads it to tell a complete snapshot from a partial
 * one, so hfget writes it only after a download of the whole repo succeeded.
 */
export const TREE_FORMAT_VERSION = 1;

export interface TreeEntry {
  readonly size: number;
  /** git blob sha1 (of the LFS pointer for LFS files). */
  readonly blob_id: string;
  readonly lfs_sha256?: string;
  readonly lfs_size?: number;
}

/** `folder` is the repo's cache folder, or `<local-dir>/.cache/huggingface`. */
export function treePath(folder: string, commit: string): string {
  return join(folder, "trees", `${commit}.json`);
}

export function treeEntries(files: readonly RepoFile[]): Record<string, TreeEntry> {
  const out: Record<string, TreeEntry> = {};
  for (const f of files) {
    out[f.path] = f.lfs
      ? { size: f.size, blob_id: f.gitOid, lfs_sha256: f.lfs.sha256, lfs_size: f.size }
      : { size: f.size, blob_id: f.gitOid };
  }
  return out;
}

export async function writeTree(folder: string, commit: string, files: readonly RepoFile[]): Promise<void> {
  const path = treePath(folder, commit);
  await mkdir(join(folder, "trees"), { recursive: true });
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  await writeFile(
    tmp,
    `${JSON.stringify({ format_version: TREE_FORMAT_VERSION, files: treeEntries(files) }, null, 2)}\n`,
  );
  await rename(tmp, path);
}

/** The file list of a commit, or undefined when absent, unreadable or another format version. */
export async function readTree(folder: string, commit: string): Promise<Map<string, TreeEntry> | undefined> {
  try {
    const data = JSON.parse(await readFile(treePath(folder, commit), "utf8")) as {
      format_version?: unknown;
      files?: Record<string, TreeEntry>;
    };
    if (
      data.format_version !== TREE_FORMAT_VERSION ||
      typeof data.files !== "object" ||
      data.files === null
    ) {
      return undefined;
    }
    return new Map(Object.entries(data.files));
  } catch {
    return undefined;
  }
}

/** The standard cache directory tag (https://bford.info/cachedir/), as huggingface_hub 1.x writes it. */
export const CACHEDIR_TAG =
  "Signature: 8a477f597d28d172789f06886806bc55\n" +
  "# This file is a cache directory tag created by huggingface_hub.\n" +
  "# For information about cache directory tags, see:\n" +
  "#\thttps://bford.info/cachedir/\n";

/** Writes `<root>/CACHEDIR.TAG` unless one is there (never overwrites). */
export async function writeCachedirTag(root: string): Promise<void> {
  try {
    await writeFile(join(root, "CACHEDIR.TAG"), CACHEDIR_TAG, { flag: "wx" });
  } catch (err) {
    if ((err as { code?: string }).code !== "EEXIST") throw err;
  }
}
