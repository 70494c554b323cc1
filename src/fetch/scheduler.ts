import type { ChunkTask } from "./chunk.js";
import { chunkTask } from "./chunk.js";
import type { FileJob } from "./job.js";

/** A running chunk is split when a worker is idle and the thief would get at least this much. */
export const STEAL_MIN = 1024 * 1024;

/** Smallest bounded request: a steal point every few MiB at the tail, one round trip per few MiB. */
export const REQUEST_MIN = 2 * 1024 * 1024;
/** A request asks for about this long of its connection's measured rate: one round trip per ~2 s is <1% even at 20 ms RTT. */
export const REQUEST_SECONDS = 2;

/**
 * Bytes the next request of a chunk asks for, `left` bytes before its end: about REQUEST_SECONDS of
 * the endpoint's per-request rate (REQUEST_MIN while unmeasured), but at most 1/(2 x connections) of
 * what the run has not asked for yet (`unasked`), so requests shrink as the run nears its end and
 * every connection finishes at about the same time, with a steal point in each running chunk (guided
 * self-scheduling). A remainder smaller than REQUEST_MIN goes with the request.
 */
export function requestSize(
  left: number,
  bytesPerSec: number | undefined,
  unasked: number,
  connections: number,
): number {
  let size = Math.max(REQUEST_MIN, Math.round((bytesPerSec ?? 0) * REQUEST_SECONDS));
  size = Math.min(size, Math.max(REQUEST_MIN, Math.ceil(unasked / (2 * connections))));
  return left - size < REQUEST_MIN ? left : size;
}

/** A file is cut into at least this many pieces per connection (when that leaves them >= REQUEST_MIN). */
export const PIECES_PER_CONNECTION = 4;

/**
 * The size of the pieces a file is cut into (workers take them lowest offset first): at most
 * `chunkSize`, and small enough that every connection gets PIECES_PER_CONNECTION of them in turn,
 * but not below REQUEST_MIN. Why: the hash runs over the in-order prefix of the file as it lands.
 * Pieces of 16 MiB for a 256 MiB file on 32 connections put every connection on it at once, spread
 * over the whole file: nothing is contiguous until the very end, and all 256 MiB were hashed after
 * the last byte (0.2-1 s on the critical path). With 2 MiB pieces taken in order, the prefix grows
 * wave by wave during the download and only the last wave (~1/4) is left to hash at the end.
 */
export function pieceSize(fileSize: number, chunkSize: number, connections: number): number {
  const share = Math.ceil(fileSize / (PIECES_PER_CONNECTION * Math.max(1, connections)) / (1024 * 1024));
  return Math.min(chunkSize, Math.max(REQUEST_MIN, share * 1024 * 1024));
}

export interface SchedulerHooks {
  /** Takes a queued job through opening (and further, as far as it goes on this worker). */
  open(job: FileJob): Promise<void>;
  /** Fetches one chunk of a job. */
  chunk(job: FileJob, task: ChunkTask): Promise<void>;
  /**
   * Whether one more connection may serve `job` now (its endpoints' connection counts, see
   * src/fetch/conns.ts); absent: always. Asked before a chunk, a steal or opening a large file.
   */
  room?(job: FileJob): boolean;
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
  /** No job will be added any more: workers exit once the queue and the active set are empty. */
  #ended: boolean;

  /**
   * `more`: jobs will still come through add(); the workers wait for them (and the tail sizing of
   * requests does not start) until end().
   */
  constructor(
    opts: SchedulerOptions,
    jobs: FileJob[],
    signal: AbortSignal,
    hooks: SchedulerHooks,
    more = false,
  ) {
    this.#opts = opts;
    this.queue = jobs;
    this.#signal = signal;
    this.#hooks = hooks;
    this.#ended = !more;
  }

  /** More jobs for the running workers (the queue keeps their order). */
  add(jobs: readonly FileJob[]): void {
    if (this.#ended) throw new Error("internal: scheduler: add() after end()");
    for (const j of jobs) this.queue.push(j);
    this.notify();
  }

  /** No more jobs: the workers exit once everything queued and active is done. */
  end(): void {
    this.#ended = true;
    this.notify();
  }

  get ended(): boolean {
    return this.#ended;
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

  #room(job: FileJob): boolean {
    return this.#hooks.room?.(job) ?? true;
  }

  #pick(): Pick {
    for (const job of this.active) {
      const open = job.phase === "fetching" || (job.phase === "probing" && job.probes > 0);
      if (open && !job.whole && job.pending.length > 0 && this.#room(job)) {
        if (job.phase === "probing") job.probes--;
        const task = job.pending.shift()!;
        return { run: () => this.#hooks.chunk(job, task) };
      }
    }
    const now = this.#now();
    if (this.active.length < this.#opts.maxFiles) {
      const i = this.queue.findIndex((j) => j.notBefore <= now && this.#room(j));
      if (i >= 0) {
        const job = this.queue.splice(i, 1)[0]!;
        job.to("opening");
        this.active.push(job);
        return { run: () => this.#hooks.open(job) };
      }
    }
    const steal = this.#stealable();
    if (steal) return { run: () => this.#hooks.chunk(steal.job, steal.task) };
    if (this.#ended && this.queue.length === 0 && this.active.length === 0) return "exit";
    return "wait";
  }

  #stealable(): { job: FileJob; task: ChunkTask } | undefined {
    let best: { job: FileJob; victim: ChunkTask; split: number } | undefined;
    let bestLeft = STEAL_MIN - 1;
    for (const job of this.active) {
      if (job.phase !== "fetching" || job.whole || job.urls.size === 0 || !this.#room(job)) continue;
      for (const t of job.running) {
        const split = splitPoint(t);
        const left = t.end - split;
        if (left > bestLeft) {
          bestLeft = left;
          best = { job, victim: t, split };
        }
      }
    }
    if (!best) return undefined;
    const { victim, split } = best;
    const task = chunkTask(split, victim.end);
    victim.end = split;
    return { job: best.job, task };
  }

  /**
   * Bytes of the run not asked of any server yet: pending chunks, the rest of running chunks past
   * their request in flight, queued files. Counting stops once past `limit`; infinite while jobs may
   * still be added.
   */
  unasked(limit: number): number {
    // Jobs still to come: the run is not near its end, the rate alone decides.
    if (!this.#ended) return Number.POSITIVE_INFINITY;
    let n = 0;
    for (const job of this.active) {
      for (const t of job.pending) n += t.end - t.pos;
      for (const t of job.running) n += Math.max(0, t.end - Math.max(t.pos, t.asked));
      if (n > limit) return n;
    }
    for (const job of this.queue) {
      n += job.size;
      if (n > limit) return n;
    }
    return n;
  }
}

/**
 * Where a thief may split a running chunk: half of what the victim has not received, but never
 * before the end of the victim's request in flight (the server sends those bytes anyway; they would
 * be thrown away). The victim keeps [.., split), the thief takes [split, end).
 */
export function splitPoint(t: ChunkTask): number {
  const mid = t.received + Math.floor((t.end - t.received) / 2);
  return Math.max(mid, t.asked);
}
