import { registerCache } from "../cli-cache.js";
import type { RegisterCommand } from "./context.js";
import { registerLs } from "./ls.js";
import { registerMirrors } from "./mirrors.js";
import { registerServe } from "./serve.js";
import { registerExport, registerImport } from "./snapshot.js";

export type { CliIO, CommandContext, RegisterCommand } from "./context.js";
export { registerDownload } from "./download.js";

/**
 * Subcommands, each registered from its own module. To add one: write
 * `export function registerX(program, ctx)` in src/commands/x.ts and add it here (one line).
 */
export const SUBCOMMANDS: readonly RegisterCommand[] = [
  registerLs,
  registerMirrors,
  registerCache,
  registerExport,
  registerImport,
  registerServe,
];
