import type { Command } from "commander";
import type { Config, Env } from "../config.js";

export type Out = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

export interface CliIO {
  readonly stdout: Out;
  readonly stderr: Out;
  readonly env: Env;
  /** What `hfget import -` reads (process.stdin by default). */
  readonly stdin?: NodeJS.ReadableStream | undefined;
  /** Where SIGINT/SIGTERM are listened for; tests pass their own. */
  readonly signals?: NodeJS.EventEmitter;
}

/** What a subcommand gets from the CLI shell: where to print, the run's signal, config for redaction. */
export interface CommandContext {
  readonly io: CliIO;
  /** Aborted on the first SIGINT/SIGTERM. */
  readonly signal: AbortSignal;
  /** Record the config once built, so errors are redacted with its token and --json is known. */
  setConfig(config: Config): void;
}

/**
 * A subcommand registers itself on the program: `register(program, ctx)` adds
 * `program.command("name")…action(…)`. Add one to SUBCOMMANDS in src/commands/index.ts.
 */
export type RegisterCommand = (program: Command, ctx: CommandContext) => void;
