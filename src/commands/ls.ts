import type { Command } from "commander";
import { buildConfig } from "../config.js";
import { formatBytes } from "../format.js";
import type { LsResult } from "../ls.js";
import { repoLabel } from "../repo.js";
import { openSession } from "../session.js";
import type { CommandContext } from "./context.js";
import { skippedLine } from "./download.js";
import { commonOptions, type Flags, toRaw } from "./options.js";

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

export function registerLs(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  commonOptions(
    program
      .command("ls")
      .description("list the files of a repo: size, LFS, the hash they are checked against"),
  )
    .argument("<repo_id>")
    .action(async (repoId: string, flags: Flags) => {
      const config = buildConfig(toRaw(repoId, [], flags), io.env);
      ctx.setConfig(config);
      const { ls } = await import("../ls.js");
      const session = openSession(config);
      try {
        const result = await ls(config, session, ctx.signal, (r) => {
          if (!config.quiet)
            io.stderr.write(
              `hfget: note: ${skippedLine({ endpoint: r.endpoint, reason: r.error.message, next: r.next })}\n`,
            );
        });
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
}
