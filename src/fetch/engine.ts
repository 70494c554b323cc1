import { setMaxListeners } from "node:events";
import { constants } from "node:fs";
import { type FileHandle, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { discardIncomplete, openNoFollow, type Placement } from "../cache/commit.js";
import { type Release, tryLock } from "../cache/lock.js";
import type { EngineOptions } from "../config.js";
import { HfgetError, isHfgetError } from "../errors.js";
import type { EventSink, FileStatus } from "../events.js";
import type { HttpClient } from "../hub/http.js";
import { expectedHash, type RepoFile } from "../hub/types.js";
import { loadState, removeState, StateWriter } from "../state.js";
import { atPath, diskError } from "../util/io-error.js";
import { RangeSet, splitRanges } from "../util/range-set.js";
import type { RetryPolicy, Sleep } from "../util/retry.js";
import { HashPump } from "../verify.js";
import { type ChunkTask, ContentChangedError, chunkTask, ExpiredUrlError, fetchChunk } from "./chunk.js";
import { type AttemptState, type Decided, decide, FRESH_ATTEMPTS } from "./decide.js";

/** One file to fetch: what it is, where it comes from, where it goes. */
export interface FileWork {
  readonly file: RepoFile;
  /** The hub's resolve URL (at the commit). */
  readonly resolveUrl: string;
  readonly placement: Placement;
  /** Re-download even if present. */
  readonly force: boolean;
}

export interface EngineContext {
  readonly http: HttpClient;
  readonly options: EngineOptions;
  readonly retry: RetryPolicy;
  readonly signal: AbortSignal;
  readonly emit: EventSink;
  readonly sleep: Sleep;
  readonly random?: () => number;
}

export interface FileOutcome {
  readonly status: FileStatus;
  readonly error?: HfgetError | undefined;
}

/** A running chunk is split when at least twice this much is left and a worker is idle. */
const STEAL_MIN = 1024 * 1024;
const LOCK_RETRY_MS = 500;
/**
 * Smaller files keep no resume state: an interrupted one costs at most this much again, while a
 * state file (read, written, removed) would cost a dataset of 3000 small files ~10k syscalls.
 */
const STATE_MIN_BYTES = 1024 * 1024;

type Phase = "queued" | "opening" | "probing" | "fetching" | "finishing" | "done";

class Job {
  phase: Phase = "queued";
  notBefore = 0;
  fh: FileHandle | undefined;
  written = new RangeSet();
  pump: HashPump | undefined;
  state: StateWriter | undefined;
  release: Release | undefined;
  pending: ChunkTask[] = [];
  running = new Set<ChunkTask>();
  /** The CDN URL, once a response told us where the bytes are. */
  url: string | undefined;
  etag: string | undefined;
  /** The server ignores Range: one stream for the whole file. */
  whole = false;
  /** Bumped whenever in-flight requests of this file must be dropped (restart, whole-file switch). */
  generation = 0;
  controller: AbortController;
  verifyFailures = 0;

  constructor(
    readonly work: FileWork,
    readonly runSignal: AbortSignal,
  ) {
    this.controller = this.#linkedController();
  }

  /** A controller for this file's requests that also aborts with the run. */
  #linkedController(): AbortController {
    const c = new AbortController();
    // Every chunk request and retry sleep of the file listens on it: more than Node's default 10.
    setMaxListeners(0, c.signal);
    const onRunAbort = () => c.abort(this.runSignal.reason);
    if (this.runSignal.aborted) onRunAbort();
    else this.runSignal.addEventListener("abort", onRunAbort, { once: true, signal: c.signal });
    return c;
  }

  get path(): string {
    return this.work.file.path;
  }
  get size(): number {
    return this.work.file.size;
  }
  get complete(): boolean {
    return this.pending.length === 0 && this.running.size === 0 && this.written.total >= this.size;
  }
  /** Drop all requests in flight for this file and start a new generation. */
  newGeneration(): void {
    this.generation++;
    this.controller.abort(new Error("superseded"));
    this.controller = this.#linkedController();
  }
}

type Pick = { run: () => Promise<void> } | "wait" | "exit";

/**
 * A pool of `connections` workers sharing every file of the run. A worker takes, in order: a
 * pending chunk of a file already in flight; a new file (up to `maxFiles` in flight); half of the
 * largest running chunk (so the tail of a big file never waits on one slow connection).
 */
export class Engine {
  readonly #ctx: EngineContext;
  readonly #queue: Job[];
  readonly #active: Job[] = [];
  readonly #outcomes = new Map<string, FileOutcome>();
  readonly #runController = new AbortController();
  /** The first run-wide failure: an HfgetError, or a bug (anything else), rethrown as is. */
  #fatal: unknown;
  #hasFatal = false;
  #retrying = 0;
  #waiters: (() => void)[] = [];

  constructor(ctx: EngineContext, works: readonly FileWork[]) {
    this.#ctx = ctx;
    setMaxListeners(0, this.#runController.signal);
    this.#queue = works.map((w) => new Job(w, this.#runController.signal));
    const onAbort = () => this.#runController.abort(ctx.signal.reason);
    this.#onCallerAbort = onAbort;
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener("abort", onAbort, { once: true });
  }

  readonly #onCallerAbort: () => void;

  get #signal(): AbortSignal {
    return this.#runController.signal;
  }

  /** Runs every file; resolves with each file's outcome. Throws only for run-wide failures. */
  async run(): Promise<Map<string, FileOutcome>> {
    const workers = Array.from({ length: this.#ctx.options.connections }, () => this.#worker());
    try {
      await Promise.all(workers);
    } finally {
      await Promise.all(this.#active.map((j) => this.#park(j)));
      // The caller's signal may outlive this run (one signal for many downloads).
      this.#ctx.signal.removeEventListener("abort", this.#onCallerAbort);
    }
    if (this.#ctx.signal.aborted) {
      throw new HfgetError("INTERRUPTED", "interrupted; progress is saved, rerun the same command to resume");
    }
    if (this.#hasFatal) throw this.#fatal;
    return this.#outcomes;
  }

  #notify(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  #changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  async #worker(): Promise<void> {
    for (let idle = 0; ; ) {
      if (this.#signal.aborted) return;
      const pick = this.#pick();
      if (pick === "exit") return;
      if (pick === "wait") {
        await this.#changed(idle++ < 4 ? 50 : 250);
        continue;
      }
      idle = 0;
      await pick.run();
    }
  }

  #pick(): Pick {
    for (const job of this.#active) {
      if (job.phase === "fetching" && !job.whole && job.pending.length > 0) {
        const task = job.pending.shift()!;
        return { run: () => this.#runChunk(job, task) };
      }
    }
    const now = Date.now();
    if (this.#active.length < this.#ctx.options.maxFiles) {
      const i = this.#queue.findIndex((j) => j.notBefore <= now);
      if (i >= 0) {
        const job = this.#queue.splice(i, 1)[0]!;
        job.phase = "opening";
        this.#active.push(job);
        return { run: () => this.#openJob(job) };
      }
    }
    const steal = this.#stealable();
    if (steal) return { run: () => this.#runChunk(steal.job, steal.task) };
    if (this.#queue.length === 0 && this.#active.length === 0) return "exit";
    return "wait";
  }

  #stealable(): { job: Job; task: ChunkTask } | undefined {
    let best: { job: Job; victim: ChunkTask } | undefined;
    let bestLeft = 2 * STEAL_MIN;
    for (const job of this.#active) {
      if (job.phase !== "fetching" || job.whole || job.url === undefined) continue;
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

  #finishJob(job: Job, outcome: FileOutcome): void {
    job.phase = "done";
    const i = this.#active.indexOf(job);
    if (i >= 0) this.#active.splice(i, 1);
    this.#outcomes.set(job.path, outcome);
    this.#ctx.emit({ type: "file-done", path: job.path, size: job.size, status: outcome.status });
    this.#notify();
  }

  /** Closes a file's handles, keeping its resume state (interrupt or failure). */
  async #park(job: Job): Promise<void> {
    job.controller.abort(new Error("stopped"));
    await job.state?.flush();
    await job.state?.close();
    job.state = undefined;
    await job.fh?.close().catch(() => undefined);
    job.fh = undefined;
    await job.release?.();
    job.release = undefined;
  }

  /** Waits for one of the retry slots; false when the chunk was superseded meanwhile. */
  async #acquireRetrySlot(superseded: () => boolean): Promise<boolean> {
    const cap = Math.max(2, Math.ceil(this.#ctx.options.connections / 2));
    for (;;) {
      if (superseded()) return false;
      if (this.#retrying < cap) {
        this.#retrying++;
        return true;
      }
      await this.#changed(100);
    }
  }

  #runFatal(err: unknown): void {
    if (!this.#hasFatal) {
      this.#hasFatal = true;
      this.#fatal = err;
    }
    this.#runController.abort(err);
    this.#notify();
  }

  async #failJob(job: Job, err: unknown): Promise<void> {
    // Stop handing out this file's chunks now: other workers must not pick them (and retry) while
    // the teardown below awaits.
    job.pending = [];
    job.phase = "done";
    if (!isHfgetError(err)) {
      // Errno and socket errors were made HfgetErrors at the I/O boundary: this is a bug. Stop the
      // run and let it surface as "internal error" (exit 1), never disguised as disk or network.
      job.generation++;
      await this.#park(job).catch(() => undefined);
      this.#finishJob(job, { status: "failed" });
      this.#runFatal(err);
      return;
    }
    const e = err;
    // A file that is missing or fails verification is that file's problem; anything else
    // (network gave up, disk full, auth) will hit every other file too: stop the run.
    const perFile = e.code === "VERIFY_FAILED" || e.code === "ENTRY_NOT_FOUND";
    job.generation++;
    if (e.code === "VERIFY_FAILED") {
      job.controller.abort(e);
      await job.state?.close();
      job.state = undefined;
      await job.fh?.close().catch(() => undefined);
      job.fh = undefined;
      // Best effort: the file fails either way, and the next run truncates what is left.
      await discardIncomplete(job.work.placement).catch(() => undefined);
      await job.release?.();
      job.release = undefined;
    } else {
      await this.#park(job);
    }
    this.#finishJob(job, { status: "failed", error: e });
    if (!perFile) this.#runFatal(e);
  }

  async #openJob(job: Job): Promise<void> {
    try {
      // The caller's plan (src/plan) already skipped files that were present; "present?" is asked
      // again only under the lock, where the answer cannot change.
      const { placement } = job.work;
      const release = await atPath(placement.lock, () => tryLock(placement.lock));
      if (release === undefined) {
        // Another process is fetching this blob: come back later (it may be done by then).
        if (job.notBefore === 0) this.#ctx.emit({ type: "lock-wait", path: job.path, lock: placement.lock });
        job.phase = "queued";
        job.notBefore = Date.now() + LOCK_RETRY_MS;
        this.#active.splice(this.#active.indexOf(job), 1);
        this.#queue.push(job);
        this.#notify();
        return;
      }
      job.release = release;
      // Another process may have committed the file since the plan's survey (or while we waited for
      // its lock): re-checked under the lock, and our own partial file and state are then stale.
      if (!job.work.force && (await placement.isPresent())) {
        await discardIncomplete(placement).catch(() => undefined);
        await release();
        job.release = undefined;
        this.#finishJob(job, { status: "cached" });
        return;
      }
      await atPath(placement.incomplete, () => this.#openFile(job));
    } catch (err) {
      await this.#failJob(job, err);
      return;
    }
    await this.#start(job);
  }

  /** Opens the `.incomplete` file, resuming from saved state when it matches. */
  async #openFile(job: Job): Promise<void> {
    const { placement, file } = job.work;
    await placement.prepare();
    const expected = expectedHash(file);
    const identity = { size: file.size, hash: `${expected.algorithm}:${expected.hex}` };
    const resumable = file.size >= STATE_MIN_BYTES;
    let saved = resumable ? await loadState(placement.state, identity) : undefined;
    let fh: FileHandle | undefined;
    if (saved !== undefined) {
      try {
        fh = await openNoFollow(placement.incomplete, constants.O_RDWR);
        if ((await fh.stat()).size !== file.size) {
          saved = undefined;
          await fh.truncate(0);
        }
      } catch {
        saved = undefined;
      }
    }
    if (fh === undefined) {
      fh = await openNoFollow(placement.incomplete, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC);
    }
    job.fh = fh;
    job.written = new RangeSet(saved?.done ?? []);
    job.etag = saved?.etag;
    if (resumable) {
      if (saved === undefined) {
        await removeState(placement.state);
        if (file.size > this.#ctx.options.chunkSize) await this.#checkSpace(placement.incomplete, file.size);
      }
      // Preallocate (sparse): chunks write at their own offsets, and the size tells a resumable file.
      await fh.truncate(file.size);
      job.state = new StateWriter(placement.state, () => ({
        version: 1,
        size: file.size,
        hash: identity.hash,
        etag: job.etag,
        done: job.written.toJSON(),
      }));
    }
    job.pump = new HashPump(fh, file.size, expected, job.written, this.#prefixSink(job));
    job.pump.kick();
    this.#ctx.emit({ type: "file-start", path: job.path, size: job.size, resumedBytes: job.written.total });
  }

  /** The in-order hashed prefix of a file, as an event (hfget serve streams a blob still in flight). */
  #prefixSink(job: Job): (bytes: number) => void {
    return (bytes) => this.#ctx.emit({ type: "prefix", path: job.path, bytes });
  }

  async #checkSpace(path: string, needed: number): Promise<void> {
    let free: number;
    try {
      const st = await statfs(dirname(path));
      free = st.bavail * st.bsize;
    } catch {
      return; // no statfs here: ENOSPC on write still gives a clear error
    }
    if (free < needed) {
      throw new HfgetError("DISK", `not enough space for ${path}: needs ${needed} bytes, ${free} free`, {
        hint: "free some space (or choose another --cache-dir / --local-dir), then rerun",
      });
    }
  }

  /** Plans the file's remaining ranges and fetches the first one through the hub's resolve URL. */
  async #start(job: Job): Promise<void> {
    const gaps = job.written.gaps(job.size);
    if (gaps.length === 0) {
      job.phase = "finishing";
      await this.#finish(job);
      return;
    }
    const pieces = splitRanges(gaps, this.#ctx.options.chunkSize).map(([s, e]) => chunkTask(s, e));
    const first = pieces.shift()!;
    job.pending = pieces;
    job.phase = "probing";
    // The first request resolves the redirect; the rest of the file waits for its answer.
    await this.#runChunk(job, first);
  }

  async #runChunk(job: Job, task: ChunkTask): Promise<void> {
    const generation = job.generation;
    job.running.add(task);
    const file = job.work.file;
    const what = file.path;
    let attempts: AttemptState = FRESH_ATTEMPTS;
    const superseded = () => this.#signal.aborted || job.generation !== generation || job.phase === "done";
    for (;;) {
      if (superseded()) return;
      // A server that ignores Range always sends from byte 0: so does every retry of that stream.
      if (job.whole) {
        task.pos = 0;
        task.received = 0;
      }
      const before = task.pos;
      const usedUrl = job.url;
      try {
        const viaResolve = job.url === undefined;
        const wholeFile = job.whole || (viaResolve && task.pos === 0 && task.end === job.size);
        const outcome = await fetchChunk({
          http: this.#ctx.http,
          url: job.url ?? job.work.resolveUrl,
          size: job.size,
          task,
          fh: job.fh!,
          wholeFile,
          signal: job.controller.signal,
          what,
          filePath: job.work.placement.incomplete,
          expectEtag: job.etag,
          // The first answer tells where the bytes are: the other connections can start now,
          // not when this whole chunk is done.
          onResponse: (url, etag) => {
            if (job.generation !== generation || job.whole) return;
            if (job.url === undefined) job.url = url;
            if (job.etag === undefined && etag !== undefined) {
              job.etag = etag;
              void job.state?.flush();
            }
            if (job.phase === "probing") {
              job.phase = "fetching";
              this.#notify();
            }
          },
          onWritten: (offset, buf) => {
            if (job.generation !== generation) return;
            job.written.add(offset, offset + buf.length);
            job.pump?.onWritten(offset, buf);
            job.state?.touch(buf.length);
            this.#ctx.emit({ type: "bytes", path: what, bytes: buf.length });
          },
        });
        if (superseded()) return;
        if (outcome.kind === "range-ignored") {
          await this.#switchToWhole(job);
          return;
        }
        break;
      } catch (err) {
        if (superseded()) return;
        if (err instanceof ContentChangedError) {
          await this.#restart(job, err);
          return;
        }
        let d: Decided;
        try {
          d = decide(err, task.pos - before, attempts, this.#ctx.retry, this.#ctx.random);
        } catch (bug) {
          job.running.delete(task);
          await this.#failJob(job, bug);
          return;
        }
        attempts = d.next;
        const decision = d.decision;
        if (decision.kind === "resolve-again") {
          // Every chunk of the file sees the 403 at once; only the URL they used is dropped.
          if (job.url === usedUrl) job.url = undefined;
          continue;
        }
        if (err instanceof ExpiredUrlError && job.url === usedUrl) job.url = undefined;
        if (decision.kind === "give-up") {
          job.running.delete(task);
          await this.#failJob(job, decision.error);
          return;
        }
        const delayMs = decision.delayMs;
        if (delayMs === 0) continue;
        const capped = decision.kind === "retry" && decision.capped;
        if (capped && !(await this.#acquireRetrySlot(superseded))) return;
        const attempt = decision.kind === "retry" ? decision.attempt : attempts.failures;
        const reason = err instanceof Error ? err.message : String(err);
        this.#ctx.emit({ type: "retry", path: what, attempt, delayMs, reason });
        try {
          await this.#ctx.sleep(delayMs, job.controller.signal);
        } catch {
          return;
        } finally {
          if (capped) {
            this.#retrying--;
            this.#notify();
          }
        }
      }
    }
    job.running.delete(task);
    // A finished chunk is saved now, not within the second: kill -9 loses only chunks in flight.
    void job.state?.flush();
    if (job.complete && job.phase === "fetching") {
      job.phase = "finishing";
      await this.#finish(job);
    }
  }

  /** The server answered 200 to a Range request: drop the chunks, fetch the file as one stream. */
  async #switchToWhole(job: Job): Promise<void> {
    job.newGeneration();
    job.whole = true;
    job.pending = [];
    job.running.clear();
    job.written = new RangeSet();
    job.pump = new HashPump(
      job.fh!,
      job.size,
      expectedHash(job.work.file),
      job.written,
      this.#prefixSink(job),
    );
    job.phase = "fetching";
    await this.#runChunk(job, chunkTask(0, job.size));
  }

  /** Throws the bytes away and fetches the file again, once; a second failure fails the file. */
  async #restart(job: Job, err: HfgetError): Promise<void> {
    job.verifyFailures++;
    this.#ctx.emit({ type: "verify-failed", path: job.path, willRetry: job.verifyFailures < 2 });
    if (job.verifyFailures >= 2) {
      await this.#failJob(job, err);
      return;
    }
    job.newGeneration();
    job.pending = [];
    job.running.clear();
    await job.state?.close();
    job.state = undefined;
    await job.fh?.close().catch(() => undefined);
    job.fh = undefined;
    job.url = undefined;
    job.etag = undefined;
    job.whole = false;
    try {
      await atPath(job.work.placement.incomplete, () => discardIncomplete(job.work.placement));
      await atPath(job.work.placement.incomplete, () => this.#openFile(job));
    } catch (e) {
      await this.#failJob(job, e);
      return;
    }
    await this.#start(job);
  }

  async #finish(job: Job): Promise<void> {
    const generation = job.generation;
    const { file, placement } = job.work;
    const expected = expectedHash(file);
    let digest: string;
    try {
      digest = await job.pump!.digest();
    } catch (err) {
      await this.#failJob(job, diskError(err, placement.incomplete, "cannot read back"));
      return;
    }
    if (job.generation !== generation) return;
    if (digest !== expected.hex) {
      const algo = expected.algorithm === "sha256" ? "SHA-256" : "git SHA-1";
      await this.#restart(
        job,
        new HfgetError(
          "VERIFY_FAILED",
          `${file.path}: ${algo} mismatch: expected ${expected.hex}, got ${digest}`,
          {
            hint: "the server sent wrong bytes twice; nothing was kept. Try another --mirror or retry later",
          },
        ),
      );
      return;
    }
    try {
      await job.state?.close();
      job.state = undefined;
      await atPath(placement.incomplete, async () => job.fh?.close());
      job.fh = undefined;
      await atPath(placement.incomplete, () => placement.commit());
      if (job.work.file.size >= STATE_MIN_BYTES)
        await atPath(placement.state, () => removeState(placement.state));
    } catch (err) {
      await this.#failJob(job, err);
      return;
    } finally {
      await job.release?.();
      job.release = undefined;
    }
    this.#finishJob(job, { status: "downloaded" });
  }
}
