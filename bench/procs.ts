// Child processes of the benchmark: each in its own process group, tracked, and killed on exit, error or
// Ctrl-C, so nothing outlives the bench. Also reads /proc for a process tree's write counters.
import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { log, sleep } from "./util.js";

/** Live children: servers are stopped by their cleanup; tools are killed first on the way out. */
const live = new Map<ChildProcess, "tool" | "server">();
const cleanups = new Set<() => Promise<void>>();

/** Spawns `cmd` as the leader of a new process group and tracks it until it exits. */
export function spawnTracked(
  cmd: string,
  args: readonly string[],
  opts: SpawnOptions = {},
  role: "tool" | "server" = "tool",
): ChildProcess {
  const child = spawn(cmd, args, { ...opts, detached: true });
  live.set(child, role);
  child.once("exit", () => live.delete(child));
  child.once("error", () => live.delete(child));
  return child;
}

/** Sends `signal` to the child's whole process group (the tool and anything it started). */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  // Even when the leader has exited, members of its group may not have: signal the group anyway.
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // ESRCH: the group is empty.
  }
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Resolves when the child exits (immediately if it already has). */
export function waitExit(child: ChildProcess): Promise<ExitStatus> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", () => resolve({ code: null, signal: null }));
  });
}

/** Asks the group to stop with `signal`, then SIGKILLs it after `graceMs`. */
export async function stopGroup(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  killGroup(child, signal);
  const exited = await Promise.race([waitExit(child).then(() => true), sleep(graceMs).then(() => false)]);
  if (!exited) {
    log(`pid ${child.pid} did not stop on ${signal} within ${graceMs} ms: SIGKILL`);
  }
  // Also reaps members of the group that outlived the leader.
  killGroup(child, "SIGKILL");
  await waitExit(child);
}

/** Sends SIGTERM to the group leader only (a server's master), then SIGKILLs the group after `graceMs`. */
export async function stopMaster(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  const exited = await Promise.race([waitExit(child).then(() => true), sleep(graceMs).then(() => false)]);
  if (!exited) log(`pid ${child.pid} did not stop on SIGTERM within ${graceMs} ms: SIGKILL`);
  killGroup(child, "SIGKILL");
  await waitExit(child);
}

/** Registers an async cleanup (stop a server) run on exit; returns its unregister function. */
export function onCleanup(fn: () => Promise<void>): () => void {
  cleanups.add(fn);
  return () => {
    cleanups.delete(fn);
  };
}

let cleaningUp = false;

/** Runs every registered cleanup, then kills whatever child groups remain. Safe to call twice. */
export async function cleanupAll(): Promise<void> {
  if (cleaningUp) return;
  cleaningUp = true;
  // Tools first, so that servers are not waiting on their connections.
  for (const [child, role] of live) if (role === "tool") killGroup(child, "SIGKILL");
  for (const fn of [...cleanups].reverse()) {
    try {
      await fn();
    } catch (err) {
      log(`cleanup failed: ${String(err)}`);
    }
  }
  cleanups.clear();
  for (const child of live.keys()) killGroup(child, "SIGKILL");
  cleaningUp = false;
}

/** On SIGINT/SIGTERM: clean up and exit 130/143. On a plain exit: SIGKILL what is left (sync). */
export function installSignalHandlers(): void {
  const onSignal = (signal: NodeJS.Signals, code: number) => {
    log(`${signal}: stopping servers and tools`);
    void cleanupAll().finally(() => process.exit(code));
  };
  process.once("SIGINT", () => onSignal("SIGINT", 130));
  process.once("SIGTERM", () => onSignal("SIGTERM", 143));
  process.once("SIGHUP", () => onSignal("SIGHUP", 129));
  process.on("exit", () => {
    for (const child of live.keys()) killGroup(child, "SIGKILL");
  });
}

/** Pids of every live descendant of `pid` (not `pid` itself), from /proc. Bounded to 10,000. */
export async function descendants(pid: number): Promise<number[]> {
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0 && out.length < 10_000) {
    const p = queue.shift() as number;
    let tasks: string[];
    try {
      tasks = await readdir(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      let text: string;
      try {
        text = await readFile(`/proc/${p}/task/${t}/children`, "utf8");
      } catch {
        continue;
      }
      for (const c of text.split(" ")) {
        const n = Number.parseInt(c, 10);
        if (Number.isFinite(n) && n > 0 && !out.includes(n)) {
          out.push(n);
          queue.push(n);
        }
      }
    }
  }
  return out;
}

/** Bytes the process has passed to write()/pwrite() so far (`wchar` in /proc/PID/io), 0 if unreadable. */
export async function writtenBytes(pid: number): Promise<number> {
  try {
    const text = await readFile(`/proc/${pid}/io`, "utf8");
    const m = /^wchar:\s*(\d+)/m.exec(text);
    return m?.[1] !== undefined ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Sum of `wchar` over every descendant of `pid`. */
export async function treeWrittenBytes(pid: number): Promise<number> {
  let total = 0;
  for (const p of await descendants(pid)) total += await writtenBytes(p);
  return total;
}
