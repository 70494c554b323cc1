// The downloaders under test, as commands: hfget (the CLI with its defaults), aria2c fed the resolved URL
// list the way hf-mirror's hfd script does (tree listing with curl + jq, then aria2c -i, timed together as
// one shell command), and curl (one stream, big files only).
import { spawnSync } from "node:child_process";
import { readdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Dataset } from "./data.js";
import type { BenchRepoRef } from "./hub.js";
import { PROJECT_ROOT } from "./util.js";

export type ToolName = "hfget" | "hfget-node" | "aria2c" | "curl";
export const ALL_TOOLS: readonly ToolName[] = ["hfget", "hfget-node", "aria2c", "curl"];

/** hfget and its `node bin/hfget.js` run: both are hfget for the targets. */
export function isHfget(t: ToolName): boolean {
  return t === "hfget" || t === "hfget-node";
}

export type HfgetTarget = "local-dir" | "cache-dir";

export interface RunContext {
  hubUrl: string;
  repo: BenchRepoRef;
  dataset: Dataset;
  /** Empty directory the tool downloads into. */
  outDir: string;
  /** Scratch space for the tool's helper files (URL lists, headers), outside outDir. */
  scratchDir: string;
  /** For hfget: --local-dir (default) or --cache-dir. */
  hfgetTarget: HfgetTarget;
  /** The run will be killed and rerun in the same directory. */
  resume: boolean;
  /**
   * More hubs serving the same repo (the mirrors scenario): aria2c gets each file's resolve URL on
   * every hub as tab-separated URIs of one input line; the listing still comes from `hubUrl`.
   */
  extraHubUrls?: readonly string[];
}

export interface ToolCommand {
  cmd: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

export interface Tool {
  name: ToolName;
  /** Why the tool cannot run this dataset, or undefined if it can. */
  unsupported(ds: Dataset): string | undefined;
  command(ctx: RunContext): ToolCommand;
  /** Where the repo's files landed: `<root>/<path>`. */
  outputRoot(ctx: RunContext, stdout: string): Promise<string>;
  /** Files the tool may leave beside the repo's files that are not output (bookkeeping). */
  isBookkeeping(ctx: RunContext, relPath: string): boolean;
}

/** The environment the tools run in: no proxies (everything is on 127.0.0.1), no hub settings leaking in. */
function cleanEnv(ctx: RunContext): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined) continue;
    if (/proxy/i.test(k) || /^(HF_|HUGGINGFACE_)/.test(k) || k.startsWith("npm_")) continue;
    env[k] = v;
  }
  env.NO_PROXY = "127.0.0.1,localhost";
  env.no_proxy = "127.0.0.1,localhost";
  // A token or cache from the user's HF_HOME must not change what hfget does.
  env.HF_HOME = join(ctx.scratchDir, "hf-home");
  env.HF_HUB_DISABLE_TELEMETRY = "1";
  env.NO_COLOR = "1";
  return env;
}

function repoUrlPrefix(repo: BenchRepoRef): string {
  return repo.type === "dataset" ? `datasets/${repo.id}` : repo.id;
}

/** The URL of a file through the hub's resolve endpoint (what hfd feeds aria2c), path segments encoded. */
export function resolveUrl(hubUrl: string, repo: BenchRepoRef, path: string, revision = "main"): string {
  const enc = path.split("/").map(encodeURIComponent).join("/");
  return `${hubUrl}/${repoUrlPrefix(repo)}/resolve/${encodeURIComponent(revision)}/${enc}`;
}

export const HFGET_BIN = join(PROJECT_ROOT, "bin", "hfget.js");

function hfgetArgs(ctx: RunContext): string[] {
  const args = [ctx.repo.id, "--mirror", ctx.hubUrl];
  if (ctx.repo.type !== "model") args.push("--repo-type", ctx.repo.type);
  args.push(ctx.hfgetTarget === "local-dir" ? "--local-dir" : "--cache-dir", ctx.outDir, "--quiet");
  // For experiments only (e.g. HFGET_BENCH_ARGS="--connections 4"); the reported runs leave it unset.
  args.push(...(process.env.HFGET_BENCH_ARGS ?? "").split(" ").filter((a) => a !== ""));
  return args;
}

/**
 * Extra node options for the `node bin/hfget.js` run, from HFGET_BENCH_NODE_ARGS (space-separated), e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile hfget inside a scenario. Empty by default.
 */
function benchNodeArgs(): string[] {
  return (process.env.HFGET_BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
}

const hfget: Tool = {
  name: "hfget",
  unsupported: () => undefined,
  command(ctx) {
    // Executed the way the installed `hfget` command is: through its shebang (whose V8 flags, if any,
    // apply only then). `env` finds this same node first.
    const env = cleanEnv(ctx);
    env.PATH = `${dirname(process.execPath)}:${env.PATH ?? ""}`;
    return { cmd: HFGET_BIN, args: hfgetArgs(ctx), env };
  },
  async outputRoot(ctx, stdout) {
    if (ctx.hfgetTarget === "local-dir") return ctx.outDir;
    // --cache-dir: stdout is the snapshot path; else find the only snapshot.
    const printed = stdout.trim().split("\n").pop()?.trim() ?? "";
    if (printed.startsWith(ctx.outDir)) return printed;
    const repoDir = `${ctx.repo.type}s--${ctx.repo.id.replaceAll("/", "--")}`;
    const snaps = join(ctx.outDir, repoDir, "snapshots");
    const entries = await readdir(snaps).catch(() => [] as string[]);
    return join(snaps, entries[0] ?? "missing-snapshot");
  },
  isBookkeeping(ctx, rel) {
    // Leftover .incomplete files are never bookkeeping: they are reported as extras.
    if (rel.endsWith(".incomplete")) return false;
    if (ctx.hfgetTarget === "local-dir") return rel.startsWith(".cache/huggingface/");
    return /^[^/]+\/(blobs|refs)\//.test(rel) || rel.startsWith(".locks/");
  },
};

/** hfget started as `node bin/hfget.js` (as `npx hfget` and scripts do): no shebang flag applies. */
const hfgetNode: Tool = {
  ...hfget,
  name: "hfget-node",
  command(ctx) {
    return {
      cmd: process.execPath,
      // HFGET_BENCH_NODE_BIN: another build's bin/hfget.js (A/B against a base commit in one run).
      args: [...benchNodeArgs(), process.env.HFGET_BENCH_NODE_BIN ?? HFGET_BIN, ...hfgetArgs(ctx)],
      env: cleanEnv(ctx),
    };
  },
};

/**
 * hfd's download step: list the tree (following Link: rel="next" pages) with curl, turn it into an aria2c
 * input file with jq (URL + `out=` line per file, so nested paths land nested), then exec aria2c with
 * hfd's flags. All of it runs under one GNU time, so the listing is timed like hfget's. With
 * EXTRA_HUBS (space-separated), each file's line holds its resolve URL on $HUB and on each of them,
 * tab-separated (aria2c's several URIs for one file).
 */
const ARIA2_SCRIPT = `set -euo pipefail
url="$HUB/api/$API_KIND/$REPO_ID/tree/main?recursive=true"
: > "$SCRATCH/tree.jsonl"
pages=0
while [ -n "$url" ]; do
  pages=$((pages + 1))
  if [ "$pages" -gt 10000 ]; then echo "listing: more than 10000 pages" >&2; exit 3; fi
  curl -q -sS --fail -H 'Accept-Encoding: identity' -D "$SCRATCH/headers.txt" "$url" >> "$SCRATCH/tree.jsonl"
  echo >> "$SCRATCH/tree.jsonl"
  url=$(tr -d '\\r' < "$SCRATCH/headers.txt" | grep -i '^link:' | grep -o '<[^>]*>; *rel="next"' | sed 's/^<//; s/>.*$//' || true)
  case "$url" in /*) url="$HUB$url" ;; esac
done
jq -r --arg hubs "$HUB \${EXTRA_HUBS:-}" --arg rest "/$REPO_PREFIX/resolve/main/" \\
  '($hubs | split(" ") | map(select(. != ""))) as $b | .[] | select(.type == "file")
   | (.path | split("/") | map(@uri) | join("/")) as $p
   | "\\([$b[] | "\\(.)\\($rest)\\($p)"] | join("\\t"))\\n  out=\\(.path)"' \\
  "$SCRATCH/tree.jsonl" > "$SCRATCH/list.txt"
exec aria2c $ARIA2_EXTRA --no-conf -x16 -s16 -j16 -k1M -c --file-allocation=none --auto-file-renaming=false \\
  --allow-overwrite=true --console-log-level=error --summary-interval=0 --download-result=hide \\
  --show-console-readout=false -d "$OUT" -i "$SCRATCH/list.txt"
`;

const aria2c: Tool = {
  name: "aria2c",
  unsupported: () => undefined,
  command(ctx) {
    const env = cleanEnv(ctx);
    env.HUB = ctx.hubUrl;
    env.API_KIND = `${ctx.repo.type}s`;
    env.REPO_ID = ctx.repo.id;
    env.REPO_PREFIX = repoUrlPrefix(ctx.repo);
    env.OUT = ctx.outDir;
    env.SCRATCH = ctx.scratchDir;
    // aria2c saves its control file every 60 s by default; killed before that, `-c` on the rerun trusts
    // the sparse file's length and the output is corrupt. For the resume test, save it every second.
    env.ARIA2_EXTRA = ctx.resume ? "--auto-save-interval=1" : "";
    env.EXTRA_HUBS = (ctx.extraHubUrls ?? []).join(" ");
    return { cmd: "/bin/bash", args: ["-c", ARIA2_SCRIPT], env };
  },
  outputRoot: async (ctx) => ctx.outDir,
  // A finished download leaves no .aria2 control file; one left over is reported as an extra file.
  isBookkeeping: () => false,
};

const curl: Tool = {
  name: "curl",
  unsupported: (ds) =>
    ds.files.length === 1 && ds.files[0]?.lfs === true ? undefined : "curl runs for single big files only",
  command(ctx) {
    const file = ctx.dataset.files[0];
    if (file === undefined) throw new Error("empty dataset");
    const args = [
      "-q",
      "-sS",
      "--fail",
      "-L",
      "-H",
      "Accept-Encoding: identity",
      "--create-dirs",
      "-o",
      join(ctx.outDir, file.path),
      resolveUrl(ctx.hubUrl, ctx.repo, file.path),
    ];
    return { cmd: "/usr/bin/curl", args, env: cleanEnv(ctx) };
  },
  outputRoot: async (ctx) => ctx.outDir,
  isBookkeeping: () => false,
};

export const TOOLS: Record<ToolName, Tool> = { hfget, "hfget-node": hfgetNode, aria2c, curl };

/** Whether `node bin/hfget.js` starts at all (it is being written); the reason if not. */
export function hfgetProblem(): string | undefined {
  const res = spawnSync(process.execPath, [HFGET_BIN, "--help"], { encoding: "utf8", timeout: 30_000 });
  if (res.status === 0) return undefined;
  const why = (res.stderr || res.stdout || String(res.error ?? ""))
    .trim()
    .split("\n")
    .slice(0, 3)
    .join(" | ");
  return `\`node bin/hfget.js --help\` exited ${res.status ?? res.signal}: ${why.slice(0, 300)}`;
}
