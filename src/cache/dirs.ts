import { mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { HfgetError } from "../errors.js";

const REASONS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ENOTDIR: "a part of the path is a file, not a folder",
  EEXIST: "it is a file, not a folder",
  ENOENT: "the file system does not allow creating it",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
};

/** An errno failure on `path` as the one-line DISK error the CLI prints (exit 7). */
export function diskError(err: unknown, path: string, what = "cannot create the folder"): HfgetError {
  const code = (err as { code?: string }).code ?? "error";
  const reason = REASONS[code] ?? code;
  return new HfgetError("DISK", `${what} ${path}: ${reason} (${code})`, {
    hint: "choose a folder you can write to (--local-dir / --cache-dir / HF_HOME)",
    cause: err,
  });
}

/**
 * `mkdir -p` without Node's recursive mkdir, which loops forever at 100% CPU where mkdir(2) answers
 * ENOENT for a folder whose parent exists (/proc, /sys). Finds the deepest existing ancestor, then
 * creates each level once; a failure is a DISK error naming the path. Bounded by the path's depth.
 */
export async function makeDirs(dir: string): Promise<void> {
  const missing: string[] = [];
  let p = dir;
  for (;;) {
    let isDir: boolean;
    try {
      isDir = (await stat(p)).isDirectory();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "ENOENT" && dirname(p) !== p) {
        missing.push(p);
        p = dirname(p);
        continue;
      }
      throw diskError(err, dir);
    }
    if (!isDir) {
      throw diskError(Object.assign(new Error(), { code: p === dir ? "EEXIST" : "ENOTDIR" }), dir);
    }
    break;
  }
  for (const d of missing.reverse()) {
    try {
      await mkdir(d);
    } catch (err) {
      if ((err as { code?: string }).code === "EEXIST" && (await isDirectory(d))) continue;
      throw diskError(err, dir);
    }
  }
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}
