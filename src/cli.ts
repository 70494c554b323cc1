import chalk from "chalk";
import { Command, CommanderError } from "commander";
import { type CliIO, type CommandContext, registerDownload, subcommandsFor } from "./commands/index.js";
import { type Config, colorMode } from "./config.js";
import { EXIT_CODES, HfgetError, isHfgetError, redact } from "./errors.js";

export type { CliIO } from "./commands/index.js";

const VERSION = "0.1.0";

/** After a first SIGINT/SIGTERM the process ends within this long, done winding down or not. */
const HARD_STOP_MS = 2000;

export async function main(argv: readonly string[], io: CliIO = processIO()): Promise<number> {
  // NO_COLOR / FORCE_COLOR (config.ts decides), applied to the one chalk instance everything uses.
  const color = colorMode(io.env);
  if (color === "never") chalk.level = 0;
  else if (color === "always" && chalk.level === 0) chalk.level = 1;
  const args = helpToFlag(argv);
  const controller = new AbortController();
  let interrupted = 0;
  let hardStop: NodeJS.Timeout | undefined;
  const onSignal = () => {
    interrupted++;
    controller.abort(new HfgetError("INTERRUPTED", "interrupted"));
    if (interrupted > 1) process.exit(EXIT_CODES.INTERRUPTED);
    // The abort lets every step save its state and stop; whatever does not (a syscall that never
    // returns) must not keep the process alive: end it shortly after the first signal anyway.
    hardStop ??= setTimeout(() => {
      io.stderr.write("hfget: interrupted\n");
      process.exit(EXIT_CODES.INTERRUPTED);
    }, HARD_STOP_MS);
    hardStop.unref();
  };
  const signals = io.signals ?? process;
  signals.on("SIGINT", onSignal);
  signals.on("SIGTERM", onSignal);
  let exitCode: number = EXIT_CODES.OK;
  let config: Config | undefined;
  const fail = (err: unknown) => {
    const secrets = [config?.token];
    // --json may not have reached a Config (the error can come from building it).
    const json = config?.json ?? args.includes("--json");
    let code: string;
    let message: string;
    if (isHfgetError(err)) {
      const hint = err.hint ? ` (${err.hint})` : "";
      message = redact(`${err.message}${hint}`, secrets);
      io.stderr.write(`${chalk.red("hfget: error:")} ${message}\n`);
      exitCode = err.exitCode;
      code = err.code;
    } else {
      const msg = err instanceof Error ? (err.stack ?? err.message) : String(err);
      io.stderr.write(`hfget: internal error: ${redact(msg, secrets)}\n`);
      exitCode = EXIT_CODES.GENERIC;
      code = "INTERNAL";
      message = redact(`internal error: ${err instanceof Error ? err.message : String(err)}`, secrets);
    }
    if (json) io.stdout.write(`${JSON.stringify({ error: { code, message, exitCode } })}\n`);
  };

  const program = new Command("hfget")
    .description("Download Hugging Face Hub repositories: parallel, resumable, verified.")
    .version(VERSION)
    .usage(
      "<repo_id> [files...] [options]\n       hfget ls <repo_id> [options]\n       hfget mirrors <repo_id> --mirror a --mirror b [options]\n       hfget serve --upstream <endpoint> --cache-dir <dir> [options]",
    )
    .exitOverride()
    // Options after a subcommand belong to it, not to the download command.
    .enablePositionalOptions()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(`hfget: ${s}`),
    })
    .showSuggestionAfterError(true);

  const ctx: CommandContext = {
    io,
    signal: controller.signal,
    setConfig: (c) => {
      config = c;
    },
  };
  registerDownload(program, ctx);
  // In their order (help lists them so); imported only when the arguments may need them.
  const registers = await Promise.all(subcommandsFor(args.slice(2)).map((s) => s.load()));
  for (const register of registers) register(program, ctx);

  try {
    await program.parseAsync(args as string[]);
  } catch (err) {
    if (err instanceof CommanderError) {
      exitCode = err.exitCode === 0 ? EXIT_CODES.OK : EXIT_CODES.USAGE;
    } else {
      fail(err);
    }
  } finally {
    signals.off("SIGINT", onSignal);
    signals.off("SIGTERM", onSignal);
    if (hardStop !== undefined) clearTimeout(hardStop);
  }
  if (controller.signal.aborted && exitCode !== EXIT_CODES.OK) exitCode = EXIT_CODES.INTERRUPTED;
  return exitCode;
}

/** `hfget help [command]` means `hfget [command] --help`, not a repo named "help". */
function helpToFlag(argv: readonly string[]): readonly string[] {
  if (argv[2] !== "help") return argv;
  const rest = argv.slice(3);
  return [...argv.slice(0, 2), ...rest.slice(0, 1), "--help"];
}

/**
 * The process's streams, each made when first used: node builds a stream object per getter (1.7-3
 * ms each, measured), and a download needs stdin never and stdout only at its end.
 */
function processIO(): CliIO {
  return {
    get stdout() {
      return process.stdout;
    },
    get stderr() {
      return process.stderr;
    },
    env: process.env,
    get stdin() {
      return process.stdin;
    },
  };
}
