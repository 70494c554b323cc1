import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { BIN, cleanEnv } from "./helpers.js";

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
