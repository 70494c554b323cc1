import { cachePaths } from "./cache/paths.js";
import type { Config } from "./config.js";
import { makeFilter } from "./glob.js";
import { type PinOptions, pinListing } from "./hub/metadata.js";
import { expectedHash, type RepoFile } from "./hub/types.js";
import { offlineLs } from "./offline.js";
import { planFile } from "./plan/plan.js";
import { survey } from "./plan/survey.js";
import type { RepoRef } from "./repo.js";
import type { Session } from "./session.js";

export interface LsEntry {
  readonly path: string;
  readonly size: number;
  readonly lfs: boolean;
  /** `sha256:<hex>` for LFS files, `sha1:<hex>` (git blob) otherwise: what the download is checked against. */
  readonly hash: string;
  /** The blob is in the cache at the listed size (the plan step's `present` or `link`). */
  readonly cached: boolean;
}

export interface LsResult {
  readonly repo: RepoRef;
  readonly revision: string;
  readonly commit: string;
  readonly files: readonly LsEntry[];
}

/** Lists the files of a repo at a revision, filtered like a download would be. */
export async function ls(
  config: Config,
  session: Session,
  signal?: AbortSignal,
  onSkip?: PinOptions["onSkip"],
): Promise<LsResult> {
  if (config.offline) return offlineLs(config);
  const pinned = await pinListing(session.hubs, config.repo, [{ revision: config.revision, path: "" }], {
    signal,
    ...(onSkip ? { onSkip } : {}),
  });
  const { commit } = pinned;
  const filter = makeFilter(config.include, config.exclude);
  const paths = cachePaths(config.cacheDir, config.repo);
  const picked: RepoFile[] = pinned.files.filter((f) => filter(f.path));
  // Same survey and plan as a download: a blob of another size is not cached.
  const surveys = await survey({ kind: "cache", paths, commit }, picked);
  const files: LsEntry[] = picked.map((f) => {
    const h = expectedHash(f);
    const action = planFile(f, surveys.get(f.path), { force: false }).action;
    return {
      path: f.path,
      size: f.size,
      lfs: f.lfs !== undefined,
      hash: `${h.algorithm === "sha256" ? "sha256" : "sha1"}:${h.hex}`,
      cached: action === "present" || action === "link",
    };
  });
  return { repo: config.repo, revision: config.revision, commit, files };
}
