import type { RegisterCommand } from "./context.js";

export type { CliIO, CommandContext, RegisterCommand } from "./context.js";
export { registerDownload } from "./download.js";

/** A subcommand: its name(s) on the command line and its module, imported only when needed. */
export interface Subcommand {
  readonly names: readonly string[];
  readonly load: () => Promise<RegisterCommand>;
}

/**
 * Subcommands, each registered from its own module. To add one: write
 * `export function registerX(program, ctx)` in src/commands/x.ts and add it here (one line).
 * Their modules (serve, cache, export/import with their dependencies) are imported only when the
 * command line may need them: a download does not load them (~60 ms of CPU at every start).
 */
export const SUBCOMMANDS: readonly Subcommand[] = [
  { names: ["ls"], load: async () => (await import("./ls.js")).registerLs },
  { names: ["mirrors"], load: async () => (await import("./mirrors.js")).registerMirrors },
  { names: ["cache"], load: async () => (await import("../cli-cache.js")).registerCache },
  { names: ["export"], load: async () => (await import("./snapshot.js")).registerExport },
  { names: ["import"], load: async () => (await import("./snapshot.js")).registerImport },
  { names: ["serve"], load: async () => (await import("./serve.js")).registerServe },
];

/**
 * The subcommands `args` (after node and the script) may run or list: none when the first argument
 * is a repo id (not an option, not a subcommand's name) and no help is asked for, so a download
 * imports none of them; all of them otherwise (help lists them; an option before the name).
 */
export function subcommandsFor(args: readonly string[]): readonly Subcommand[] {
  const first = args[0];
  const help = args.some((a) => a === "--help" || a === "-h");
  if (help || first === undefined || first.startsWith("-")) return SUBCOMMANDS;
  return SUBCOMMANDS.filter((s) => s.names.includes(first));
}
