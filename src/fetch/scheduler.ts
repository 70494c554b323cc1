import type { ChunkTask } from "./chunk.js";
import { chunkTask } from "./chunk.js";
import type { FileJob } from "./job.js";

/** A running chunk is split when at least twice this much is left and a worker is idle. */
export const STEAL_MIN = 1024 * 1024;

export interface SchedulerHooks {
  /** Takes a queued job through opening (and further, as far as it goes on this worker). */
  open(job: FileJob): Promise<void>;
  /** Fetches one chunk of a job. */
  chunk(job: FileJob, task: ChunkTask): Promise<void>;
}

export interface SchedulerOptions {
  readonly connections: number;
  readonly maxFiles: number;
  /** Milliseconds since epoch: lock waits compare against it. */
  readonly now?: () => number;
}

type Pick = { run: () => Promise<void> } | "wait" | "exit";

/**
 * A pool of `connections` workers sharing every file of the run. A worker takes, in order: a
 * pending chunk of a file already in flight; a new file (up to `maxFiles` in flight); half of the
 * largest running chunk (so the tail of a big file never waits on one slow connection). It also
 * holds the run's retry slots: at most a few chunks wait out a backoff at once.
 */
export class Scheduler {
  readonly queue: FileJob[];
  readonly active: FileJob[] = [];
  readonly #opts: SchedulerOptions;
  readonly #signal: AbortSignal;
  readonly #hooks: SchedulerHooks;
  #retrying = 0;
  #waiters: (() => void)[] = [];

  constructor(opts: SchedulerOptions, jobs: FileJob[], signal: AbortSignal, hooks: SchedulerHooks) {
    this.#opts = opts;
    this.queue = jobs;
    this.#signal = signal;
    this.#hooks = hooks;
  }

  #now(): number {
    return (this.#opts.now ?? Date.now)();
  }

  /** Runs the workers until every job is done (or the run's signal aborts). */
  async run(): Promise<void> {
    await Promise.all(Array.from({ length: this.#opts.connections }, () => this.#worker()));
  }

  /** Something changed (a job finished, a slot freed, a file became fetchable): idle workers look again. */
  notify(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** The job leaves the active set (it is done). */
  remove(job: FileJob): void {
    const i = this.active.indexOf(job);
    if (i >= 0) this.active.splice(i, 1);
    this.notify();
  }

  /** The job goes back to the queue until `notBefore` (its lock is held elsewhere). */
  requeue(job: FileJob, notBefore: number): void {
    job.to("queued");
    job.notBefore = notBefore;
    const i = this.active.indexOf(job);
    if (i >= 0) this.active.splice(i, 1);
    this.queue.push(job);
    this.notify();
  }

  /** Waits for one of the retry slots; false when the chunk was superseded meanwhile. */
  async acquireRetrySlot(superseded: () => boolean): Promise<boolean> {
    const cap = Math.max(2, Math.ceil(this.#opts.connections / 2));
    for (;;) {
      if (superseded()) return false;
      if (this.#retrying < cap) {
        this.#retrying++;
        return true;
      }
      await this.changed(100);
    }
  }

  releaseRetrySlot(): void {
    this.#retrying--;
    this.notify();
  }

  async #worker(): Promise<void> {
    for (let idle = 0; ; ) {
      if (this.#signal.aborted) return;
      const pick = this.#pick();
      if (pick === "exit") return;
      if (pick === "wait") {
        await this.changed(idle++ < 4 ? 50 : 250);
        continue;
      }
      idle = 0;
      await pick.run();
    }
  }

  #pick(): Pick {
    for (const job of this.active) {
      if (job.phase === "fetching" && !job.whole && job.pending.length > 0) {
        const task = job.pending.shift()!;
        return { run: () => this.#hooks.chunk(job, task) };
      }
    }
    const now = this.#now();
    if (this.active.length < this.#opts.maxFiles) {
      const i = this.queue.findIndex((j) => j.notBefore <= now);
      if (i >= 0) {
        const job = this.queue.splice(i, 1)[0]!;
        job.to("opening");
        this.active.push(job);
        return { run: () => this.#hooks.open(job) };
      }
    }
    const steal = this.#stealable();
    if (steal) return { run: () => this.#hooks.chunk(steal.job, steal.task) };
    if (this.queue.length === 0 && this.active.length === 0) return "exit";
    return "wait";
  }

  #stealable(): { job: FileJob; task: ChunkTask } | undefined {
    let best: { job: FileJob; victim: ChunkTask } | undefined;
    let bestLeft = 2 * STEAL_MIN;
    for (const job of this.active) {
      if (job.phase !== "fetching" || job.whole || job.urls.size === 0) continue;
      for (const t of job.running) {
        const left = t.end - t.received;
        if (left >= bestLeft) {
          bestLeft = left;
          best = { job, victim: t };
        }
      }
    }
    if (!best) return undefined;
    const { victim } = best;
    // Split at what the victim has received (buffered or written): it never takes a byte past its
    // new end, so the halves never overlap.
    const mid = victim.received + Math.floor((victim.end - victim.received) / 2);
    const task = chunkTask(mid, victim.end);
    victim.end = mid;
    return { job: best.job, task };
  }
}
