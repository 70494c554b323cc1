import chalk from "chalk";
import { Command, CommanderError, Option } from "commander";
import { registerCacheCommands } from "./cli-cache.js";
import { buildConfig, type Config, DEFAULTS, type Env, type RawOptions } from "./config.js";
import { download } from "./download.js";
import { EXIT_CODES, HfgetError, isHfgetError, redact } from "./errors.js";
import type { DownloadResult } from "./events.js";
import { formatBytes } from "./format.js";
import { type LsResult, ls } from "./ls.js";
import { makeReporter } from "./progress.js";
import { repoLabel } from "./repo.js";
import { openSession } from "./session.js";

type Out = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

export interface CliIO {
  readonly stdout: Out;
  readonly stderr: Out;
  readonly env: Env;
  /** Where SIGINT/SIGTERM are listened for; tests pass their own. */
  readonly signals?: NodeJS.EventEmitter;
}

const VERSION = "0.1.0";

function commonOptions(cmd: Command): Command {
  return cmd
    .option(
      "--mirror <host|url>",
      "hub endpoint, e.g. hf-mirror.com (default: $HF_ENDPOINT, else https://huggingface.co)",
    )
    .option("--endpoint <url>", "alias of --mirror")
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

interface Flags {
  mirror?: string;
  endpoint?: string;
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
  dryRun?: boolean;
  connections?: string;
  maxFiles?: string;
  chunkSize?: string;
  retries?: string;
  timeout?: string;
}

function toRaw(repoId: string, files: string[], f: Flags): RawOptions {
  return { repoId, files, ...f };
}

function renderLs(r: LsResult, json: boolean): string {
  if (json) {
    return `${JSON.stringify({
      repo: r.repo.id,
      repoType: r.repo.type,
      revision: r.revision,
      commit: r.commit,
      files: r.files,
    })}\n`;
  }
  const width = Math.min(80, Math.max(4, ...r.files.map((f) => f.path.length)));
  const lines = r.files.map(
    (f) =>
      `${f.path.padEnd(width)}  ${formatBytes(f.size).padStart(9)}  ${f.lfs ? "LFS" : "   "}  ${f.cached ? "cached" : "      "}  ${f.hash}`,
  );
  return lines.length > 0 ? `${lines.join("\n")}\n` : "";
}

function renderResult(r: DownloadResult, json: boolean): string {
  if (json) return `${JSON.stringify(r)}\n`;
  return `${r.path}\n`;
}

export async function main(argv: readonly string[], io: CliIO = processIO()): Promise<number> {
  const controller = new AbortController();
  let interrupted = 0;
  const onSignal = () => {
    interrupted++;
    controller.abort(new HfgetError("INTERRUPTED", "interrupted"));
    if (interrupted > 1) process.exit(EXIT_CODES.INTERRUPTED);
  };
  const signals = io.signals ?? process;
  signals.on("SIGINT", onSignal);
  signals.on("SIGTERM", onSignal);
  let exitCode: number = EXIT_CODES.OK;
  let config: Config | undefined;
  const fail = (err: unknown) => {
    const secrets = [config?.token];
    if (isHfgetError(err)) {
      const hint = err.hint ? ` (${err.hint})` : "";
      io.stderr.write(`${chalk.red("hfget: error:")} ${redact(`${err.message}${hint}`, secrets)}\n`);
      exitCode = err.exitCode;
    } else {
      const msg = err instanceof Error ? (err.stack ?? err.message) : String(err);
      io.stderr.write(`hfget: internal error: ${redact(msg, secrets)}\n`);
      exitCode = EXIT_CODES.GENERIC;
    }
  };

  const program = new Command("hfget")
    .description("Download Hugging Face Hub repositories: parallel, resumable, verified.")
    .version(VERSION)
    .usage("<repo_id> [files...] [options]\n       hfget ls <repo_id> [options]")
    .exitOverride()
    // Options after `ls` belong to `ls`, not to the download command.
    .enablePositionalOptions()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(`hfget: ${s}`),
    })
    .showSuggestionAfterError(true);

  commonOptions(program)
    .argument("<repo_id>", "org/name, datasets/org/name, spaces/org/name or a hub URL")
    .argument("[files...]", "only these files (paths in the repo)")
    .option("--local-dir <dir>", "write plain files here instead of the cache")
    .option("--force", "download again even if present")
    .option("--dry-run", "show what would be downloaded")
    .option("--connections <n>", `total connections (default ${DEFAULTS.connections})`)
    .option("--max-files <n>", `files in flight at once (default ${DEFAULTS.maxFiles})`)
    .option("--chunk-size <size>", "Range size for large files, e.g. 16M (default 16MiB)")
    .action(async (repoId: string, files: string[], flags: Flags) => {
      config = buildConfig(toRaw(repoId, files, flags), io.env);
      const session = openSession(config);
      const reporter = makeReporter({
        stream: io.stderr,
        quiet: config.quiet || (config.json && !io.stderr.isTTY),
      });
      try {
        const result = await download(config, session, {
          signal: controller.signal,
          onEvent: (e) => reporter.onEvent(e),
        });
        reporter.stop();
        io.stdout.write(renderResult(result, config.json));
      } catch (err) {
        reporter.stop();
        throw err;
      } finally {
        await session.close();
      }
    });

  commonOptions(
    program
      .command("ls")
      .description("list the files of a repo: size, LFS, the hash they are checked against"),
  )
    .argument("<repo_id>")
    .action(async (repoId: string, flags: Flags) => {
      config = buildConfig(toRaw(repoId, [], flags), io.env);
      const session = openSession(config);
      try {
        const result = await ls(config, session, controller.signal);
        io.stdout.write(renderLs(result, config.json));
        if (!config.json && !config.quiet) {
          const total = result.files.reduce((n, f) => n + f.size, 0);
          const lfs = result.files.filter((f) => f.lfs).length;
          io.stderr.write(
            `${result.files.length} files, ${formatBytes(total)} (${lfs} LFS) in ${repoLabel(result.repo)} at ${result.commit}\n`,
          );
        }
      } finally {
        await session.close();
      }
    });

  registerCacheCommands(program, { ...io, signal: controller.signal });

  try {
    await program.parseAsync(argv as string[]);
  } catch (err) {
    if (err instanceof CommanderError) {
      exitCode = err.exitCode === 0 ? EXIT_CODES.OK : EXIT_CODES.USAGE;
    } else {
      fail(err);
    }
  } finally {
    signals.off("SIGINT", onSignal);
    signals.off("SIGTERM", onSignal);
  }
  if (controller.signal.aborted && exitCode !== EXIT_CODES.OK) exitCode = EXIT_CODES.INTERRUPTED;
  return exitCode;
}

function processIO(): CliIO {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env };
}
