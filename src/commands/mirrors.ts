import type { Command } from "commander";
import { buildConfig } from "../config.js";
import { formatRate } from "../format.js";
import type { MirrorsResult } from "../mirrors.js";
import { repoLabel } from "../repo.js";
import { openSession } from "../session.js";
import type { CommandContext } from "./context.js";
import { commonOptions, type Flags, toRaw } from "./options.js";

/** One row per endpoint, fastest first: what `hfget mirrors` prints on stdout. */
export function renderMirrors(r: MirrorsResult): string {
  const rows = r.endpoints.map((p) => {
    const via =
      p.read !== undefined && p.read.servedBy !== new URL(p.endpoint).origin ? `via ${p.read.servedBy}` : "";
    const when = p.status === "lagging" || p.status === "ahead" ? (p.lastModified ?? "") : "";
    return [
      p.endpoint,
      p.status,
      p.commit?.slice(0, 12) ?? "-",
      p.latencyMs === undefined ? "-" : `${Math.round(p.latencyMs)} ms`,
      p.read === undefined ? "-" : formatRate(p.read.bytesPerSec),
      [when, via, p.error ?? ""].filter((s) => s !== "").join("; "),
    ];
  });
  const head = ["ENDPOINT", "STATUS", "COMMIT", "LATENCY", "SPEED", "NOTE"];
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((row) => (row[i] ?? "").length)));
  return `${all
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n")}\n`;
}

export function registerMirrors(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  commonOptions(
    program
      .command("mirrors")
      .description(
        "for each endpoint: does it answer, which commit it has, API latency, read speed (fastest first)",
      ),
  )
    .argument("<repo_id>")
    .action(async (repoId: string, flags: Flags) => {
      const config = buildConfig(toRaw(repoId, [], flags), io.env);
      ctx.setConfig(config);
      const { probeMirrors } = await import("../mirrors.js");
      const session = openSession(config);
      try {
        const result = await probeMirrors(config, session, { signal: ctx.signal });
        if (config.json) io.stdout.write(`${JSON.stringify(result)}\n`);
        else io.stdout.write(renderMirrors(result));
        if (!config.json && !config.quiet) {
          const ok = result.endpoints.filter((p) => p.status === "ok").length;
          io.stderr.write(
            `${ok} of ${result.endpoints.length} endpoints have ${repoLabel(result.repo)}@${result.revision} at ${result.commit}\n`,
          );
        }
      } finally {
        await session.close();
      }
    });
}
