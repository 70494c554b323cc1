import { mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { diskError } from "../util/io-error.js";

const MKDIR = "cannot create the folder";

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
      throw diskError(err, dir, MKDIR);
    }
    if (!isDir) {
      throw diskError(Object.assign(new Error(), { code: p === dir ? "EEXIST" : "ENOTDIR" }), dir, MKDIR);
    }
    break;
  }
  for (const d of missing.reverse()) {
    try {
      await mkdir(d);
    } catch (err) {
      if ((err as { code?: string }).code === "EEXIST" && (await isDirectory(d))) continue;
      throw diskError(err, dir, MKDIR);
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
