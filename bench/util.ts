// Small helpers shared by the benchmark modules: paths, logging, hashing, formatting.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readdir, readFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** The project root: this file is compiled to dist/bench/util.js. */
export const PROJECT_ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** Where the bench keeps its generated data, configs, logs and outputs (git-ignored). */
export const WORK_DIR = join(PROJECT_ROOT, "bench", "work");

export const MIB = 1024 * 1024;
export const GIB = 1024 * MIB;
/** MB is 10^6 bytes everywhere in the reports (and nginx rates are given in bytes, not in nginx's `m`). */
export const MB = 1_000_000;

export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** SHA-256 of a file, streamed with large reads. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const stream = createReadStream(path, { highWaterMark: 4 * MIB });
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}

/** SHA-256 of a small file, read whole. */
export async function sha256SmallFile(path: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(path))
    .digest("hex");
}

/** Runs `fn` over `items` with at most `limit` at once; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, () => worker()));
  return results;
}

/** Every regular file or symlink under `root`, as a POSIX relative path. Bounded by `maxEntries`. */
export async function listFilesRecursive(root: string, maxEntries = 1_000_000): Promise<string[]> {
  const out: string[] = [];
  const stack: string[] = [root];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    let entries: import("node:fs").Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      const abs = join(dir, e.name);
      if (e.isDirectory()) {
        stack.push(abs);
      } else {
        out.push(relative(root, abs).split(sep).join("/"));
      }
      if (out.length + stack.length > maxEntries) {
        throw new Error(`more than ${maxEntries} entries under ${root}`);
      }
    }
  }
  return out.sort();
}

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Median of the finite values (NaN when there is none). */
export function median(values: readonly number[]): number {
  const s = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function fmt(n: number, digits = 2): string {
  if (!Number.isFinite(n)) return "-";
  return n.toFixed(digits);
}

export function fmtBytes(n: number): string {
  if (n >= 1024 * GIB) return `${fmt(n / (1024 * GIB))} TiB`;
  if (n >= GIB) return `${fmt(n / GIB)} GiB`;
  if (n >= MIB) return `${fmt(n / MIB, 1)} MiB`;
  if (n >= 1024) return `${fmt(n / 1024, 1)} KiB`;
  return `${n} B`;
}

let maxLoad = 0;

/** Samples the 1-minute load average (call before each run); returns the highest seen so far. */
export function sampleLoad(): number {
  maxLoad = Math.max(maxLoad, Math.round((loadavg()[0] ?? 0) * 100) / 100);
  return maxLoad;
}
