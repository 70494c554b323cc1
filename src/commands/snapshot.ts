import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { Readable } from "node:stream";
import { type Command, Option } from "commander";
import type { ExportResult } from "../cache/export.js";
import { defaultCacheDir } from "../config.js";
import { HfgetError, usageError } from "../errors.js";
import { formatBytes } from "../format.js";
import { parseRepoArg, parseRepoType, repoLabel } from "../repo.js";
import type { CommandContext } from "./context.js";

/**
 * `hfget export` and `hfget import`: thin shells over src/cache/export.ts and import.ts, loaded only
 * when one of them runs (the tar library is not worth loading for every download).
 */
interface ExportFlags {
  repoType?: string;
  revision?: string;
  include?: string[];
  exclude?: string[];
  cacheDir?: string;
  to?: string;
  quiet?: boolean;
  json?: boolean;
}

interface ImportFlags {
  cacheDir?: string;
  localDir?: string;
  quiet?: boolean;
  json?: boolean;
}

export function registerExport(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  program
    .command("export")
    .description("write a cached snapshot (files, blobs, refs, manifest of hashes) to one tar, offline")
    .argument("<repo_id>")
    .addOption(new Option("--repo-type <type>", "repository type").choices(["model", "dataset", "space"]))
    .option("--revision <rev>", "branch, tag, refs/pr/N or commit sha (default main)")
    .option("--include <patterns...>", "only files matching these globs (fnmatch: * crosses /)")
    .option("--exclude <patterns...>", "skip files matching these globs")
    .option("--cache-dir <dir>", "cache root (default: $HF_HUB_CACHE, else $HF_HOME/hub)")
    .requiredOption("--to <file.tar|->", "the archive to write; - for stdout")
    .option("--json", "print the result as JSON (on stderr with --to -)")
    .option("--quiet", "print only errors")
    .action(async (repoArg: string, f: ExportFlags) => {
      const parsed = parseRepoArg(repoArg, f.repoType === undefined ? undefined : parseRepoType(f.repoType));
      if (parsed.target !== undefined) throw usageError("export takes a repo id, not a file URL");
      const opts = {
        cacheDir: f.cacheDir === undefined ? defaultCacheDir(io.env) : resolve(f.cacheDir),
        repo: parsed.repo,
        revision: f.revision ?? parsed.revision ?? "main",
        include: f.include ?? [],
        exclude: f.exclude ?? [],
        signal: ctx.signal,
      };
      const to = f.to!;
      const { exportSnapshot, exportToFile } = await import("../cache/export.js");
      let r: ExportResult;
      if (to === "-") {
        if (io.stdout.isTTY) {
          throw usageError(
            "refusing to write a tar to a terminal",
            "redirect stdout, or pass --to <file.tar>",
          );
        }
        r = await exportSnapshot(opts, io.stdout);
      } else {
        r = await exportToFile(opts, resolve(to));
      }
      const out = to === "-" ? io.stderr : io.stdout;
      if (f.json) {
        out.write(`${JSON.stringify({ ...r, repo: r.repo.id, repoType: r.repo.type, to })}\n`);
      } else if (!f.quiet) {
        io.stderr.write(
          `Exported ${repoLabel(r.repo)}@${r.commit}: ${r.files} files, ${r.blobs} blobs, ${formatBytes(r.bytes)}` +
            `${r.complete ? "" : " (part of the snapshot)"}, refs: ${r.refs.join(", ") || "none"} -> ${to === "-" ? "stdout" : to}\n`,
        );
      }
    });
}

export function registerImport(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  program
    .command("import")
    .description("verify and add a snapshot written by `hfget export` to the cache (or a local dir)")
    .argument("<archive>", "the tar file; - for stdin")
    .option("--cache-dir <dir>", "cache root (default: $HF_HUB_CACHE, else $HF_HOME/hub)")
    .option("--local-dir <dir>", "write plain files into this folder instead of the cache")
    .option("--json", "print the result as JSON on stdout")
    .option("--quiet", "print only errors")
    .action(async (archive: string, f: ImportFlags) => {
      if (f.cacheDir !== undefined && f.localDir !== undefined) {
        throw usageError("pass --cache-dir or --local-dir, not both");
      }
      let input: Readable;
      if (archive === "-") {
        const stdin = io.stdin ?? process.stdin;
        input = stdin instanceof Readable ? stdin : Readable.from(stdin);
      } else {
        const path = resolve(archive);
        const st = await stat(path).catch((err: unknown) => {
          throw new HfgetError("DISK", `cannot read ${path}: ${(err as { code?: string }).code ?? err}`, {
            hint: "check the archive's path",
          });
        });
        if (!st.isFile()) throw usageError(`${path} is not a file`);
        input = createReadStream(path);
      }
      const { importSnapshot } = await import("../cache/import.js");
      const r = await importSnapshot(
        {
          cacheDir: f.cacheDir === undefined ? defaultCacheDir(io.env) : resolve(f.cacheDir),
          localDir: f.localDir === undefined ? undefined : resolve(f.localDir),
          signal: ctx.signal,
          onLockWait: (lock) => {
            if (!f.quiet) io.stderr.write(`waiting for ${lock}: another process holds it\n`);
          },
        },
        input,
      );
      if (f.json) {
        io.stdout.write(`${JSON.stringify({ ...r, repo: r.repo.id, repoType: r.repo.type })}\n`);
      } else if (!f.quiet) {
        const reused = r.alreadyPresent > 0 ? ` (${r.alreadyPresent} already there)` : "";
        io.stderr.write(
          `Imported ${repoLabel(r.repo)}@${r.commit}: ${r.files} files, ${r.blobs} blobs${reused}, ${formatBytes(r.bytes)} verified` +
            `${r.refs.length > 0 ? `, refs: ${r.refs.join(", ")}` : ""}${r.complete ? "" : " (part of the snapshot)"}\n`,
        );
        io.stdout.write(`${r.path}\n`);
      }
    });
}
