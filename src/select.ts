// Which listed files a run fetches: positional names, a pasted URL's path, --include/--exclude;
// whole-listing (selectFiles) or a page at a time while the listing streams (pageSelector).
import type { Config } from "./config.js";
import { HfgetError } from "./errors.js";
import { makeFilter } from "./glob.js";
import type { RepoFile } from "./hub/types.js";
import { repoLabel } from "./repo.js";

/** What a pasted URL's path narrows the run to: one file (blob/resolve) or a folder (tree). */
export function urlFilter(config: Config, path: string): ((f: RepoFile) => boolean) | undefined {
  if (config.urlTarget === undefined || path === "") return undefined;
  if (config.urlTarget.kind === "file") return (f) => f.path === path;
  const prefix = `${path.replace(/\/+$/, "")}/`;
  return (f) => f.path.startsWith(prefix);
}

/** Picks the files to fetch: positional names exactly, else the include/exclude globs. */
export function selectFiles(all: readonly RepoFile[], config: Config, urlPath = ""): RepoFile[] {
  const inUrl = urlFilter(config, urlPath);
  if (inUrl !== undefined) {
    const named = all.filter(inUrl);
    if (named.length === 0) throw noUrlTarget(config, urlPath);
    const filter = makeFilter(config.include, config.exclude);
    const extra = config.files.length > 0 ? selectFiles(all, { ...config, urlTarget: undefined }) : [];
    const seen = new Set(extra.map((f) => f.path));
    return [...named.filter((f) => filter(f.path) && !seen.has(f.path)), ...extra];
  }
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
  const picked = all.filter((f) => filter(f.path));
  if (picked.length === 0) checkSomeMatched(config, all.length);
  return picked;
}

function noUrlTarget(config: Config, urlPath: string): HfgetError {
  const what = config.urlTarget?.kind === "file" ? "no file" : "no folder";
  return new HfgetError(
    "ENTRY_NOT_FOUND",
    `${repoLabel(config.repo)}@${config.revision}: ${what} ${JSON.stringify(urlPath)}`,
    { hint: "run `hfget ls` to see the files" },
  );
}

/** Nothing of `listed` files was picked: an error when globs did it. */
function checkSomeMatched(config: Config, listed: number): void {
  if (listed === 0 || (config.include.length === 0 && config.exclude.length === 0)) return;
  // huggingface-cli only warns and writes an empty snapshot; a script is better served by an error.
  const globs = [
    ...(config.include.length > 0 ? [`--include ${config.include.join(" ")}`] : []),
    ...(config.exclude.length > 0 ? [`--exclude ${config.exclude.join(" ")}`] : []),
  ].join(" ");
  throw new HfgetError(
    "ENTRY_NOT_FOUND",
    `no file of ${repoLabel(config.repo)}@${config.revision} matches ${globs} (${listed} files listed)`,
    { hint: "run `hfget ls` to see the files; * crosses / as in fnmatch" },
  );
}

/** selectFiles a page at a time: what a run picks while the listing still streams. */
export interface PageSelector {
  /** The files of this page the run fetches. */
  pick(page: readonly RepoFile[]): RepoFile[];
  /** The listing is whole (`listed` files): throws selectFiles' error when nothing was selected. */
  finish(listed: number): void;
}

/**
 * selectFiles for a run without positional names (those need the whole listing to say which are
 * missing): the URL's path and the include/exclude globs decide per file, so per page.
 */
export function pageSelector(config: Config, urlPath = ""): PageSelector {
  if (config.files.length > 0) throw new Error("internal: pageSelector with positional files");
  const inUrl = urlFilter(config, urlPath);
  const filter = makeFilter(config.include, config.exclude);
  let named = 0;
  let picked = 0;
  return {
    pick(page) {
      const inside = inUrl === undefined ? page : page.filter(inUrl);
      named += inside.length;
      const out = inside.filter((f) => filter(f.path));
      picked += out.length;
      return out;
    },
    finish(listed) {
      if (inUrl !== undefined && named === 0) throw noUrlTarget(config, urlPath);
      if (inUrl === undefined && picked === 0) checkSomeMatched(config, listed);
    },
  };
}
