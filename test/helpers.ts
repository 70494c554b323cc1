import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { isPartialName } from "../src/cache/paths.js";
import { journalPath, readJournal } from "../src/state.js";
import { type FakeHub, type FakeRepo, type StartOptions, startFakeHub } from "./fakehub/index.js";

/** The repo's top folder (tests run from dist/test/). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const BIN = join(ROOT, "bin", "hfget.js");

export interface CliRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly env?: Record<string, string | undefined>;
  /** Hard cap: the process is killed (SIGKILL) after this long. Default 60 s. */
  readonly timeoutMs?: number;
  /** Called with the child right after spawn (to send signals). */
  readonly onSpawn?: (child: ChildProcess) => void;
  /** Called with stderr text as it arrives. */
  readonly onStderr?: (chunk: string, child: ChildProcess) => void;
  /** A command the CLI runs under (`setpriv --reuid=…`, `unshare …`): it gets `node bin/hfget.js args…`. */
  readonly wrap?: readonly string[];
  /** Written to the child's stdin (a pipe, not a terminal), which is then closed; default: no stdin. */
  readonly input?: string;
}

/** An environment with no HF_* or proxy variables of the developer's, a fresh HF_HOME, no colours. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (
      /^(HF_|HUGGINGFACE_|XDG_CACHE_HOME$|https?_proxy$|HTTPS?_PROXY$|NO_PROXY$|no_proxy$|FORCE_COLOR$)/.test(
        k,
      )
    )
      continue;
    env[k] = v;
  }
  env.HF_HOME = tempDir("hfget-home-");
  env.NO_COLOR = "1";
  return { ...env, ...extra };
}

/** Runs the real CLI as a process; never waits longer than timeoutMs. */
export function runCli(args: readonly string[], opts: RunOptions = {}): Promise<CliRun> {
  return new Promise((resolvePromise, reject) => {
    const [cmd, ...pre] = [...(opts.wrap ?? []), process.execPath, BIN, ...args];
    const child = spawn(cmd!, pre, {
      env: opts.env ?? cleanEnv(),
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] as ["pipe", "pipe", "pipe"],
    });
    if (opts.input !== undefined) {
      child.stdin.on("error", () => undefined); // it may exit before reading
      child.stdin.end(opts.input);
    }
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      opts.onStderr?.(d, child);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
    opts.onSpawn?.(child);
  });
}

/**
 * Runs the CLI's `main` in this process (the bin only adds `process.exit(code)`): for tests that run
 * it many times, where a process start each (1-3 s on a loaded 2-core machine) would dominate.
 * Stdout/stderr are collected; no terminal, no stdin, signals from an emitter nobody fires.
 */
export async function runInProcess(args: readonly string[], env = cleanEnv()): Promise<CliRun> {
  const { main } = await import("../src/cli.js");
  let stdout = "";
  let stderr = "";
  const sink = (add: (s: string) => void) =>
    new Writable({
      write(chunk: Buffer | string, _enc, done) {
        add(chunk.toString());
        done();
      },
    });
  const code = await main(["node", "hfget", ...args], {
    stdout: sink((t) => {
      stdout += t;
    }),
    stderr: sink((t) => {
      stderr += t;
    }),
    env,
    signals: new EventEmitter(),
  });
  return { code, signal: null, stdout, stderr };
}

const made: string[] = [];
export function tempDir(prefix = "hfget-test-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}
process.on("exit", () => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

export function gitSha1File(path: string): string {
  const data = readFileSync(path);
  return createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
}

/** The cache folder of a repo. */
export function repoCacheDir(cacheDir: string, type: "model" | "dataset" | "space", id: string): string {
  return join(cacheDir, [`${type}s`, ...id.split("/")].join("--"));
}

export interface ExpectedFile {
  readonly path: string;
  readonly gitOid: string;
  readonly lfs?: { readonly sha256: string } | undefined;
}

/**
 * Asserts the huggingface_hub layout for one commit, file by file: a relative symlink
 * snapshots/<commit>/<path> -> ../../(../)blobs/<id>, whose target holds bytes with that hash.
 * Returns a list of problems (empty when all is right).
 */
export function cacheProblems(repoDir: string, commit: string, files: readonly ExpectedFile[]): string[] {
  const problems: string[] = [];
  for (const f of files) {
    const id = f.lfs ? f.lfs.sha256 : f.gitOid;
    const link = join(repoDir, "snapshots", commit, ...f.path.split("/"));
    const depth = f.path.split("/").length - 1;
    const want = `${"../".repeat(depth + 2)}blobs/${id}`;
    let target: string;
    try {
      target = readlinkSync(link);
    } catch (err) {
      problems.push(`${f.path}: no symlink (${(err as Error).message})`);
      continue;
    }
    if (target !== want) problems.push(`${f.path}: symlink -> ${target}, want ${want}`);
    const blob = join(repoDir, "blobs", id);
    try {
      const got = f.lfs ? sha256File(blob) : gitSha1File(blob);
      if (got !== id) problems.push(`${f.path}: blob hash ${got}, want ${id}`);
    } catch (err) {
      problems.push(`${f.path}: blob missing (${(err as Error).message})`);
    }
  }
  return problems;
}

/** Waits until `check` is true, polling, for at most `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---------------------------------------------------------------------------------------------
// Fault-injection and security tests

/** Every entry under `dir` (files, symlinks, folders), as paths relative to it; symlinks are not followed. */
export function walk(dir: string): string[] {
  const out: string[] = [];
  const visit = (rel: string): void => {
    let names: string[];
    try {
      names = readdirSync(join(dir, rel));
    } catch {
      return;
    }
    for (const name of names) {
      const r = rel === "" ? name : join(rel, name);
      out.push(r);
      if (lstatSync(join(dir, r)).isDirectory()) visit(r);
    }
  };
  visit("");
  return out.sort();
}

/**
 * Scratch files of a download (partial bytes, resume state, temp names, locks): not finished blobs.
 * `.incomplete` files are huggingface_hub's partial files.
 */
export function isScratchName(name: string): boolean {
  return isPartialName(name) || /\.incomplete$|\.tmp$|\.lock$/.test(name);
}

/**
 * Whatever a run left, nothing visible may be wrong: every finished blob in blobs/ hashes to its
 * name (sha256 for 64 hex, git sha1 for 40 hex), and every snapshot entry is a relative symlink to
 * a finished blob. Missing files are fine (the run may have been killed); wrong ones are not.
 */
export function blobProblems(repoDir: string): string[] {
  const problems: string[] = [];
  const blobs = join(repoDir, "blobs");
  for (const name of walk(blobs)) {
    if (isScratchName(name)) continue;
    const path = join(blobs, name);
    if (!lstatSync(path).isFile()) {
      problems.push(`blobs/${name}: not a regular file`);
    } else if (/^[0-9a-f]{64}$/.test(name)) {
      const got = sha256File(path);
      if (got !== name) problems.push(`blobs/${name}: sha256 is ${got}`);
    } else if (/^[0-9a-f]{40}$/.test(name)) {
      const got = gitSha1File(path);
      if (got !== name) problems.push(`blobs/${name}: git sha1 is ${got}`);
    } else {
      problems.push(`blobs/${name}: unexpected name`);
    }
  }
  const snapshots = join(repoDir, "snapshots");
  for (const rel of walk(snapshots)) {
    const path = join(snapshots, rel);
    const st = lstatSync(path);
    if (st.isDirectory()) continue;
    if (isScratchName(rel)) continue;
    if (!st.isSymbolicLink()) {
      problems.push(`snapshots/${rel}: not a symlink`);
      continue;
    }
    const target = readlinkSync(path);
    const m = /^(\.\.\/)+blobs\/([0-9a-f]{40}|[0-9a-f]{64})$/.exec(target);
    if (m === null) {
      problems.push(`snapshots/${rel}: symlink to ${target}`);
      continue;
    }
    const blob = join(dirname(path), target);
    if (resolve(blob) !== join(blobs, m[2] ?? "")) problems.push(`snapshots/${rel}: ${target} leaves blobs/`);
    try {
      statSync(blob);
    } catch {
      problems.push(`snapshots/${rel}: dangling symlink to ${target}`);
    }
  }
  return problems;
}

export interface SavedState {
  readonly size: number;
  readonly hash: string;
  readonly etag?: string;
  readonly done: [number, number][];
}

/**
 * The resume state as a rerun trusts it: the JSON's done ranges plus those its journal (`<state>.log`,
 * when the JSON names it by token) records, merged.
 */
export function readState(path: string): SavedState | undefined {
  let st: SavedState & { log?: string };
  try {
    st = JSON.parse(readFileSync(path, "utf8")) as SavedState & { log?: string };
  } catch {
    return undefined;
  }
  const logged = typeof st.log === "string" ? readJournal(journalPath(path), st.log, st.size) : undefined;
  if (logged === undefined || logged.length === 0 || !Array.isArray(st.done)) return st;
  const all = [...st.done, ...logged.map(([a, b]): [number, number] => [a, b])].sort((x, y) => x[0] - y[0]);
  const done: [number, number][] = [];
  for (const [a, b] of all) {
    const last = done[done.length - 1];
    if (last !== undefined && a <= last[1]) last[1] = Math.max(last[1], b);
    else done.push([a, b]);
  }
  return { ...st, done };
}

/**
 * The resume state's promise: every range it calls done holds exactly the expected bytes in the
 * `.incomplete` file. Returns problems (empty when the state is absent or right).
 */
export function resumeStateProblems(incomplete: string, statePath: string, content: Buffer): string[] {
  const state = readState(statePath);
  if (state === undefined) return [];
  if (state.size !== content.length) return [`state size ${state.size}, file size ${content.length}`];
  let data: Buffer;
  try {
    data = readFileSync(incomplete);
  } catch {
    return state.done.length > 0
      ? [`state lists ${JSON.stringify(state.done)} but there is no .incomplete`]
      : [];
  }
  const problems: string[] = [];
  for (const [a, b] of state.done) {
    if (b > data.length) {
      problems.push(`done range ${a}-${b} is past the end of the .incomplete (${data.length} bytes)`);
      continue;
    }
    if (!data.subarray(a, b).equals(content.subarray(a, b))) {
      let at = a;
      while (at < b && data[at] === content[at]) at++;
      problems.push(`done range ${a}-${b} holds wrong bytes from offset ${at}`);
    }
  }
  return problems;
}

/** Files under `dir` (symlinks not followed) whose bytes contain `needle`. */
export function filesContaining(dir: string, needle: string): string[] {
  const hits: string[] = [];
  const n = Buffer.from(needle);
  for (const rel of walk(dir)) {
    const path = join(dir, rel);
    if (!lstatSync(path).isFile()) continue;
    if (readFileSync(path).includes(n)) hits.push(rel);
  }
  return hits;
}

/** `bytes=a-b` -> [a, b] (inclusive end), else undefined. */
export function parseRangeHeader(range: string | undefined): [number, number] | undefined {
  const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? "");
  return m === null ? undefined : [Number(m[1]), Number(m[2])];
}

/** Peak resident memory (VmHWM, KiB) of a live process, or undefined once it is gone. */
export function peakRssKiB(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** A throwaway self-signed certificate for localhost / 127.0.0.1, or undefined without openssl. */
export function selfSignedCert(): { key: Buffer; cert: Buffer; certPath: string } | undefined {
  const dir = tempDir("hfget-cert-");
  const keyPath = join(dir, "key.pem");
  const certPath = join(dir, "cert.pem");
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-days",
        "1",
        "-keyout",
        keyPath,
        "-out",
        certPath,
      ],
      { stdio: "ignore" },
    );
  } catch {
    return undefined;
  }
  return { key: readFileSync(keyPath), cert: readFileSync(certPath), certPath };
}

/** Runs `fn` with a fake hub serving `repos`, and always closes it. */
export async function withHub<T>(
  repos: FakeRepo[],
  opts: Omit<Partial<StartOptions>, "repos">,
  fn: (hub: FakeHub) => Promise<T>,
): Promise<T> {
  const hub = await startFakeHub({ ...opts, repos });
  try {
    return await fn(hub);
  } finally {
    await hub.close();
  }
}

/** A CLI run for an assertion message: exit, stdout, and the end of stderr. */
export function show(r: CliRun): string {
  return `exit ${r.code} signal ${r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr.slice(-4000)}`;
}
