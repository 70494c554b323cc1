import { type Command, Option } from "commander";
import { DEFAULTS, type RawOptions } from "../config.js";

/** Repeatable flags: each occurrence is kept, in order. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Options every repo-facing command takes (download, ls, …). */
export function commonOptions(cmd: Command): Command {
  return cmd
    .option(
      "--mirror <host|url,...>",
      "hub endpoint(s), e.g. hf-mirror.com; repeat or comma-separate for several, in preference order (default: $HFGET_MIRRORS, else $HF_ENDPOINT, else https://huggingface.co)",
      collect,
    )
    .option("--endpoint <url,...>", "alias of --mirror", collect)
    .option("--token <token>", "access token (default: $HF_TOKEN, else $HF_HOME/token)")
    .option("--revision <rev>", "branch, tag, refs/pr/N or commit sha", undefined)
    .addOption(new Option("--repo-type <type>", "repository type").choices(["model", "dataset", "space"]))
    .option("--include <patterns...>", "only files matching these globs (fnmatch: * crosses /)")
    .option("--exclude <patterns...>", "skip files matching these globs")
    .option("--cache-dir <dir>", "huggingface_hub cache root (default: $HF_HUB_CACHE, else $HF_HOME/hub)")
    .option("--json", "machine-readable output on stdout")
    .option("--quiet", "no progress, only errors on stderr")
    .option("--retries <n>", `retries per request (default ${DEFAULTS.retries})`)
    .option("--timeout <seconds>", `connect/stall timeout (default ${DEFAULTS.timeoutSeconds})`);
}

/** Flag values as commander hands them over. */
export interface Flags {
  mirror?: string[];
  endpoint?: string[];
  limitRate?: string;
  token?: string;
  revision?: string;
  repoType?: string;
  include?: string[];
  exclude?: string[];
  cacheDir?: string;
  localDir?: string;
  json?: boolean;
  quiet?: boolean;
  force?: boolean;
  forceDownload?: boolean;
  dryRun?: boolean;
  connections?: string;
  maxFiles?: string;
  maxWorkers?: string;
  chunkSize?: string;
  retries?: string;
  timeout?: string;
}

export function toRaw(repoId: string, files: string[], f: Flags): RawOptions {
  return { repoId, files, ...f };
}
