// Runs one tool under GNU time: wall time from the bench's clock, CPU (user+sys) and peak RSS from
// `/usr/bin/time -f`, which measures the child and its descendants only (not the bench process and the
// fake hub inside it). Optionally kills the tool once it has written a number of bytes (the resume test).
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { killGroup, spawnTracked, treeWrittenBytes, waitExit } from "./procs.js";
import { GNU_TIME } from "./setup.js";
import type { ToolCommand } from "./tools.js";
import { sleep } from "./util.js";

export interface Measured {
  wallS: number;
  /** From GNU time; NaN when the tool was killed (time itself dies with its process group). */
  userS: number;
  sysS: number;
  maxRssKiB: number;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** Set when the kill watcher fired. */
  killed?: { atS: number; writtenBytes: number };
  stdout: string;
  stderrTail: string;
}

export interface KillWhen {
  /** SIGKILL the tool's process group once its processes have written this many bytes. */
  writtenBytes: number;
  pollMs: number;
}

const MAX_CAPTURE = 64 * 1024;

export async function runTimed(
  command: ToolCommand,
  opts: { scratchDir: string; timeoutMs: number; killWhen?: KillWhen },
): Promise<Measured> {
  const timeFile = join(opts.scratchDir, "gnu-time.txt");
  await rm(timeFile, { force: true });
  const args = ["-f", "BENCHTIME %e %U %S %M", "-o", timeFile, command.cmd, ...command.args];
  const t0 = performance.now();
  const child = spawnTracked(GNU_TIME, args, { env: command.env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    if (stdout.length < MAX_CAPTURE) stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-MAX_CAPTURE);
  });
  const exit = waitExit(child);
  let done = false;
  let killed: Measured["killed"];
  let timedOut = false;

  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child, "SIGKILL");
  }, opts.timeoutMs);

  const watcher = (async () => {
    const kw = opts.killWhen;
    if (kw === undefined || child.pid === undefined) return;
    const pid = child.pid;
    // Bounded by the run's timeout: `done` turns true when the tool exits or is killed.
    while (!done) {
      const written = await treeWrittenBytes(pid);
      if (written >= kw.writtenBytes) {
        killed = { atS: (performance.now() - t0) / 1000, writtenBytes: written };
        killGroup(child, "SIGKILL");
        return;
      }
      await sleep(kw.pollMs);
    }
  })();

  const status = await exit;
  const wallS = (performance.now() - t0) / 1000;
  done = true;
  clearTimeout(timer);
  await watcher;
  // Make sure nothing of the group outlives the run (a tool's own children).
  killGroup(child, "SIGKILL");

  let userS = Number.NaN;
  let sysS = Number.NaN;
  let maxRssKiB = Number.NaN;
  let exitCode = status.code;
  const timeText = await readFile(timeFile, "utf8").catch(() => "");
  const m = /BENCHTIME (\S+) (\S+) (\S+) (\S+)/.exec(timeText);
  if (m !== null && killed === undefined) {
    userS = Number(m[2]);
    sysS = Number(m[3]);
    maxRssKiB = Number(m[4]);
  }
  // GNU time exits with the tool's status; a tool killed by a signal shows as exit 128+n from time.
  const sig = /Command terminated by signal (\d+)/.exec(timeText);
  let signal: string | null = status.signal;
  if (sig?.[1] !== undefined) {
    signal = `signal ${sig[1]}`;
    exitCode = null;
  }
  const result: Measured = {
    wallS,
    userS,
    sysS,
    maxRssKiB,
    exitCode,
    signal,
    timedOut,
    stdout,
    stderrTail: stderr.slice(-4000),
  };
  if (killed !== undefined) result.killed = killed;
  return result;
}
