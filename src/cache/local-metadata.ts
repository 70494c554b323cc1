import { readFile } from "node:fs/promises";

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
