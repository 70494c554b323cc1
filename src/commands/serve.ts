import type { Command } from "commander";
import { buildServeConfig, DEFAULTS, type RawServeOptions } from "../config.js";
import { HfgetError } from "../errors.js";
import { createDispatcher } from "../hub/http.js";
import { startServer } from "../serve/server.js";
import type { CommandContext } from "./context.js";

/** After SIGTERM, responses get this long to finish before they are cut (cli.ts ends the process at 2 s). */
const GRACE_MS = 1500;

/**
 * `hfget serve`: a read-through mirror of the hub's API and files from an hfget cache.
 * stdout gets one line, the server's URL (so `hfget serve ... > url.txt` or `| head -1` works
 * without the request log filling the pipe); stderr gets one JSON line per request.
 */
export function registerServe(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  program
    .command("serve")
    .description(
      "serve the hub's API and files to a team from one cache: clients set HF_ENDPOINT=http://host:port",
    )
    .option(
      "--upstream <endpoint>",
      "hub to read through, repeatable or comma-separated (tried in order, one file spread over all); default $HFGET_MIRRORS, else $HF_ENDPOINT, else https://huggingface.co",
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
    )
    .option(
      "--cache-dir <dir>",
      "huggingface_hub cache to serve from and fill (default: $HF_HUB_CACHE, else $HF_HOME/hub)",
    )
    .option(
      "--host <addr>",
      "address to listen on; 0.0.0.0 for the whole network (default 127.0.0.1: local only)",
    )
    .option("--port <n>", "port (default 8080; 0 picks a free one)")
    .option(
      "--token <token>",
      "the server's own upstream token, for file bytes (default: $HF_TOKEN, else $HF_HOME/token)",
    )
    .option("--offline", "never ask upstream: serve only what is cached, to every client (see README)")
    .option(
      "--revalidate <seconds>",
      "ask upstream what a branch or tag points at at most this often (default 60)",
    )
    .option("--access-tokens <file>", "serve only clients presenting one of these tokens (one a line)")
    .option("--connections <n>", `upstream connections per file fetch (default ${DEFAULTS.connections})`)
    .option("--chunk-size <size>", "range size of upstream fetches (default 16M)")
    .option("--retries <n>", `retries per upstream request (default ${DEFAULTS.retries})`)
    .option("--timeout <seconds>", `upstream connect/stall timeout (default ${DEFAULTS.timeoutSeconds})`)
    .action(async (flags: RawServeOptions) => {
      const config = buildServeConfig(flags, io.env);
      const dispatcher = createDispatcher({ timeoutMs: config.timeoutMs, proxy: config.proxy });
      let srv: Awaited<ReturnType<typeof startServer>>;
      try {
        srv = await startServer({
          upstreams: config.upstreams,
          cacheDir: config.cacheDir,
          host: config.host,
          port: config.port,
          token: config.token,
          accessTokens: config.accessTokens,
          offline: config.offline,
          revalidateMs: config.revalidateMs,
          engine: config,
          dispatcher,
          log: (line) => io.stderr.write(`${line}\n`),
        });
      } catch (err) {
        await dispatcher.close().catch(() => undefined);
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL") {
          throw new HfgetError("USAGE", `cannot listen on ${config.host}:${config.port}: ${code}`, {
            hint:
              code === "EADDRINUSE"
                ? "another server uses that port: pick one with --port"
                : "check --host and --port",
          });
        }
        throw err;
      }
      io.stdout.write(`${srv.url}\n`);
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) return resolve();
        ctx.signal.addEventListener("abort", () => resolve(), { once: true });
      });
      await srv.close(GRACE_MS);
      // Upstream fetches were aborted by close(); nothing left worth waiting for.
      await dispatcher.destroy().catch(() => undefined);
    });
}
