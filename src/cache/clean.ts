import { lstat, readdir, readFile, rm, rmdir, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { HfgetError } from "../errors.js";
import { type RepoRef, repoFolderName } from "../repo.js";
import { diskError } from "../util/io-error.js";
import { isLocked, tryLock } from "./lock.js";
import { isPartialName } from "./paths.js";
import { type CachedRepo, scanCache } from "./scan.js";

/**
 * `hfget cache rm` and `hfget cache prune`: first a plan (what would go, bytes freed), computed
 * from a read-only scan; then `executeCleanPlan` deletes it. A blob whose huggingface_hub lock
 * (`.locks/<repo folder>/<id>.lock`) is held by a running download (hfget's or huggingface_hub's)
 * is never touched: it is checked when planning and again right before each deletion, and
 * skipped with a warning. What stays is a cache huggingface_hub's `scan_cache_dir` reads without
 * warnings: a revision goes with its refs, a repo whose blob is held keeps an empty `snapshots/`.
 */
export type CleanItem =
  | { readonly kind: "repo"; readonly repo: string; readonly path: string; readonly bytes: number }
  | {
      readonly kind: "revision";
      readonly repo: string;
      readonly commit: string;
      readonly refs: readonly string[];
      readonly path: string;
      readonly refPaths: readonly string[];
    }
  | { readonly kind: "blob"; readonly repo: string; readonly path: string; readonly bytes: number }
  | { readonly kind: "partial"; readonly repo: string; readonly path: string; readonly bytes: number }
  | { readonly kind: "lock"; readonly path: string };

export interface CleanPlan {
  readonly root: string;
  readonly items: readonly CleanItem[];
  /** Bytes the plan frees (blobs, partial files; a repo's blobs counted once). */
  readonly bytes: number;
  /** Things left alone on purpose, one line each (held locks, targets not in the cache). */
  readonly warnings: readonly string[];
  /** Lock file of each blob path the plan deletes. */
  readonly blobLocks: ReadonlyMap<string, string>;
}

export interface RmTarget {
  readonly repo: RepoRef;
  /** Commit sha or ref name; undefined: the whole repo. */
  readonly revision?: string | undefined;
}

const DAY_MS = 86_400_000;

function folderOf(repo: CachedRepo): string {
  return basename(repo.repoPath);
}

/** Blob id of a file in blobs/: the name up to the first dot (`<id>.hfget-partial`, `<id>.<uuid>.incomplete`). */
function blobIdOf(name: string): string {
  const dot = name.indexOf(".");
  return dot < 0 ? name : name.slice(0, dot);
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch {
    return [];
  }
}

class Builder {
  readonly items: CleanItem[] = [];
  readonly warnings: string[] = [];
  readonly blobLocks = new Map<string, string>();
  bytes = 0;
  readonly seen = new Set<string>();
  constructor(readonly root: string) {}

  lockPath(repo: CachedRepo, id: string): string {
    return join(this.root, ".locks", folderOf(repo), `${id}.lock`);
  }

  /** Adds a blob (or partial file) unless its lock is held; returns whether it was added. */
  async addBlob(kind: "blob" | "partial", repo: CachedRepo, path: string): Promise<boolean> {
    if (this.seen.has(path)) return true;
    const lock = this.lockPath(repo, blobIdOf(basename(path)));
    if (await isLocked(lock)) {
      this.warnings.push(`skipped ${path}: its lock ${lock} is held by a running download`);
      return false;
    }
    let bytes = 0;
    try {
      bytes = (await lstat(path)).size;
    } catch {
      return false;
    }
    this.seen.add(path);
    this.blobLocks.set(path, lock);
    this.items.push({ kind, repo: repo.cacheId, path, bytes });
    this.bytes += bytes;
    return true;
  }

  async refPaths(repo: CachedRepo, refs: readonly string[]): Promise<string[]> {
    return refs.map((r) => join(repo.repoPath, "refs", ...r.split("/")));
  }

  /** The revisions' snapshots and refs, and every blob no remaining revision links to. */
  async removeRevisions(repo: CachedRepo, commits: ReadonlySet<string>): Promise<void> {
    const keep = new Set<string>();
    for (const v of repo.revisions) {
      if (!commits.has(v.commit)) for (const f of v.files) keep.add(f.blobPath);
    }
    for (const v of repo.revisions) {
      if (!commits.has(v.commit)) continue;
      this.items.push({
        kind: "revision",
        repo: repo.cacheId,
        commit: v.commit,
        refs: v.refs,
        path: v.snapshotPath,
        refPaths: await this.refPaths(repo, v.refs),
      });
    }
    await this.unreferencedBlobs(repo, keep);
  }

  /** Blobs in blobs/ that no kept snapshot links to (not partial or .incomplete files). */
  async unreferencedBlobs(repo: CachedRepo, keep: ReadonlySet<string>): Promise<void> {
    const blobs = join(repo.repoPath, "blobs");
    for (const name of await listDir(blobs)) {
      if (isPartialName(name) || name.endsWith(".incomplete")) continue;
      const p = join(blobs, name);
      if (keep.has(p)) continue;
      await this.addBlob("blob", repo, p);
    }
  }

  /** The whole repo folder, or (when one of its blobs is held) all of it but those blobs. */
  async removeRepo(repo: CachedRepo): Promise<void> {
    const blobs = join(repo.repoPath, "blobs");
    const held: string[] = [];
    for (const name of await listDir(blobs)) {
      const lock = this.lockPath(repo, blobIdOf(name));
      if (await isLocked(lock)) held.push(join(blobs, name));
    }
    if (held.length === 0) {
      this.items.push({ kind: "repo", repo: repo.cacheId, path: repo.repoPath, bytes: repo.sizeOnDisk });
      this.bytes += repo.sizeOnDisk;
      for (const name of await listDir(blobs)) {
        if (isPartialName(name) || name.endsWith(".incomplete")) {
          this.bytes += (await lstat(join(blobs, name)).catch(() => ({ size: 0 }))).size;
        }
      }
      return;
    }
    await this.removeRevisions(repo, new Set(repo.revisions.map((v) => v.commit)));
    for (const name of await listDir(blobs)) {
      if (isPartialName(name) || name.endsWith(".incomplete"))
        await this.addBlob("partial", repo, join(blobs, name));
    }
  }

  plan(): CleanPlan {
    return {
      root: this.root,
      items: this.items,
      bytes: this.bytes,
      warnings: this.warnings,
      blobLocks: this.blobLocks,
    };
  }
}

async function resolveRevision(repo: CachedRepo, revision: string): Promise<string | undefined> {
  if (repo.revisions.some((v) => v.commit === revision)) return revision;
  try {
    const commit = (await readFile(join(repo.repoPath, "refs", ...revision.split("/")), "utf8")).trim();
    return repo.revisions.some((v) => v.commit === commit) ? commit : undefined;
  } catch {
    return undefined;
  }
}

/** What `hfget cache rm` would delete. A target not in the cache is a warning, not an error. */
export async function planRm(root: string, targets: readonly RmTarget[]): Promise<CleanPlan> {
  const scan = await scanCache(root);
  const b = new Builder(root);
  const byFolder = new Map(scan.repos.map((r) => [folderOf(r), r]));
  const whole = new Set<CachedRepo>();
  const revs = new Map<CachedRepo, Set<string>>();
  for (const t of targets) {
    const label = `${t.repo.type}/${t.repo.id}${t.revision === undefined ? "" : `@${t.revision}`}`;
    const repo = byFolder.get(repoFolderName(t.repo));
    if (repo === undefined) {
      b.warnings.push(`not in the cache: ${label}`);
      continue;
    }
    if (t.revision === undefined) {
      whole.add(repo);
      continue;
    }
    const commit = await resolveRevision(repo, t.revision);
    if (commit === undefined) {
      b.warnings.push(`not in the cache: ${label}`);
      continue;
    }
    const set = revs.get(repo) ?? new Set<string>();
    set.add(commit);
    revs.set(repo, set);
  }
  for (const repo of whole) await b.removeRepo(repo);
  for (const [repo, commits] of revs) {
    if (whole.has(repo)) continue;
    if (commits.size === repo.revisions.length) await b.removeRepo(repo);
    else await b.removeRevisions(repo, commits);
  }
  return b.plan();
}

export interface PruneOptions {
  /** Also remove whole repos whose blobs were last accessed longer ago than this (ms). */
  readonly olderThanMs?: number | undefined;
  readonly now?: number;
}

/**
 * What `hfget cache prune` would delete: detached revisions (no ref), blobs no snapshot links to,
 * hfget partial files and resume state and huggingface_hub `.incomplete` files older than a day,
 * empty lock files nobody holds, and with `olderThanMs` repos not accessed for that long.
 */
export async function planPrune(root: string, opts: PruneOptions = {}): Promise<CleanPlan> {
  const now = opts.now ?? Date.now();
  const scan = await scanCache(root);
  const b = new Builder(root);
  for (const repo of scan.repos) {
    if (opts.olderThanMs !== undefined && repo.lastAccessed * 1000 < now - opts.olderThanMs) {
      await b.removeRepo(repo);
      continue;
    }
    const detached = new Set(repo.revisions.filter((v) => v.refs.length === 0).map((v) => v.commit));
    await b.removeRevisions(repo, detached);
    const blobs = join(repo.repoPath, "blobs");
    for (const name of await listDir(blobs)) {
      if (!isPartialName(name) && !name.endsWith(".incomplete")) continue;
      const p = join(blobs, name);
      const st = await lstat(p).catch(() => undefined);
      if (st !== undefined && st.mtimeMs < now - DAY_MS) await b.addBlob("partial", repo, p);
    }
  }
  const locks = join(root, ".locks");
  for (const folder of await listDir(locks)) {
    for (const name of await listDir(join(locks, folder))) {
      if (!name.endsWith(".lock")) continue;
      const p = join(locks, folder, name);
      const st = await lstat(p).catch(() => undefined);
      if (st === undefined || !st.isFile() || st.size !== 0) continue;
      if (await isLocked(p)) continue;
      b.items.push({ kind: "lock", path: p });
    }
  }
  return b.plan();
}

export interface CleanResult {
  readonly removed: number;
  readonly bytes: number;
  /** Items skipped at deletion time (a lock taken after planning). */
  readonly warnings: readonly string[];
}

async function removeEmptyParents(dir: string, stop: string): Promise<void> {
  let d = dir;
  while (d.startsWith(stop) && d !== stop) {
    try {
      await rmdir(d);
    } catch {
      return;
    }
    d = dirname(d);
  }
}

/** Deletes what the plan lists, checking each blob's lock again right before. */
export async function executeCleanPlan(plan: CleanPlan): Promise<CleanResult> {
  const warnings: string[] = [];
  let removed = 0;
  let bytes = 0;
  try {
    for (const item of plan.items) {
      switch (item.kind) {
        case "repo": {
          // A download may have started since planning: then leave the whole repo for next time.
          const folder = basename(item.path);
          let held: string | undefined;
          for (const name of await listDir(join(item.path, "blobs"))) {
            const lock = join(plan.root, ".locks", folder, `${blobIdOf(name)}.lock`);
            if (await isLocked(lock)) held = lock;
          }
          if (held !== undefined) {
            warnings.push(`skipped ${item.path}: the lock ${held} is held by a running download`);
            continue;
          }
          await rm(item.path, { recursive: true, force: true });
          bytes += item.bytes;
          break;
        }
        case "revision":
          for (const ref of item.refPaths) {
            await rm(ref, { force: true });
            await removeEmptyParents(dirname(ref), join(dirname(dirname(item.path)), "refs"));
          }
          await rm(item.path, { recursive: true, force: true });
          break;
        case "blob":
        case "partial": {
          const lock = plan.blobLocks.get(item.path);
          if (lock !== undefined && (await isLocked(lock))) {
            warnings.push(`skipped ${item.path}: its lock ${lock} is held by a running download`);
            continue;
          }
          await rm(item.path, { force: true });
          bytes += item.bytes;
          break;
        }
        case "lock": {
          // Unlink only while holding it, so no one is inside it; a waiter on the old inode sees
          // nlink 0 afterwards and retries on a new file (filelock and hfget both do).
          const release = await tryLock(item.path);
          if (release === undefined) continue;
          try {
            if ((await stat(item.path)).size === 0) await unlink(item.path);
          } finally {
            await release();
          }
          await removeEmptyParents(dirname(item.path), join(plan.root, ".locks"));
          break;
        }
      }
      removed++;
    }
  } catch (err) {
    throw diskError(err, (err as { path?: string }).path ?? "a cache file", "cannot remove");
  }
  return { removed, bytes, warnings };
}

/** `30d`, `12h`, `90m`, `2w` -> milliseconds. */
export function parseAge(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(text.trim());
  if (m === null) {
    throw new HfgetError("USAGE", `invalid age "${text}"`, { hint: "use a number and a unit: 30d, 12h, 2w" });
  }
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS, w: 7 * DAY_MS }[
    m[2] as "s" | "m" | "h" | "d" | "w"
  ];
  return Number(m[1]) * unit;
}
