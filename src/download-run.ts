// The run once the metadata requests are out (download.ts starts them): plan -> fetch -> verify ->
// commit, a listing page at a time. Loaded by download() with import(), so that its modules (the
// engine, the cache, the plan) load while the revision and listing requests are in flight.
import { constants } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import {
  cachePlacement,
  type HashedLocal,
  localDirPlacement,
  type Placement,
  SafeDirs,
} from "./cache/commit.js";
import { makeDirs } from "./cache/dirs.js";
import { cachePaths, localDirPaths } from "./cache/paths.js";
import type { Config } from "./config.js";
import type { DownloadOptions } from "./download.js";
import { HfgetError } from "./errors.js";
import type { DownloadResult, EndpointResult, EventSink, FileResult } from "./events.js";
import { Engine, type FileWork } from "./fetch/engine.js";
import { SourcePool } from "./fetch/sources.js";
import type { ListingStream } from "./hub/metadata.js";
import type { RepoFile } from "./hub/types.js";
import { recordComplete } from "./offline.js";
import { type FilePlan, planFiles } from "./plan/plan.js";
import { type FileSurvey, type SurveyTarget, surveyor } from "./plan/survey.js";
import { repoLabel } from "./repo.js";
import { pageSelector, selectFiles } from "./select.js";
import type { Session } from "./session.js";
import { openNoFollow, writeFileAtomic } from "./util/atomic-write.js";
import { diskError } from "./util/io-error.js";
import { sleep as defaultSleep } from "./util/retry.js";

/** refs/<revision> holds the commit sha, with no trailing newline (huggingface_hub reads it raw). */
async function writeRef(path: string, commit: string): Promise<void> {
  try {
    if ((await readFile(path, "utf8")) === commit) return;
  } catch {
    // not there yet
  }
  await makeDirs(dirname(path));
  await writeFileAtomic(path, commit);
}

/**
 * `<local-dir>/.cache/huggingface/.gitignore` holding `*`, as huggingface_hub's _local_folder.py
 * writes it (only when absent), so `git add .` in the local dir skips the metadata.
 */
async function writeLocalDirGitignore(localDir: string, dirs: SafeDirs): Promise<void> {
  const dir = join(localDir, ".cache", "huggingface");
  // Checked like every folder of the target: a planted .cache symlink must not lead the write outside.
  await dirs.ensure(dir);
  const path = join(dir, ".gitignore");
  try {
    const fh = await openNoFollow(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL);
    await fh.writeFile("*").finally(() => fh.close());
  } catch (err) {
    if ((err as { code?: string }).code !== "EEXIST") throw diskError(err, path);
  }
}

/**
 * Reads `source` as fast as it yields, and yields everything that arrived since the last time (at
 * least one item), then its error if it failed. The reading does not wait for the consumer; a
 * consumer that stops early must stop the source itself (its signal).
 */
export async function* readAhead<T>(source: AsyncIterable<T>): AsyncGenerator<T[]> {
  const buf: T[] = [];
  let done = false;
  let failed = false;
  let error: unknown;
  let wake: (() => void) | undefined;
  void (async () => {
    try {
      for await (const item of source) {
        buf.push(item);
        wake?.();
      }
    } catch (err) {
      failed = true;
      error = err;
    } finally {
      done = true;
      wake?.();
    }
  })();
  for (;;) {
    if (buf.length > 0) {
      yield buf.splice(0);
      continue;
    }
    if (done) break;
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
    wake = undefined;
  }
  if (failed) throw error;
}

export async function fetchAll(
  configIn: Config,
  session: Session,
  listingStarted: Promise<ListingStream>,
  opts: DownloadOptions,
  emit: EventSink,
  signal: AbortSignal,
  listController: AbortController,
  started: number,
): Promise<DownloadResult> {
  let config = configIn;
  const { hub } = session;
  const listing = await listingStarted;
  const { pinned } = listing;
  const { commit } = pinned;
  if (pinned.revision !== config.revision) config = { ...config, revision: pinned.revision };
  emit({ type: "resolved", commit });
  /** The whole listing once its pages are read (recordComplete checks the snapshot against it). */
  const all = pinned.files;

  const cache = cachePaths(config.cacheDir, config.repo);
  const local = config.localDir === undefined ? undefined : localDirPaths(config.localDir);
  const root = local ? local.root : cache.repoDir;
  const outPath = local ? local.root : cache.snapshotDir(commit);
  const dirs = new SafeDirs(root);
  // Beside the plan, not before it: it is needed only when the run is over, and its folder checks
  // and writes cost several ms of the time before the first byte.
  const gitignore = local && !config.dryRun ? writeLocalDirGitignore(local.root, dirs) : undefined;
  gitignore?.catch(() => undefined); // awaited once the files are fetched

  // The plan step, a batch (a listing page) at a time: a read-only survey of the target, then a
  // pure decision per file.
  const target: SurveyTarget = local
    ? { kind: "local", paths: local }
    : { kind: "cache", paths: cache, commit };
  /** The selected files, in listing order, and what was planned for each. */
  const files: RepoFile[] = [];
  const surveys = new Map<string, FileSurvey>();
  const plans = new Map<string, FilePlan>();
  const allWorks: FileWork[] = [];
  let bytesTotal = 0;
  let bytesToFetch = 0;
  const planOf = (f: RepoFile): FilePlan => plans.get(f.path)!;
  // `reuse`: the engine asks isPresent() under the blob's lock, which links or copies the blob from
  // another repo of the cache after re-hashing it (and the engine fetches when none verifies).
  const reuseOf = (f: RepoFile): readonly string[] =>
    planOf(f).action === "reuse" ? (surveys.get(f.path)?.reuseFrom ?? []) : [];
  /** A local-dir file the survey hashed right (not hashed again under the lock while unchanged). */
  const hashedOf = (f: RepoFile): HashedLocal | undefined => {
    const s = surveys.get(f.path);
    return s?.localHashOk === true && s.localSize !== undefined && s.localMtimeMs !== undefined
      ? { size: s.localSize, mtimeMs: s.localMtimeMs }
      : undefined;
  };
  const placementOf = (f: RepoFile): Placement =>
    local
      ? localDirPlacement(local, commit, f, dirs, hashedOf(f))
      : cachePlacement(cache, commit, f, dirs, reuseOf(f));
  const surveyBatch = surveyor(target);
  const planBatch = async (batch: readonly RepoFile[]): Promise<FileWork[]> => {
    const surveyed = await surveyBatch(batch);
    for (const [path, sv] of surveyed) surveys.set(path, sv);
    for (const p of planFiles(batch, surveyed, { force: config.force })) {
      plans.set(p.path, p);
      bytesToFetch += p.bytesToFetch;
    }
    const works = batch.map((file) => ({
      file,
      // Every endpoint at the pinned commit; the engine's source pool picks per chunk and fails over.
      sources: pinned.sourcesFor(file),
      placement: placementOf(file),
      force: config.force,
    }));
    for (const f of batch) {
      files.push(f);
      bytesTotal += f.size;
    }
    for (const w of works) allWorks.push(w);
    return works;
  };
  const resultOf = (w: FileWork, status: FileResult["status"]): FileResult => ({
    path: w.file.path,
    size: w.file.size,
    status,
    location: w.placement.location,
    action: planOf(w.file).action,
    bytesToFetch: planOf(w.file).bytesToFetch,
  });

  if (config.dryRun) {
    // The whole plan is printed: every page first.
    for await (const _ of listing.pages) {
      // pinned.files grows
    }
    emit({ type: "listed", files: all.length });
    await planBatch(selectFiles(all, config, pinned.path));
    const results = allWorks.map((w) =>
      resultOf(w, planOf(w.file).action === "present" ? "cached" : "planned"),
    );
    return summary(config, commit, outPath, results, bytesTotal, bytesToFetch, 0, started, true);
  }

  // Present files skip the engine (a local-dir file whose metadata names another commit still goes
  // through it, so its metadata is rewritten); `link` ones make only their link there, under the lock.
  // A present file beside a stale partial of ours also goes there: it removes the partial under the lock.
  const skip = (w: FileWork): boolean => {
    const s = surveys.get(w.file.path);
    if (planOf(w.file).action !== "present" || s?.partialSize !== undefined) return false;
    return !local || s?.metadata?.commit === commit;
  };
  const lockDirs = new Set<string>();
  let bytesDownloaded = 0;
  const pool = new SourcePool();
  /** The last reason each endpoint was set aside, for the result. */
  const setAside = new Map<string, string>();
  const engine = new Engine(
    {
      // Preferred = the endpoint that answered the metadata (error messages say whether a token
      // went there by http.endpointOrigin); the token still goes to every listed origin.
      http: pinned.endpoint === hub.endpoint ? hub.http : hub.http.withEndpoint(pinned.endpoint),
      options: config,
      retry: hub.retry,
      signal,
      sleep: opts.sleep ?? defaultSleep,
      emit: (e) => {
        if (e.type === "bytes") bytesDownloaded += e.bytes;
        else if (e.type === "source-set-aside") setAside.set(e.endpoint, `${e.path}: ${e.reason}`);
        emit(e);
      },
      pool,
    },
    [],
    { more: true },
  );
  /** Plans a batch and hands what is not present to the engine (lock folders made first). */
  const feed = async (batch: readonly RepoFile[], more: boolean): Promise<void> => {
    const works = await planBatch(batch);
    // A dry-run prints its plan instead of progress (no "finished 0/N" line for it). Totals so far:
    // they grow while the listing streams (`more`).
    emit({ type: "planned", files: files.length, bytes: bytesTotal, more });
    for (const w of works) {
      if (skip(w)) emit({ type: "file-done", path: w.file.path, size: w.file.size, status: "cached" });
    }
    const toFetch = works.filter((w) => !skip(w));
    for (const w of toFetch) {
      const dir = dirname(w.placement.lock);
      if (lockDirs.has(dir)) continue;
      lockDirs.add(dir);
      if (local) {
        // The engine takes each file's lock (under .cache/huggingface/download) before the placement
        // checks its folders: check those first, so a planted symlink cannot lead it outside.
        await dirs.ensure(dir);
      } else {
        // Made here for every run (one folder per repo): a folder remembered from an earlier run in
        // this process may have been removed since (the cache deleted between two library calls).
        await makeDirs(dir);
      }
    }
    if (toFetch.length > 0) engine.add(toFetch);
  };
  const fetchStarted = Date.now();
  const running = engine.run();
  // A run-wide failure stops the listing too (its error is the run's, thrown by `running`).
  running.catch(() => listController.abort(new Error("the run stopped")));
  try {
    // Positional names need the whole listing (a missing one fails the run before any byte).
    const byPage = config.files.length === 0 ? pageSelector(config, pinned.path) : undefined;
    let whole = false;
    // The listing runs ahead of the planning: a page is asked for as soon as the previous one is
    // in, whatever the survey of the earlier ones costs; what arrived meanwhile is one batch.
    for await (const pages of readAhead(listing.pages)) {
      const last = pages.some((p) => p.last);
      if (last) {
        whole = true;
        emit({ type: "listed", files: all.length });
      }
      if (byPage === undefined) continue;
      const picked = pages.flatMap((p) => byPage.pick(p.files));
      // Nothing selected at all: said before the last page's plan (no "0 files" line first).
      if (last) byPage.finish(all.length);
      await feed(picked, !last);
    }
    if (!whole) throw new Error("internal: the listing ended without its last page");
    if (byPage === undefined) await feed(selectFiles(all, config, pinned.path), false);
    engine.end();
  } catch (err) {
    // The listing broke off (or the selection failed): the run stops with that error, unless the
    // engine's own failure came first.
    engine.end(err);
  }
  const outcomes = await running;
  await gitignore;
  const fetchSeconds = (Date.now() - fetchStarted) / 1000;
  const endpoints: EndpointResult[] = pool.all().map((s) => {
    const aside = s.dropped ?? setAside.get(s.endpoint);
    return {
      endpoint: s.endpoint,
      bytes: s.bytes,
      bytesPerSec: fetchSeconds > 0 ? Math.round(s.bytes / fetchSeconds) : 0,
      ...(aside === undefined ? {} : { setAside: aside }),
    };
  });
  const results: FileResult[] = allWorks.map((w) =>
    resultOf(w, skip(w) ? "cached" : (outcomes.get(w.file.path)?.status ?? "failed")),
  );
  const failed = allWorks.filter(
    (w) =>
      !skip(w) &&
      outcomes.get(w.file.path)?.status !== "downloaded" &&
      outcomes.get(w.file.path)?.status !== "cached",
  );
  if (failed.length > 0) {
    const first = outcomes.get(failed[0]!.file.path)?.error;
    const more =
      failed.length > 1 ? ` (and ${failed.length - 1} more file${failed.length > 2 ? "s" : ""} failed)` : "";
    const err = first ?? new HfgetError("NETWORK", `${failed[0]!.file.path} was not downloaded`);
    if (err.code === "GATED") {
      // Access is per repo, not per file: name the repo.
      throw new HfgetError("GATED", `${repoLabel(config.repo)}: the repository is gated`, {
        hint: err.hint,
        cause: err,
      });
    }
    throw new HfgetError(err.code, `${err.message}${more}`, { hint: err.hint, cause: err });
  }
  if (!local && config.revision !== commit) {
    await writeRef(cache.ref(config.revision), commit);
  }
  if (!local) await makeDirs(cache.snapshotDir(commit));
  await recordComplete(config, cache.repoDir, commit, all, files.length === all.length);
  return {
    ...summary(config, commit, outPath, results, bytesTotal, bytesToFetch, bytesDownloaded, started, false),
    endpoints,
  };
}

function summary(
  config: Config,
  commit: string,
  path: string,
  files: FileResult[],
  bytesTotal: number,
  bytesToFetch: number,
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
    bytesToFetch,
    bytesDownloaded,
    seconds: (Date.now() - started) / 1000,
    dryRun,
  };
}
