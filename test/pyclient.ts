/**
 * The real huggingface_hub client (Python), for interop tests: `../shared/tools/hf-python` beside this
 * repo runs huggingface_hub 1.28.0 or 0.36.2 from ../shared/vendor against the fake hub.
 *
 *   describe("...", { skip: skipWithoutPython() }, () => {
 *     const r = await runPython("0.36", PY_DOWNLOAD, [JSON.stringify({ repo_id: "org/m" })], { env: pyEnv(hub, cache) });
 *   });
 *
 * Where the client is absent (this repo cloned alone) the tests are skipped with a message saying
 * why; under CI=true they are not skipped, so a missing client fails the run.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { FakeHub } from "./fakehub/index.js";
import { type CliRun, cleanEnv, ROOT, type RunOptions } from "./helpers.js";

/** `../shared/tools/hf-python` beside the repo; HF_PYTHON overrides it (a git worktree elsewhere). */
export const HF_PYTHON = process.env.HF_PYTHON || join(ROOT, "..", "shared", "tools", "hf-python");
/** The huggingface_hub versions hf-python runs: 1.28 (uuid partial files) and 0.36 (resumes `<etag>.incomplete`). */
export const HH_VERSIONS = ["1.28", "0.36"] as const;
export type HhVersion = (typeof HH_VERSIONS)[number];

let missing: string | undefined | null = null;

/** Why the real client cannot run here, or undefined when it can (checked once per process). */
export function pythonClientMissing(): string | undefined {
  if (missing !== null) return missing;
  if (!existsSync(HF_PYTHON)) {
    missing = `${HF_PYTHON} not found (clone the project with its shared/ folder)`;
    return missing;
  }
  for (const v of HH_VERSIONS) {
    const r = spawnSync(HF_PYTHON, ["--hh", v, "-c", "import huggingface_hub, filelock"], {
      encoding: "utf8",
      timeout: 30_000,
    });
    if (r.status !== 0) {
      missing = `huggingface_hub ${v} does not import (run ${HF_PYTHON} --install): ${(r.stderr ?? "").trim().split("\n").pop()}`;
      return missing;
    }
  }
  missing = undefined;
  return missing;
}

/**
 * The `skip` option for a test that needs the real client: false when it is there, or under
 * CI=true (then the test runs and fails on the missing client); else the reason it was skipped.
 */
export function skipWithoutPython(): string | false {
  const why = pythonClientMissing();
  if (why === undefined || process.env.CI === "true") return false;
  return `needs the real huggingface_hub client: ${why}`;
}

/** hfget's clean environment plus what huggingface_hub needs: the fake hub, this cache, no bars. */
export function pyEnv(hub: FakeHub, cacheDir: string): Record<string, string | undefined> {
  return cleanEnv({
    HF_ENDPOINT: hub.url,
    HF_HUB_CACHE: cacheDir,
    HF_HUB_DISABLE_PROGRESS_BARS: "1",
    HF_HUB_DISABLE_TELEMETRY: "1",
    HF_HUB_DISABLE_XET: "1",
    PYTHONUNBUFFERED: "1",
  });
}

export interface PyProcess {
  readonly child: ChildProcess;
  /** Resolves when stdout has shown `text` (rejects if the process ends first). */
  waitForOutput(text: string, timeoutMs?: number): Promise<void>;
  /** Everything printed so far. */
  output(): { stdout: string; stderr: string };
  /** Writes a line to its stdin. */
  send(line: string): void;
  readonly done: Promise<CliRun>;
}

/** Starts `hf-python --hh <version> -c <code> ...args`; killed (SIGKILL) after timeoutMs (default 60 s). */
export function spawnPython(
  version: HhVersion,
  code: string,
  args: readonly string[],
  opts: RunOptions = {},
): PyProcess {
  const why = pythonClientMissing();
  if (why !== undefined) throw new Error(`cannot run huggingface_hub ${version}: ${why}`);
  const child = spawn(HF_PYTHON, ["--hh", version, "-c", code, ...args], {
    env: opts.env ?? cleanEnv(),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  const waiters: { text: string; resolve: () => void }[] = [];
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    stdout += d;
    for (const w of waiters.filter((x) => stdout.includes(x.text))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
    opts.onStderr?.(d, child);
  });
  child.stdin?.on("error", () => undefined); // it may exit before reading
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const done = new Promise<CliRun>((resolve, reject) => {
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  opts.onSpawn?.(child);
  return {
    child,
    done,
    output: () => ({ stdout, stderr }),
    send: (line) => child.stdin?.write(`${line}\n`),
    waitForOutput(text, timeoutMs = 30_000) {
      if (stdout.includes(text)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const t = setTimeout(
          () =>
            reject(
              new Error(
                `python did not print ${JSON.stringify(text)} in ${timeoutMs} ms:\n${stdout}\n${stderr}`,
              ),
            ),
          timeoutMs,
        );
        waiters.push({
          text,
          resolve: () => {
            clearTimeout(t);
            resolve();
          },
        });
        void done.then((r) => {
          clearTimeout(t);
          if (!stdout.includes(text))
            reject(
              new Error(
                `python ended (exit ${r.code} ${r.signal}) before printing ${JSON.stringify(text)}:\n${r.stderr}`,
              ),
            );
        });
      });
    },
  };
}

/** Runs python to the end. */
export function runPython(
  version: HhVersion,
  code: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<CliRun> {
  return spawnPython(version, code, args, opts).done;
}

/**
 * Downloads with huggingface_hub: argv[1] is JSON `{repo_id, filename?, revision?, local_dir?,
 * force_download?, repo_type?}`; snapshot_download without filename, hf_hub_download with one.
 * Prints `RESULT <path>` at the end.
 */
export const PY_DOWNLOAD = `
import json, sys
from huggingface_hub import hf_hub_download, snapshot_download
a = json.loads(sys.argv[1])
kw = {k: a[k] for k in ("revision", "local_dir", "force_download", "repo_type") if k in a}
print("START", flush=True)
if "filename" in a:
    p = hf_hub_download(a["repo_id"], a["filename"], **kw)
else:
    p = snapshot_download(a["repo_id"], **kw)
print("RESULT " + p, flush=True)
`;

/**
 * Holds the lock huggingface_hub's downloads take (WeakFileLock on argv[1]: filelock's flock) from
 * when it prints "locked" until a line arrives on stdin. Prints "waiting" before it asks.
 */
export const PY_HOLD_LOCK = `
import os, sys
from huggingface_hub.utils import WeakFileLock
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)  # as huggingface_hub does before locking
print("waiting", flush=True)
with WeakFileLock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
print("released", flush=True)
`;
