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
