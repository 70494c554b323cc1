import type { Command } from "commander";
import { buildConfig, DEFAULTS } from "../config.js";
import { download } from "../download.js";
import type { DownloadResult } from "../events.js";
import { makeReporter } from "../progress.js";
import { openSession } from "../session.js";
import type { CommandContext } from "./context.js";
import { commonOptions, type Flags, toRaw } from "./options.js";

function renderResult(r: DownloadResult, json: boolean): string {
  if (json) return `${JSON.stringify(r)}\n`;
  return `${r.path}\n`;
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
    .action(async (repoId: string, files: string[], flags: Flags) => {
      const config = buildConfig(toRaw(repoId, files, flags), io.env);
      ctx.setConfig(config);
      for (const n of config.notices) io.stderr.write(`hfget: note: ${n}\n`);
      const session = openSession(config);
      const reporter = makeReporter({
        stream: io.stderr,
        quiet: config.quiet || !config.progress || (config.json && !io.stderr.isTTY),
      });
      try {
        const result = await download(config, session, {
          signal: ctx.signal,
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
}
