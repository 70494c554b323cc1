import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createDispatcher } from "../src/hub/http.js";
import { type ServeHandle, type ServeOptions, startServer } from "../src/serve/server.js";
import { BIN, cleanEnv, tempDir } from "./helpers.js";

/** The engine settings the library-server tests use unless they say otherwise. */
const TEST_SERVE_ENGINE: ServeOptions["engine"] = {
  connections: 4,
  maxFiles: 4,
  chunkSize: 1 << 20,
  retries: 1,
  timeoutMs: 10_000,
};

/**
 * The library server (startServer) in front of `upstreams`, on 127.0.0.1, with test-sized settings
 * (`defaults`: the engine's and the client dispatcher's timeout) overridden by `extra`; `fn` runs,
 * then the server closes. `fn` gets the server, its log lines and its cache folder.
 */
export async function withServeServer<T>(
  upstreams: readonly string[],
  extra: Partial<ServeOptions>,
  fn: (srv: ServeHandle, logs: string[], cacheDir: string) => Promise<T>,
  defaults: { readonly engine?: ServeOptions["engine"]; readonly dispatcherTimeoutMs?: number } = {},
): Promise<T> {
  const dispatcher = createDispatcher({ timeoutMs: defaults.dispatcherTimeoutMs ?? 10_000 });
  const logs: string[] = [];
  const cacheDir = extra.cacheDir ?? tempDir();
  const srv = await startServer({
    upstreams,
    cacheDir,
    host: "127.0.0.1",
    port: 0,
    offline: false,
    revalidateMs: 60_000,
    engine: defaults.engine ?? TEST_SERVE_ENGINE,
    dispatcher,
    log: (l) => logs.push(l),
    ...extra,
  });
  try {
    return await fn(srv, logs, cacheDir);
  } finally {
    await srv.close(1000);
    await dispatcher.destroy();
  }
}

/** A running `hfget serve` process (the real CLI), its URL, and what it wrote. */
export interface ServeProcess {
  readonly child: ChildProcess;
  readonly url: string;
  stdout(): string;
  stderr(): string;
  /** SIGTERM, then wait for the exit (SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
}

/** Starts `hfget serve <args> --port 0` and resolves once it printed its URL (at most 20 s). */
export function startServeProcess(
  args: readonly string[],
  env: Record<string, string | undefined> = cleanEnv(),
): Promise<ServeProcess> {
  const child = spawn(process.execPath, [BIN, "serve", "--port", "0", ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on("close", (code, signal) => r({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`hfget serve printed no URL in 20 s:\n${out}\n${err}`));
    }, 20_000);
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`hfget serve exited (${e.code} ${e.signal}) before printing its URL:\n${err}`));
    });
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(timer);
      resolve({
        child,
        url: out.slice(0, nl).trim(),
        stdout: () => out,
        stderr: () => err,
        stop: async (timeoutMs = 10_000) => {
          const t0 = Date.now();
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          const kill = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
          const e = await exited;
          clearTimeout(kill);
          return { ...e, ms: Date.now() - t0 };
        },
      });
    });
  });
}

/**
 * The value of one sample of `hfget serve`'s /metrics text: `name` is the metric's name, with its
 * labels when it has them (`x_total{endpoint="..."}`); undefined when there is no such line.
 */
export function metricValue(text: string, name: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** GET `url`, which must answer 200: the body's length and sha256, read as it streams. */
export async function getHashed(url: string): Promise<{ n: number; hash: string }> {
  const r = await fetch(url);
  assert.equal(r.status, 200, url);
  const h = createHash("sha256");
  let n = 0;
  for await (const c of r.body as unknown as AsyncIterable<Uint8Array>) {
    h.update(c);
    n += c.length;
  }
  return { n, hash: h.digest("hex") };
}
