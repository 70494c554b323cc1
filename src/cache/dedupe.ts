import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { link, lstat, readdir, rename, rm } from "node:fs/promises";
import { basename, join } from "node:path";
import { diskError } from "../util/io-error.js";
import { isLocked } from "./lock.js";

/**
 * `hfget cache dedupe`: LFS blobs (named by their sha256) present under several repos become hard
 * links to one inode. Both copies are re-hashed first (a bad copy is never linked to, nor replaced
 * silently: it is reported and left for `cache verify --fix`); only same-filesystem copies; a blob
 * whose lock is held by a running download is left alone. The replacement is a link made beside the
 * blob and renamed over it, so the name always points at complete, verified bytes.
 */
export interface DedupeLink {
  readonly sha256: string;
  readonly keep: string;
  readonly replaced: string;
  readonly bytes: number;
}

export interface DedupeResult {
  readonly links: readonly DedupeLink[];
  readonly bytesSaved: number;
  readonly warnings: readonly string[];
}

const SHA256 = /^[0-9a-f]{64}$/;

async function sha256Of(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest("hex");
}

async function names(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch {
    return [];
  }
}

export async function dedupeCache(
  root: string,
  opts: { dryRun?: boolean | undefined } = {},
): Promise<DedupeResult> {
  const byHash = new Map<string, { path: string; folder: string }[]>();
  for (const folder of await names(root)) {
    if (!/^(models|datasets|spaces)--/.test(folder)) continue;
    for (const name of await names(join(root, folder, "blobs"))) {
      if (!SHA256.test(name)) continue;
      const list = byHash.get(name) ?? [];
      list.push({ path: join(root, folder, "blobs", name), folder });
      byHash.set(name, list);
    }
  }
  const links: DedupeLink[] = [];
  const warnings: string[] = [];
  try {
    for (const [sha, copies] of byHash) {
      if (copies.length < 2) continue;
      const good: { path: string; folder: string; dev: number; ino: number; size: number }[] = [];
      for (const c of copies) {
        const lock = join(root, ".locks", c.folder, `${sha}.lock`);
        if (await isLocked(lock)) {
          warnings.push(`skipped ${c.path}: its lock ${lock} is held by a running download`);
          continue;
        }
        const st = await lstat(c.path);
        if (!st.isFile()) continue;
        good.push({ ...c, dev: st.dev, ino: st.ino, size: st.size });
      }
      const keep = good[0];
      if (keep === undefined) continue;
      const verified = new Set<string>();
      const check = async (p: string): Promise<boolean> => {
        if (verified.has(p)) return true;
        if ((await sha256Of(p)) !== sha) {
          warnings.push(`not linked: ${p} does not hash to its name (run hfget cache verify --fix)`);
          return false;
        }
        verified.add(p);
        return true;
      };
      for (const other of good.slice(1)) {
        if (other.ino === keep.ino && other.dev === keep.dev) continue;
        if (other.dev !== keep.dev) {
          warnings.push(`not linked: ${other.path} is on another filesystem than ${keep.path}`);
          continue;
        }
        if (!(await check(keep.path))) break;
        if (!(await check(other.path))) continue;
        if (!opts.dryRun) {
          const tmp = `${other.path}.hfget-dedupe`;
          await rm(tmp, { force: true });
          await link(keep.path, tmp);
          await rename(tmp, other.path);
        }
        links.push({ sha256: sha, keep: keep.path, replaced: other.path, bytes: other.size });
      }
    }
  } catch (err) {
    throw diskError(err, (err as { path?: string }).path ?? basename(root), "cannot deduplicate");
  }
  return { links, bytesSaved: links.reduce((n, l) => n + l.bytes, 0), warnings };
}
