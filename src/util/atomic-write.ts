import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, open, rename, rm } from "node:fs/promises";

/** A unique temp name beside `path`: two processes (or two writes in one) never share one. */
export function tmpName(path: string): string {
  return `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
}

/**
 * Opens a file for writing without following a symlink at its name: one planted there (or a
 * folder) is removed, never written through.
 */
export async function openNoFollow(path: string, flags: number): Promise<FileHandle> {
  try {
    return await open(path, flags | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== "ELOOP" && code !== "EISDIR") throw err;
    await rm(path, { recursive: true, force: true });
    return open(path, flags | constants.O_NOFOLLOW);
  }
}

/**
 * The one atomic small-file writer: `data` goes to a temp name beside `path` (never through a
 * symlink), then is renamed over it, so a reader sees the old file or the new one, never half.
 * The temp file is removed when anything fails. Errors are the raw errno errors: callers at the
 * I/O boundary turn them into DISK errors naming the path.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  opts: { readonly fixedTmp?: string } = {},
): Promise<void> {
  // `fixedTmp`: a writer that holds the file's lock may reuse one temp name, so a kill -9 leaves at
  // most that one behind (resume state, rewritten every 100 ms, would otherwise leave many).
  const tmp = opts.fixedTmp ?? tmpName(path);
  const excl = opts.fixedTmp === undefined ? constants.O_EXCL : constants.O_TRUNC;
  try {
    const fh = await openNoFollow(tmp, constants.O_WRONLY | constants.O_CREAT | excl);
    try {
      await fh.writeFile(data);
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}
