import { mkdir, readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";
import pLimit from "p-limit";
import { cachePlacement, localDirPlacement, type Placement, SafeDirs } from "./cache/commit.js";
import { cachePaths, localDirPaths } from "./cache/paths.js";
import type { Config } from "./config.js";
import { HfgetError } from "./errors.js";
import type { DownloadResult, EventSink, FileResult } from "./events.js";
import { Engine, type FileWork } from "./fetch/engine.js";
import { makeFilter } from "./glob.js";
import { listFiles } from "./hub/list-files.js";
import { resolveRevision } from "./hub/resolve-revision.js";
import type { RepoFile } from "./hub/types.js";
import { offlineSnapshot, recordComplete } from "./offline.js";
import { repoLabel } from "./repo.js";
import type { Session } from "./session.js";
import { writeFileAtomic } from "./util/atomic-write.js";
import { atPath } from "./util/io-error.js";
import { sleep as defaultSleep, type Sleep } from "./util/retry.js";

export interface DownloadOptions {
  readonly signal?: AbortSignal;
  readonly onEvent?: EventSink;
  readonly sleep?: Sleep;
}

/** Picks the files to fetch: positional names exactly, else the include/exclude globs. */
export function selectFiles(all: readonly RepoFile[], config: Config): RepoFile[] {
  if (config.files.length > 0) {
    const byPath = new Map(all.map((f) => [f.path, f]));
    const missing = config.files.filter((p) => !byPath.has(p));
    if (missing.length > 0) {
      throw new HfgetError(
        "ENTRY_NOT_FOUND",
        `${repoLabel(config.repo)}@${config.revision}: no file ${missing.map((m) => JSON.stringify(m)).join(", ")}`,
        { hint: "run `hfget ls` to see the files" },
      );
    }
    const filter = makeFilter(config.include, config.exclude);
    return config.files.map((p) => byPath.get(p)!).filter((f) => filter(f.path));
  }
  const filter = makeFilter(config.include, config.exclude);
  return all.filter((f) => filter(f.path));
}

/** refs/<revision> holds the commit sha, with no trailing newline (huggingface_hub reads it raw). */
async function writeRef(path: string, commit: string): Promise<void> {
  try {
    if ((await readFile(path, "utf8")) === commit) return;
  } catch {
    // not there yet
  }
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, commit);
}

/**
 * The whole download: revision -> listing -> plan -> fetch -> verify -> commit. Emits events,
 * returns a summary, never prints. Per-file failures are in the result; run-wide ones throw.
 */
export async function download(
  config: Config,
  session: Session,
  opts: DownloadOptions = {},
): Promise<DownloadResult> {
  const started = Date.now();
  const emit: EventSink = opts.onEvent ?? (() => undefined);
  const signal = opts.signal ?? new AbortController().signal;
  if (config.offline) return offlineSnapshot(config);
  const { hub } = session;
  const { commit } = await resolveRevision(hub, config.repo, config.revision, signal);
  emit({ type: "resolved", commit });
  const all: RepoFile[] = [];
  for await (const f of listFiles(hub, config.repo, commit, { signal })) all.push(f);
  emit({ type: "listed", files: all.length });
  const files = selectFiles(all, config);

  const cache = cachePaths(config.cacheDir, config.repo);
  const local = config.localDir === undefined ? undefined : localDirPaths(config.localDir);
  const root = local ? local.root : cache.repoDir;
  const outPath = local ? local.root : cache.snapshotDir(commit);
  const dirs = new SafeDirs(root);
  const placementOf = (f: RepoFile): Placement =>
    local ? localDirPlacement(local, commit, f, dirs) : cachePlacement(cache, commit, f, dirs);

  const works: FileWork[] = files.map((file) => ({
    file,
    resolveUrl: hub.resolveUrl(config.repo, commit, file.path),
    placement: placementOf(file),
    force: config.force,
  }));
  const bytesTotal = files.reduce((n, f) => n + f.size, 0);
  emit({ type: "planned", files: files.length, bytes: bytesTotal });

  if (config.dryRun) {
    // Presence checks are independent stat calls: a few dozen at once, not 3000 in a row.
    const limit = pLimit(32);
    const results: FileResult[] = await Promise.all(
      works.map((w) =>
        limit(async () => {
          const present = !config.force && (await isPresentReadOnly(w.placement, w.file.size));
          const status: FileResult["status"] = present ? "cached" : "planned";
          return { path: w.file.path, size: w.file.size, status, location: w.placement.location };
        }),
      ),
    );
    return summary(config, commit, outPath, results, bytesTotal, 0, started, true);
  }

  await mkdir(root, { recursive: true });
  const lockDirs = new Set(works.map((w) => dirname(w.placement.lock)));
  if (local) {
    // The engine takes each file's lock (under .cache/huggingface/download) before the placement
    // checks its folders: check those first, so a planted symlink cannot lead it outside.
    for (const dir of lockDirs) await dirs.ensure(dir);
  } else {
    // Made here for every run (one folder per repo): a folder remembered from an earlier run in
    // this process may have been removed since (the cache deleted between two library calls).
    for (const dir of lockDirs) await atPath(dir, () => mkdir(dir, { recursive: true }));
  }
  let bytesDownloaded = 0;
  const engine = new Engine(
    {
      http: hub.http,
      options: config,
      retry: hub.retry,
      signal,
      sleep: opts.sleep ?? defaultSleep,
      emit: (e) => {
        if (e.type === "bytes") bytesDownloaded += e.bytes;
        emit(e);
      },
    },
    works,
  );
  const outcomes = await engine.run();
  const results: FileResult[] = works.map((w) => ({
    path: w.file.path,
    size: w.file.size,
    status: outcomes.get(w.file.path)?.status ?? "failed",
    location: w.placement.location,
  }));
  const failed = works.filter(
    (w) =>
      outcomes.get(w.file.path)?.status !== "downloaded" && outcomes.get(w.file.path)?.status !== "cached",
  );
  if (failed.length > 0) {
    const first = outcomes.get(failed[0]!.file.path)?.error;
    const more =
      failed.length > 1 ? ` (and ${failed.length - 1} more file${failed.length > 2 ? "s" : ""} failed)` : "";
    const err = first ?? new HfgetError("NETWORK", `${failed[0]!.file.path} was not downloaded`);
    throw new HfgetError(err.code, `${err.message}${more}`, { hint: err.hint, cause: err });
  }
  if (!local && config.revision !== commit) {
    await writeRef(cache.ref(config.revision), commit);
  }
  if (!local) await mkdir(cache.snapshotDir(commit), { recursive: true });
  await recordComplete(config, cache.repoDir, commit, all, files.length === all.length);
  return summary(config, commit, outPath, results, bytesTotal, bytesDownloaded, started, false);
}

/** --dry-run must not write: a cache blob, or a local file, of the listed size counts as present. */
async function isPresentReadOnly(p: Placement, size: number): Promise<boolean> {
  try {
    // stat follows the snapshot symlink to its blob; a file of another size is not the one listed.
    return (await stat(p.location)).size === size;
  } catch {
    return false;
  }
}

function summary(
  config: Config,
  commit: string,
  path: string,
  files: FileResult[],
  bytesTotal: number,
  bytesDownloaded: number,
  started: number,
  dryRun: boolean,
): DownloadResult {
  return {
    repo: config.repo.id,
    repoType: config.repo.type,
    revision: config.revision,
    commit,
    path,
    files,
    bytesTotal,
    bytesDownloaded,
    seconds: (Date.now() - started) / 1000,
    dryRun,
  };
}
