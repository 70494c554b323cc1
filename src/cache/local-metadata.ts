import { closeSync, constants, writeSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { openFd } from "../util/fd.js";

/** huggingface_hub's `<local-dir>/.cache/huggingface/download/<path>.metadata`: commit, etag, timestamp. */
export interface LocalMetadata {
  readonly commit: string;
  readonly etag: string;
  /** Seconds since the epoch (huggingface_hub trusts the file when its mtime <= this + 1 s). */
  readonly timestamp: number;
}

/** The metadata file's three lines, or undefined when it is missing or malformed. */
export async function readLocalMetadata(path: string): Promise<LocalMetadata | undefined> {
  try {
    const [commit, etag, ts] = (await readFile(path, "utf8")).split("\n");
    const timestamp = Number(ts);
    if (!commit || !etag || !Number.isFinite(timestamp)) return undefined;
    return { commit, etag, timestamp };
  } catch {
    return undefined;
  }
}

/**
 * What huggingface_hub does with a local-dir file of the listed size (file_download.py's
 * `_hf_hub_download_to_local_dir`, 0.36 and 1.28 alike), the one answer for the plan and the
 * placement: `trusted` when its metadata's etag is the file's hash and the file was not modified
 * after the metadata was written (1 s slack; modified means the metadata is ignored, as
 * `read_download_metadata` does); `hash` when there is no (usable) metadata and the file is an LFS
 * file (sha256 etag): its bytes decide; else `fetch` (metadata naming another etag, or a small
 * git-sha1 file without metadata: huggingface_hub downloads those again without hashing).
 */
export type LocalVerdict = "trusted" | "hash" | "fetch";

export function localVerdict(
  expected: { readonly algorithm: string; readonly hex: string },
  mtimeMs: number,
  meta: LocalMetadata | undefined,
): LocalVerdict {
  const usable = meta !== undefined && mtimeMs / 1000 - 1 <= meta.timestamp;
  if (usable) return meta.etag === expected.hex ? "trusted" : "fetch";
  return expected.algorithm === "sha256" ? "hash" : "fetch";
}

/**
 * Writes the metadata file in place, as huggingface_hub's `write_download_metadata` does (no temp
 * file and rename, no fsync): the caller holds the file's lock, the file is tiny, and a write torn
 * by a crash leaves lines `readLocalMetadata` rejects (no timestamp line, or one far in the past),
 * so the file is then only fetched or hashed again. Never writes through a symlink at the name: one
 * planted there (or a folder) is removed first. Errors are the raw errno errors.
 */
export async function writeLocalMetadata(path: string, text: string): Promise<void> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
  let fd: number;
  try {
    fd = await openFd(path, flags, 0o666);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== "ELOOP" && code !== "EISDIR") throw err;
    await rm(path, { recursive: true, force: true });
    fd = await openFd(path, flags, 0o666);
  }
  // The ~100 bytes go to the page cache and the descriptor is closed synchronously (two cheap
  // syscalls on a descriptor, no path): two thread-pool round trips less per file (see lock.ts).
  try {
    writeAllSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/** Writes all of `text` at the descriptor's position (a short write continues where it stopped). */
function writeAllSync(fd: number, text: string): void {
  let buf = Buffer.from(text);
  while (buf.length > 0) buf = buf.subarray(writeSync(fd, buf));
}
