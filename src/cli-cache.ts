import { resolve } from "node:path";
import type { Command } from "commander";
import type { CleanPlan } from "./cache/clean.js";
import { type CacheScan, formatCacheSize, formatTimeSince, scanCache } from "./cache/scan.js";
import type { CacheProblem } from "./cache/verify-cache.js";
import type { CommandContext } from "./commands/context.js";
import { defaultCacheDir, type Env } from "./config.js";
import { HfgetError } from "./errors.js";
import { formatBytes, formatRate } from "./format.js";
import { parseRepoArg } from "./repo.js";

/**
 * `hfget cache ls|verify|rm|prune|dedupe`: the CLI side of src/cache/scan.ts, clean.ts, dedupe.ts and
 * verify-cache.ts. All but scan.ts are loaded when their command runs: a download never needs them
 * (verify's hashing threads, the cleaner), and every module loaded costs startup time and memory.
 */
type Out = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

export interface CacheCliContext {
  readonly stdout: Out;
  readonly stderr: Out;
  readonly env: Env;
  readonly signal: AbortSignal;
}

/** huggingface_hub's `tabulate`: columns padded to the widest cell, one space apart, a dash rule. */
export function tabulate(headers: string[], rows: string[][], right: ReadonlySet<number>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(" ");
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/**
 * huggingface_hub's `_truncate_columns`: shrink the widest column one character at a time until
 * the table fits `columns` (floors: the header, and 4 for "x..."). Returns whether a cell was cut.
 */
export function truncateColumns(headers: string[], rows: string[][], columns: number): boolean {
  if (rows.length === 0) return false;
  const caps = headers.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const budget = columns - Math.max(0, headers.length - 1);
  if (caps.reduce((a, b) => a + b, 0) <= budget) return false;
  const floors = headers.map((h) => Math.max(h.length, 4));
  while (caps.reduce((a, b) => a + b, 0) > budget) {
    let widest = -1;
    for (let i = 0; i < caps.length; i++) {
      if (caps[i]! > floors[i]! && (widest < 0 || caps[i]! > caps[widest]!)) widest = i;
    }
    if (widest < 0) break;
    caps[widest]!--;
  }
  let cut = false;
  for (const row of rows) {
    for (let c = 0; c < row.length; c++) {
      if (row[c]!.length > caps[c]!) {
        cut = true;
        row[c] = `${row[c]!.slice(0, caps[c]! - 3)}...`;
      }
    }
  }
  return cut;
}

/** `hf cache ls [--revisions] [--format json]` of huggingface_hub 1.28, same rows, order and keys. */
export function renderCacheLs(
  scan: CacheScan,
  revisions: boolean,
  json: boolean,
  columns: number | undefined,
  now = Date.now() / 1000,
): string {
  const repos = [...scan.repos].sort((a, b) => (a.cacheId < b.cacheId ? -1 : a.cacheId > b.cacheId ? 1 : 0));
  const day = (ts: number) => formatTimeSince(ts, now);
  let items: Record<string, unknown>[];
  let out = "";
  if (revisions) {
    items = repos.flatMap((r) =>
      [...r.revisions]
        .sort((a, b) => (a.commit < b.commit ? -1 : 1))
        .map((v) => ({
          id: r.cacheId,
          repo_id: r.id,
          repo_type: r.type,
          revision: v.commit,
          snapshot_path: v.snapshotPath,
          size: formatCacheSize(v.sizeOnDisk),
          last_modified: day(v.lastModified),
          refs: [...v.refs].sort(),
        })),
    );
  } else {
    items = repos.map((r) => ({
      id: r.cacheId,
      repo_id: r.id,
      repo_type: r.type,
      size: formatCacheSize(r.sizeOnDisk),
      last_accessed: day(r.lastAccessed),
      last_modified: day(r.lastModified),
      refs: [...new Set(r.revisions.flatMap((v) => v.refs))].sort(),
    }));
  }
  if (json) return `${pyDumps(items)}\n`;
  if (items.length === 0) return "No results found.\n";
  const headers = revisions
    ? ["id", "revision", "size", "last_modified", "refs"]
    : ["id", "size", "last_accessed", "last_modified", "refs"];
  const rows = items.map((it) =>
    headers.map((h) => {
      const v = it[h];
      return Array.isArray(v) ? v.join(", ") : String(v ?? "");
    }),
  );
  const upper = headers.map((h) => h.toUpperCase());
  if (columns !== undefined) truncateColumns(upper, rows, columns);
  out += `${tabulate(upper, rows, new Set([2 - (revisions ? 0 : 1)]))}\n`;
  const revCount = revisions ? items.length : repos.reduce((n, r) => n + r.revisions.length, 0);
  const total = revisions
    ? repos.reduce((n, r) => n + r.revisions.reduce((m, v) => m + v.sizeOnDisk, 0), 0)
    : scan.sizeOnDisk;
  out += `\nFound ${repos.length} repo(s) for a total of ${revCount} revision(s) and ${formatCacheSize(total)} on disk.\n`;
  return out;
}

/** Python's `json.dumps` default layout (`", "` and `": "`), so scripts comparing outputs see the same bytes. */
export function pyDumps(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(pyDumps).join(", ")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.entries(v)
      .map(([k, x]) => `${pyDumps(k)}: ${pyDumps(x)}`)
      .join(", ")}}`;
  }
  // Python escapes non-ASCII by default (ensure_ascii).
  return JSON.stringify(v).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

export function renderProblem(p: CacheProblem): string {
  return `${p.kind}: ${p.path}: ${p.detail}${p.movedTo ? ` (moved to ${p.movedTo})` : ""}`;
}

interface CacheFlags {
  cacheDir?: string;
  json?: boolean;
  revisions?: boolean;
  revision?: string;
  fix?: boolean;
  quiet?: boolean;
  repoType?: string;
  truncate?: boolean;
  yes?: boolean;
  dryRun?: boolean;
  olderThan?: string;
}

/** What a plan removes, one line each, as printed before asking. */
export function renderPlan(plan: CleanPlan): string {
  const lines: string[] = [];
  for (const it of plan.items) {
    switch (it.kind) {
      case "repo":
        lines.push(`  repo      ${it.repo} (${formatCacheSize(it.bytes)}) ${it.path}`);
        break;
      case "revision":
        lines.push(
          `  revision  ${it.repo}@${it.commit}${it.refs.length > 0 ? ` (refs: ${it.refs.join(", ")})` : " (detached)"}`,
        );
        break;
      case "blob":
      case "partial":
        lines.push(`  ${it.kind.padEnd(9)} ${it.path} (${formatCacheSize(it.bytes)})`);
        break;
      case "lock":
        lines.push(`  lock      ${it.path}`);
        break;
    }
  }
  return lines.length > 0 ? `${lines.join("\n")}\n` : "";
}

function summary(plan: CleanPlan): string {
  const n = (k: string) => plan.items.filter((i) => i.kind === k).length;
  const parts = [
    [n("repo"), "repo(s)"],
    [n("revision"), "revision(s)"],
    [n("blob"), "unreferenced blob(s)"],
    [n("partial"), "partial file(s)"],
    [n("lock"), "lock file(s)"],
  ]
    .filter(([c]) => (c as number) > 0)
    .map(([c, w]) => `${c} ${w}`);
  return parts.join(", ");
}

/** One line from stdin (undefined at end of input), like click.confirm reading its answer. */
function readAnswer(): Promise<string | undefined> {
  return new Promise((resolvePromise) => {
    const stdin = process.stdin;
    let buf = "";
    const done = (v: string | undefined) => {
      stdin.off("data", onData);
      stdin.off("end", onEnd);
      stdin.off("error", onEnd);
      stdin.pause();
      resolvePromise(v);
    };
    const onData = (d: Buffer | string) => {
      buf += d.toString();
      const nl = buf.indexOf("\n");
      if (nl >= 0) done(buf.slice(0, nl));
    };
    const onEnd = () => done(buf === "" ? undefined : buf);
    stdin.on("data", onData);
    stdin.once("end", onEnd);
    stdin.once("error", onEnd);
    stdin.resume();
  });
}

/** SUBCOMMANDS entry (src/commands/index.ts). */
export function registerCache(program: Command, c: CommandContext): void {
  registerCacheCommands(program, { ...c.io, signal: c.signal });
}

export function registerCacheCommands(program: Command, ctx: CacheCliContext): void {
  const root = (f: CacheFlags) => (f.cacheDir === undefined ? defaultCacheDir(ctx.env) : resolve(f.cacheDir));
  const cache = program
    .command("cache")
    .description("inspect, check and clean the local cache (ls, verify, rm, prune, dedupe)");
  cache
    .command("ls")
    .description("list cached repos like `hf cache ls`: size (shared blobs once), access times, refs")
    .option("--revisions", "one row per revision")
    .option("--json", "JSON array with the keys of `hf cache ls --format json`")
    .option("--no-truncate", "do not cut cells to fit the terminal width")
    .option("--cache-dir <dir>", "cache root (default: $HF_HUB_CACHE, else $HF_HOME/hub)")
    .action(async (f: CacheFlags) => {
      const scan = await scanCache(root(f));
      // Like Python's shutil.get_terminal_size: $COLUMNS, else the terminal, else 80.
      const columns = Number(ctx.env.COLUMNS) > 0 ? Number(ctx.env.COLUMNS) : (ctx.stdout.columns ?? 80);
      ctx.stdout.write(
        renderCacheLs(
          scan,
          f.revisions ?? false,
          f.json ?? false,
          f.truncate === false ? undefined : columns,
        ),
      );
      if (scan.warnings.length > 0) {
        ctx.stderr.write(`Warning: Found ${scan.warnings.length} cache inconsistencies:\n`);
        for (const w of scan.warnings) ctx.stderr.write(`  ${w}\n`);
      }
    });
  /**
   * Prints the plan, then (unless --dry-run) asks like `hf cache rm` (click.confirm, default No):
   * the answer is read from stdin whether or not it is a terminal, and end of input aborts with
   * nothing deleted, so a script must pass --yes.
   */
  const run = async (plan: CleanPlan, f: CacheFlags, question: string): Promise<void> => {
    for (const w of plan.warnings) ctx.stderr.write(`Warning: ${w}\n`);
    if (plan.items.length === 0) {
      ctx.stdout.write("Nothing to delete.\n");
      return;
    }
    ctx.stdout.write(`About to delete ${summary(plan)} totalling ${formatCacheSize(plan.bytes)}.\n`);
    ctx.stdout.write(renderPlan(plan));
    if (f.dryRun) {
      ctx.stdout.write("Dry run: no files were deleted.\n");
      return;
    }
    if (!f.yes) {
      ctx.stderr.write(`${question} [y/N]: `);
      const answer = (await readAnswer())?.trim().toLowerCase();
      if (answer === undefined) ctx.stderr.write("\n");
      if (answer !== "y" && answer !== "yes") {
        // `hf cache rm` (huggingface_hub 1.28) prints "Aborted!" and exits 1 on "n", an empty answer
        // or end of input, terminal or not: the same exit code, so scripts see one behaviour.
        throw new HfgetError("ABORTED", "aborted: nothing was deleted", {
          hint: "answer y, or pass --yes to skip the question",
        });
      }
    }
    const { executeCleanPlan } = await import("./cache/clean.js");
    const r = await executeCleanPlan(plan);
    for (const w of r.warnings) ctx.stderr.write(`Warning: ${w}\n`);
    ctx.stdout.write(`Deleted ${summary(plan)}; freed ${formatCacheSize(r.bytes)}.\n`);
  };
  cache
    .command("rm")
    .description("remove repos or revisions (repo@rev) and the blobs nothing else uses")
    .argument("<targets...>", "repo ids, or repo@revision (commit sha or ref name)")
    .option("--repo-type <type>", "model, dataset or space")
    .option("-y, --yes", "do not ask for confirmation")
    .option("--dry-run", "print what would be deleted, delete nothing")
    .option("--cache-dir <dir>", "cache root (default: $HF_HUB_CACHE, else $HF_HOME/hub)")
    .action(async (targets: string[], f: CacheFlags) => {
      const parsed = targets.map((t) => {
        const at = t.lastIndexOf("@");
        const id = at > 0 ? t.slice(0, at) : t;
        const revision = at > 0 ? t.slice(at + 1) : undefined;
        return { repo: parseRepoArg(id, f.repoType as never).repo, revision };
      });
      const { planRm } = await import("./cache/clean.js");
      await run(await planRm(root(f), parsed), f, "Proceed with deletion?");
    });
  cache
    .command("prune")
    .description(
      "remove detached revisions, unreferenced blobs, day-old partial downloads, unused empty lock files",
    )
    .option("--older-than <age>", "also remove repos not accessed for this long (30d, 12h, 2w)")
    .option("-y, --yes", "do not ask for confirmation")
    .option("--dry-run", "print what would be deleted, delete nothing")
    .option("--cache-dir <dir>", "cache root (default: $HF_HUB_CACHE, else $HF_HOME/hub)")
    .action(async (f: CacheFlags) => {
      const { parseAge, planPrune } = await import("./cache/clean.js");
      const olderThanMs = f.olderThan === undefined ? undefined : parseAge(f.olderThan);
      await run(await planPrune(root(f), { olderThanMs }), f, "Proceed?");
    });
  cache
    .command("dedupe")
    .description("hard-link identical LFS blobs (same sha256) under different repos, after re-hashing both")
    .option("--dry-run", "print what would be linked, change nothing")
    .option("--cache-dir <dir>", "cache root (default: $HF_HUB_CACHE, else $HF_HOME/hub)")
    .action(async (f: CacheFlags) => {
      const { dedupeCache } = await import("./cache/dedupe.js");
      const r = await dedupeCache(root(f), { dryRun: f.dryRun });
      for (const w of r.warnings) ctx.stderr.write(`Warning: ${w}\n`);
      for (const l of r.links)
        ctx.stdout.write(
          `${f.dryRun ? "would link" : "linked"} ${l.replaced} -> ${l.keep} (${formatCacheSize(l.bytes)})\n`,
        );
      ctx.stdout.write(
        `${f.dryRun ? "Dry run: would save" : "Saved"} ${formatCacheSize(r.bytesSaved)} (${r.bytesSaved} bytes) in ${r.links.length} link(s).\n`,
      );
    });
  cache
    .command("verify")
    .description("re-hash every blob against its name, check snapshot links; exit 5 on any problem")
    .argument("[repo_id]", "only this repo")
    .option("--revision <rev>", "only the blobs of this revision (needs repo_id)")
    .option("--repo-type <type>", "model, dataset or space")
    .option("--fix", "move bad blobs into <cache>/.hfget-quarantine/ so the next download fetches them again")
    .option("--cache-dir <dir>", "cache root (default: $HF_HUB_CACHE, else $HF_HOME/hub)")
    .option("--json", "problems and totals as JSON on stdout")
    .option("--quiet", "no progress")
    .action(async (repoId: string | undefined, f: CacheFlags) => {
      const repo = repoId === undefined ? undefined : parseRepoArg(repoId, f.repoType as never).repo;
      if (f.revision !== undefined && repo === undefined) {
        throw new HfgetError("USAGE", "--revision needs a repo_id", {
          hint: "hfget cache verify org/name --revision main",
        });
      }
      const tty = ctx.stderr.isTTY === true && !f.quiet && !f.json;
      let total = 0;
      let done = 0;
      let last = 0;
      const { verifyCache } = await import("./cache/verify-cache.js");
      const started = Date.now();
      const result = await verifyCache(root(f), {
        repo,
        revision: f.revision,
        fix: f.fix,
        signal: ctx.signal,
        onEvent: (e) => {
          if (e.type === "verify-start") total = e.bytes;
          else if (e.type === "verify-bytes") {
            done += e.bytes;
            if (tty && Date.now() - last > 200) {
              last = Date.now();
              const rate = done / Math.max(0.001, (Date.now() - started) / 1000);
              ctx.stderr.write(
                `\rverifying ${formatBytes(done)} of ${formatBytes(total)} (${formatRate(rate)})   `,
              );
            }
          } else if (!f.json) {
            if (tty) ctx.stderr.write("\r\x1b[K");
            ctx.stdout.write(`${renderProblem(e.problem)}\n`);
          }
        },
      });
      if (tty) ctx.stderr.write("\r\x1b[K");
      if (f.json) ctx.stdout.write(`${JSON.stringify(result)}\n`);
      else if (!f.quiet) {
        const rate = result.seconds > 0 ? `, ${formatRate(result.bytes / result.seconds)}` : "";
        ctx.stderr.write(
          `checked ${result.blobs} blob(s), ${formatBytes(result.bytes)} in ${result.seconds.toFixed(1)}s${rate}: ${result.problems.length} problem(s)\n`,
        );
      }
      if (result.problems.length > 0) {
        throw new HfgetError(
          "VERIFY_FAILED",
          `${result.problems.length} problem(s) in the cache ${root(f)}`,
          {
            hint: f.fix
              ? "bad blobs were moved aside; rerun the download to fetch them again"
              : "rerun with --fix to move bad blobs aside",
          },
        );
      }
    });
}
