import type { Command } from "commander";
import { buildConfig, DEFAULTS } from "../config.js";
import { download } from "../download.js";
import type { DownloadResult } from "../events.js";
import { formatBytes } from "../format.js";
import { makeReporter } from "../progress.js";
import { openSession } from "../session.js";
import type { CommandContext } from "./context.js";
import { commonOptions, type Flags, toRaw } from "./options.js";

function renderResult(r: DownloadResult, json: boolean): string {
  if (json) return `${JSON.stringify(r)}\n`;
  return `${r.path}\n`;
}

/** Dry-run: one line per file with the plan's action and bytes to fetch, then a total. */
function renderPlan(r: DownloadResult): string {
  const line = (f: DownloadResult["files"][number]): string => {
    if (f.action === "fetch") return `fetch  ${formatBytes(f.bytesToFetch)}  ${f.path}`;
    if (f.action === "resume")
      return `resume ${formatBytes(f.bytesToFetch)} of ${formatBytes(f.size)}  ${f.path}`;
    return `${f.action}  ${f.path}`;
  };
  const n = (a: string) => r.files.filter((f) => f.action === a).length;
  const total = `total: ${formatBytes(r.bytesToFetch)} to fetch of ${formatBytes(r.bytesTotal)}; ${n("fetch")} fetch, ${n("resume")} resume, ${n("link")} link, ${n("reuse")} reuse, ${n("present")} present`;
  return `${[...r.files.map(line), total].join("\n")}\n`;
}

/** `set aside http://a (cannot reach …); trying http://b` */
export function skippedLine(e: { endpoint: string; reason: string; next?: string | undefined }): string {
  return `set aside ${e.endpoint} (${e.reason})${e.next === undefined ? "" : `; trying ${e.next}`}`;
}

/** The default command: `hfget <repo_id> [files...]`. It lives on the program itself. */
export function registerDownload(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  commonOptions(program)
    .argument("<repo_id>", "org/name, datasets/org/name, spaces/org/name or a hub URL")
    .argument("[files...]", "only these files (paths in the repo)")
    .option("--local-dir <dir>", "write plain files here instead of the cache")
    .option("--force", "download again even if present")
    .option("--force-download", "alias of --force (huggingface-cli's name)")
    .option("--dry-run", "show what would be downloaded")
    .option("--connections <n>", `total connections (default ${DEFAULTS.connections})`)
    .option("--max-files <n>", `files in flight at once (default ${DEFAULTS.maxFiles})`)
    .option("--max-workers <n>", "alias of --max-files (huggingface-cli's name)")
    .option("--chunk-size <size>", "Range size for large files, e.g. 16M (default 16MiB)")
    .option("--limit-rate <rate>", "cap the whole run's download rate, e.g. 20M (bytes/s; 0 = none)")
    .action(async (repoId: string, files: string[], flags: Flags) => {
      const config = buildConfig(toRaw(repoId, files, flags), io.env);
      ctx.setConfig(config);
      for (const n of config.notices) io.stderr.write(`hfget: note: ${n}\n`);
      const reporter = makeReporter({
        stream: io.stderr,
        quiet: config.quiet || !config.progress || (config.json && !io.stderr.isTTY),
      });
      // Backoffs of API requests (revision, listing) are shown too: a run told 429 must not look hung.
      const session = openSession(config, {
        onRetry: ({ attempt, delayMs, error }) =>
          reporter.onEvent({
            type: "api-retry",
            attempt,
            delayMs,
            reason: error instanceof Error ? error.message : String(error),
          }),
      });
      try {
        const result = await download(config, session, {
          signal: ctx.signal,
          onEvent: (e) => {
            // Before any progress bar exists (metadata comes first), so a plain line is safe.
            if (e.type === "endpoint-skipped") {
              if (!config.quiet) io.stderr.write(`hfget: note: ${skippedLine(e)}\n`);
              return;
            }
            reporter.onEvent(e);
          },
        });
        reporter.stop(result);
        if (result.dryRun && !config.json) io.stderr.write(renderPlan(result));
        io.stdout.write(renderResult(result, config.json));
      } catch (err) {
        reporter.stop();
        throw err;
      } finally {
        await session.close();
      }
    });
}
