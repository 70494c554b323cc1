import { lstat, readdir, readFile, readlink, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { cachePaths, localDirPaths } from "./cache/paths.js";
import { readTree, type TreeEntry, writeCachedirTag, writeTree } from "./cache/tree-cache.js";
import type { Config } from "./config.js";
import { HfgetError } from "./errors.js";
import type { DownloadResult, FileResult } from "./events.js";
import { makeFilter } from "./glob.js";
import { isCommitSha } from "./hub/resolve-revision.js";
import type { RepoFile } from "./hub/types.js";
import type { LsEntry, LsResult } from "./ls.js";
import { repoLabel } from "./repo.js";

/**
 * HF_HUB_OFFLINE: answer from the disk alone, as huggingface_hub 1.28 does: the revision through
 * refs/, the snapshot folder, and when `trees/<commit>.json` is there (written only for complete
 * snapshots) every listed file that the filters select must be present, else exit 3 naming the
 * missing ones. A file named on the command line must be present whatever trees/ says.
 */
const HINT = "HF_HUB_OFFLINE is set: unset it to download";

function sample(paths: readonly string[]): string {
  const s = paths.slice(0, 3).join(", ");
  return paths.length > 3 ? `${s}, ... (${paths.length - 3} more)` : s;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function filesUnder(dir: string, skip?: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      return;
    }
    for (const n of names.sort()) {
      const p = join(d, n);
      if (p === skip) continue;
      if ((await stat(p).catch(() => undefined))?.isDirectory()) await visit(p);
      else out.push(relative(dir, p).split(sep).join("/"));
    }
  };
  await visit(dir);
  return out;
}

/** What the run is expected to find: named files, else the tree listing filtered, else undefined (unknown). */
function expected(config: Config, tree: Map<string, TreeEntry> | undefined): string[] | undefined {
  if (config.files.length > 0) return [...config.files];
  if (tree === undefined) return undefined;
  const filter = makeFilter(config.include, config.exclude);
  return [...tree.keys()].filter(filter);
}

async function cacheCommit(config: Config): Promise<string> {
  const paths = cachePaths(config.cacheDir, config.repo);
  if (isCommitSha(config.revision)) return config.revision;
  try {
    return await readFile(paths.ref(config.revision), "utf8");
  } catch {
    throw new HfgetError(
      "OFFLINE",
      `${repoLabel(config.repo)}@${config.revision} is not in the cache ${config.cacheDir}`,
      { hint: HINT },
    );
  }
}

function result(config: Config, commit: string, path: string, files: FileResult[]): DownloadResult {
  return {
    repo: config.repo.id,
    repoType: config.repo.type,
    revision: config.revision,
    commit,
    path,
    files,
    bytesTotal: files.reduce((n, f) => n + f.size, 0),
    bytesToFetch: 0,
    bytesDownloaded: 0,
    seconds: 0,
    dryRun: config.dryRun,
  };
}

function incomplete(config: Config, commit: string, missing: string[], where: string): HfgetError {
  return new HfgetError(
    "OFFLINE",
    `${repoLabel(config.repo)}@${config.revision} (${commit.slice(0, 12)}) is incomplete in ${where}: ${missing.length} file(s) missing (${sample(missing)})`,
    { hint: HINT },
  );
}

export async function offlineSnapshot(config: Config): Promise<DownloadResult> {
  if (config.localDir !== undefined) return offlineLocalDir(config, config.localDir);
  const paths = cachePaths(config.cacheDir, config.repo);
  const commit = await cacheCommit(config);
  const dir = paths.snapshotDir(commit);
  if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
    throw new HfgetError("OFFLINE", `snapshot ${commit} of ${repoLabel(config.repo)} is not in the cache`, {
      hint: HINT,
    });
  }
  const tree = await readTree(paths.repoDir, commit);
  const want =
    expected(config, tree) ?? (await filesUnder(dir)).filter(makeFilter(config.include, config.exclude));
  const files: FileResult[] = [];
  const missing: string[] = [];
  for (const p of want) {
    const location = paths.snapshotFile(commit, p);
    const st = await stat(location).catch(() => undefined);
    if (st?.isFile())
      files.push({ path: p, size: st.size, status: "cached", location, action: "present", bytesToFetch: 0 });
    else missing.push(p);
  }
  if (missing.length > 0) throw incomplete(config, commit, missing, "the cache");
  return result(config, commit, dir, files);
}

/** A local dir is complete when each expected file is there with huggingface_hub's .metadata beside it. */
async function offlineLocalDir(config: Config, root: string): Promise<DownloadResult> {
  const local = localDirPaths(root);
  const metaRoot = join(root, ".cache", "huggingface");
  const metas = (await filesUnder(join(metaRoot, "download"))).filter((p) => p.endsWith(".metadata"));
  const byPath = new Map<string, string>();
  for (const m of metas) {
    const path = m.slice(0, -".metadata".length);
    const commit = (
      await readFile(join(metaRoot, "download", ...m.split("/")), "utf8").catch(() => "")
    ).split("\n")[0];
    if (commit && (await isFile(local.file(path)))) byPath.set(path, commit);
  }
  if (byPath.size === 0 && config.files.length === 0) {
    throw new HfgetError("OFFLINE", `${root} holds no downloaded files of ${repoLabel(config.repo)}`, {
      hint: HINT,
    });
  }
  const commits = [...new Set(byPath.values())];
  const commit = isCommitSha(config.revision) ? config.revision : (commits[0] ?? config.revision);
  const tree = await readTree(metaRoot, commit);
  const filter = makeFilter(config.include, config.exclude);
  const want = expected(config, tree) ?? [...byPath.keys()].filter(filter);
  const files: FileResult[] = [];
  const missing: string[] = [];
  for (const p of want) {
    const location = local.file(p);
    const st = await lstat(location).catch(() => undefined);
    if (st?.isFile() && byPath.has(p))
      files.push({ path: p, size: st.size, status: "cached", location, action: "present", bytesToFetch: 0 });
    else missing.push(p);
  }
  if (missing.length > 0) throw incomplete(config, commit, missing, root);
  return result(config, commit, root, files);
}

/** `hfget ls` offline: the tree listing when there is one, else what the snapshot holds. */
export async function offlineLs(config: Config): Promise<LsResult> {
  const paths = cachePaths(config.cacheDir, config.repo);
  const commit = await cacheCommit(config);
  const tree = await readTree(paths.repoDir, commit);
  const filter = makeFilter(config.include, config.exclude);
  const entries: LsEntry[] = [];
  if (tree !== undefined) {
    for (const [path, e] of tree) {
      if (!filter(path)) continue;
      const id = e.lfs_sha256 ?? e.blob_id;
      entries.push({
        path,
        size: e.size,
        lfs: e.lfs_sha256 !== undefined,
        hash: e.lfs_sha256 !== undefined ? `sha256:${e.lfs_sha256}` : `sha1:${e.blob_id}`,
        cached: (await stat(paths.blob(id)).catch(() => undefined))?.size === e.size,
      });
    }
  } else {
    const dir = paths.snapshotDir(commit);
    for (const path of (await filesUnder(dir)).filter(filter)) {
      const st = await stat(paths.snapshotFile(commit, path)).catch(() => undefined);
      if (st === undefined) continue;
      const id = (await readlink(paths.snapshotFile(commit, path)).catch(() => "")).split("/").pop() ?? "";
      const lfs = id.length === 64;
      entries.push({ path, size: st.size, lfs, hash: `${lfs ? "sha256" : "sha1"}:${id}`, cached: true });
    }
  }
  return { repo: config.repo, revision: config.revision, commit, files: entries };
}

/**
 * After a successful run: CACHEDIR.TAG at the cache root, and `trees/<commit>.json` when the run
 * selected the whole repo (so huggingface_hub's offline mode, and hfget's, know the full list).
 * Best effort: a run that downloaded every byte does not fail on these.
 */
export async function recordComplete(
  config: Config,
  repoDir: string,
  commit: string,
  all: readonly RepoFile[],
  wholeRepo: boolean,
): Promise<void> {
  const folder = config.localDir === undefined ? repoDir : join(config.localDir, ".cache", "huggingface");
  if (config.localDir === undefined) await writeCachedirTag(config.cacheDir).catch(() => undefined);
  if (wholeRepo) await writeTree(folder, commit, all).catch(() => undefined);
}
