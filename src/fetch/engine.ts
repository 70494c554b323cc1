import { setMaxListeners } from "node:events";
import { constants } from "node:fs";
import { type FileHandle, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { openNoFollow } from "../cache/commit.js";
import { tryLock } from "../cache/lock.js";
import type { EngineOptions } from "../config.js";
import { HfgetError, isHfgetError, mostTellingCode } from "../errors.js";
import type { EventSink, FileStatus } from "../events.js";
import type { HttpClient } from "../hub/http.js";
import { expectedHash } from "../hub/types.js";
import { loadState, removeState, StateWriter } from "../state.js";
import { atPath, diskError } from "../util/io-error.js";
import { type ByteRange, RangeSet, splitRanges } from "../util/range-set.js";
import type { RetryPolicy, Sleep } from "../util/retry.js";
import { createHashPump } from "../verify.js";
import { type ChunkTask, ContentChangedError, chunkTask, ExpiredUrlError, fetchChunk } from "./chunk.js";
import { type AttemptState, type Decided, decide, FRESH_ATTEMPTS } from "./decide.js";
import { FileJob, type FileWork, STATE_MIN_BYTES } from "./job.js";
import { pieceSize, REQUEST_MIN, REQUEST_SECONDS, requestSize, Scheduler } from "./scheduler.js";
import { type Endgame, type FileSource, SourcePool } from "./sources.js";

export type { FileWork } from "./job.js";
export type { FileSource } from "./sources.js";

export interface EngineContext {
  readonly http: HttpClient;
  /**
   * The client for one endpoint's requests, when each endpoint has its own (hfget serve: the
   * server's token goes to each upstream's own origin only). Default: `http` for every endpoint.
   */
  readonly httpFor?: ((endpoint: string) => HttpClient) | undefined;
  readonly options: EngineOptions;
  readonly retry: RetryPolicy;
  readonly signal: AbortSignal;
  readonly emit: EventSink;
  readonly sleep: Sleep;
  readonly random?: () => number;
  /** What the run knows of its endpoints; one per run (a new one when absent). */
  readonly pool?: SourcePool;
}

export interface FileOutcome {
  readonly status: FileStatus;
  readonly error?: HfgetError | undefined;
}

export interface EngineInput {
  /**
   * More works will come through add() (a listing still being paged): the run waits for them and
   * ends only after end(). Without it the works given to the constructor are the whole run.
   */
  readonly more?: boolean;
}

const LOCK_RETRY_MS = 500;
const NONE: ReadonlySet<string> = new Set();

/** `a` less everything in `b`. */
function subtract(a: readonly ByteRange[], b: RangeSet, size: number): RangeSet {
  const out = new RangeSet();
  const keep = b.gaps(size);
  for (const [s, e] of a) {
    for (const [ks, ke] of keep) {
      const lo = Math.max(s, ks);
      const hi = Math.min(e, ke);
      if (lo < hi) out.add(lo, hi);
    }
  }
  return out;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Runs the files of one download: a scheduler (src/fetch/scheduler.ts) hands chunks to workers,
 * each file is a FileJob (src/fetch/job.ts) moving through its phases, every failed request goes
 * through the pure decision of src/fetch/decide.ts, and the source pool (src/fetch/sources.ts)
 * says which endpoint serves each request.
 */
export class Engine {
  readonly #ctx: EngineContext;
  readonly #pool: SourcePool;
  readonly #sched: Scheduler;
  readonly #outcomes = new Map<string, FileOutcome>();
  readonly #runController = new AbortController();
  /** The first run-wide failure: an HfgetError, or a bug (anything else), rethrown as is. */
  #fatal: unknown;
  #hasFatal = false;
  readonly #onCallerAbort: () => void;
  /** Stops this run hearing of room on the pool's endpoints (the pool may outlive it: hfget serve). */
  readonly #ungovern: () => void;
  /** The endpoint each chunk in flight is being fetched from now (for the endgame's balance). */
  readonly #fetchingFrom = new Map<ChunkTask, string>();

  constructor(ctx: EngineContext, works: readonly FileWork[], input: EngineInput = {}) {
    this.#ctx = ctx;
    this.#pool = ctx.pool ?? new SourcePool();
    setMaxListeners(0, this.#runController.signal);
    this.#sched = new Scheduler(
      { connections: ctx.options.connections, maxFiles: ctx.options.maxFiles },
      this.#jobs(works),
      this.#runController.signal,
      {
        open: (job) => this.#openJob(job),
        chunk: (job, task) => this.#runChunk(job, task),
        // A small file is one short request, bound by latency: only large files' chunks wait for room.
        room: (job) => {
          if (job.size <= ctx.options.chunkSize) return true;
          const open = this.#open(job, NONE);
          // The endgame only balances several sources: not worked out on every pick for one.
          return this.#pool.roomFor(
            open,
            open.length > 1 ? this.#endgame(job.pending[0], job.size) : undefined,
          );
        },
      },
      input.more === true,
    );
    // Each endpoint's connections grow while they raise its rate, up to --connections.
    this.#ungovern = this.#pool.governConnections(ctx.options.connections, () => this.#sched.notify());
    const onAbort = () => this.#runController.abort(ctx.signal.reason);
    this.#onCallerAbort = onAbort;
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener("abort", onAbort, { once: true });
  }

  #jobs(works: readonly FileWork[]): FileJob[] {
    for (const w of works) {
      if (w.sources.length === 0) throw new Error(`internal: ${w.file.path} has no source`);
    }
    return works.map((w) => new FileJob(w, this.#runController.signal));
  }

  /**
   * More files for this run (only with `more`, before end()); run() may already be running. Their
   * outcomes join the one map run() resolves with.
   */
  add(works: readonly FileWork[]): void {
    if (this.#hasFatal || this.#signal.aborted) return; // the run is stopping: nothing new starts
    this.#sched.add(this.#jobs(works));
  }

  /**
   * No more files: run() resolves once those added are done. With `error` the input failed (the
   * listing broke off): the run stops as for any run-wide failure (what is in flight keeps its resume
   * state) and run() throws it, unless a failure came first. Calling it again does nothing.
   */
  end(error?: unknown): void {
    if (this.#sched.ended) return;
    if (error !== undefined) this.#runFatal(error);
    this.#sched.end();
  }

  get #signal(): AbortSignal {
    return this.#runController.signal;
  }

  /** Runs every file; resolves with each file's outcome. Throws only for run-wide failures. */
  async run(): Promise<Map<string, FileOutcome>> {
    try {
      await this.#sched.run();
    } finally {
      // Interrupted or stopped by a run-wide failure: what is in flight keeps its resume state.
      await Promise.all(this.#sched.active.map((j) => j.teardown("keep")));
      // The caller's signal may outlive this run (one signal for many downloads).
      this.#ctx.signal.removeEventListener("abort", this.#onCallerAbort);
      this.#ungovern();
    }
    if (this.#ctx.signal.aborted) {
      throw new HfgetError("INTERRUPTED", "interrupted; progress is saved, rerun the same command to resume");
    }
    if (this.#hasFatal) throw this.#fatal;
    return this.#outcomes;
  }

  #finishJob(job: FileJob, outcome: FileOutcome): void {
    if (job.phase !== "done") job.to("done");
    this.#outcomes.set(job.path, outcome);
    this.#sched.remove(job);
    this.#ctx.emit({ type: "file-done", path: job.path, size: job.size, status: outcome.status });
  }

  #runFatal(err: unknown): void {
    if (!this.#hasFatal) {
      this.#hasFatal = true;
      this.#fatal = err;
    }
    this.#runController.abort(err);
    this.#sched.notify();
  }

  async #failJob(job: FileJob, err: unknown): Promise<void> {
    if (job.phase === "done") return;
    // Stop handing out this file's chunks now: other workers must not pick them (and retry) while
    // the teardown below awaits.
    job.pending = [];
    job.to("done");
    job.generation++;
    if (!isHfgetError(err)) {
      // Errno and socket errors were made HfgetErrors at the I/O boundary: this is a bug. Stop the
      // run and let it surface as "internal error" (exit 1), never disguised as disk or network.
      await job.teardown("keep").catch(() => undefined);
      this.#finishJob(job, { status: "failed" });
      this.#runFatal(err);
      return;
    }
    // A file that is missing or fails verification is that file's problem; anything else
    // (network gave up, disk full, auth) will hit every other file too: stop the run.
    const perFile = err.code === "VERIFY_FAILED" || err.code === "ENTRY_NOT_FOUND";
    await job.teardown(err.code === "VERIFY_FAILED" ? "discard" : "keep");
    this.#finishJob(job, { status: "failed", error: err });
    if (!perFile) this.#runFatal(err);
  }

  async #openJob(job: FileJob): Promise<void> {
    try {
      // The caller's plan (src/plan) already skipped files that were present; "present?" is asked
      // again only under the lock, where the answer cannot change.
      const { placement } = job.work;
      const release = await atPath(placement.lock, () => tryLock(placement.lock));
      if (release === undefined) {
        // Another process is fetching this blob: come back later (it may be done by then).
        if (job.notBefore === 0) this.#ctx.emit({ type: "lock-wait", path: job.path, lock: placement.lock });
        this.#sched.requeue(job, Date.now() + LOCK_RETRY_MS);
        return;
      }
      job.release = release;
      // Another process may have committed the file since the plan's survey (or while we waited for
      // its lock): re-checked under the lock, and our own partial file and state are then stale.
      if (!job.work.force && (await placement.isPresent())) {
        await job.teardown("discard");
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
  async #openFile(job: FileJob): Promise<void> {
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
      job.state = new StateWriter(
        placement.state,
        () => ({
          version: 1,
          size: file.size,
          hash: identity.hash,
          etag: job.etag,
          done: job.written.toJSON(),
        }),
        // Each write's range is journaled as it lands: kill -9 loses no written byte (state.ts).
        { journal: saved?.log ?? true },
      );
    }
    this.#newPump(job, expected);
    this.#ctx.emit({ type: "file-start", path: job.path, size: job.size, resumedBytes: job.written.total });
  }

  /** A new hash pump over the job's written set; the one it replaces stops (its hashing is moot). */
  #newPump(job: FileJob, expected = expectedHash(job.work.file)): void {
    void job.pump?.close();
    job.pump = createHashPump(
      {
        fh: job.fh!,
        path: job.work.placement.incomplete,
        size: job.size,
        expected,
        written: job.written,
        onPrefix: this.#prefixSink(job),
      },
      this.#ctx.options.hashThreadMinBytes,
    );
    job.pump.kick();
  }

  /** The in-order hashed prefix of a file, as an event (hfget serve streams a blob still in flight). */
  #prefixSink(job: FileJob): (bytes: number) => void {
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

  /** Plans the file's remaining ranges and fetches the first one (it finds where the bytes are). */
  async #start(job: FileJob): Promise<void> {
    const gaps = job.written.gaps(job.size);
    if (gaps.length === 0) {
      job.to("finishing");
      await this.#finish(job);
      return;
    }
    const { chunkSize, connections } = this.#ctx.options;
    const pieces = splitRanges(gaps, pieceSize(job.size, chunkSize, connections)).map(([s, e]) =>
      chunkTask(s, e),
    );
    const first = pieces.shift()!;
    job.pending = pieces;
    job.to("probing");
    // The first request resolves the redirect; the rest of the file waits for its answer. With
    // several endpoints each one's first request starts now, on other workers (pick hands each
    // idle endpoint not measured yet a request of its own): waiting for the first answer before
    // asking the second mirror started it 0.2-0.5 s after the first (bench mirrors, busy machine).
    job.probes = Math.min(this.#open(job, NONE).length - 1, pieces.length);
    if (job.probes > 0) this.#sched.notify();
    await this.#runChunk(job, first);
  }

  /**
   * The run's last wave, when it has come: every byte not yet asked of a server is less than what the
   * requests in flight still have to send. Chunks then go to the endpoint that would deliver them
   * first (SourcePool.pick), so the endpoints finish together. Undefined before, and for a file with
   * one source.
   */
  #endgame(task: ChunkTask | undefined, fileSize: number): Endgame | undefined {
    if (this.#fetchingFrom.size === 0) return undefined;
    let inFlight = 0;
    for (const t of this.#fetchingFrom.keys()) inFlight += Math.max(0, t.end - t.received);
    if (this.#sched.unasked(inFlight) > inFlight) return undefined;
    const from = this.#fetchingFrom;
    return {
      outstanding: (endpoint) => {
        let n = 0;
        for (const [t, e] of from) if (e === endpoint) n += Math.max(0, t.end - t.received);
        return n;
      },
      bytes: task === undefined ? Math.min(fileSize, REQUEST_MIN) : task.end - task.pos,
    };
  }

  /** Sources this file may still ask, less `aside`. */
  #open(job: FileJob, aside: ReadonlySet<string>): FileSource[] {
    return job.work.sources.filter(
      (s) =>
        !aside.has(s.endpoint) &&
        !job.lacking.has(s.endpoint) &&
        s.endpoint !== job.suspect &&
        this.#pool.usable(s.endpoint),
    );
  }

  /**
   * The error when no source can serve a file: what each endpoint answered, with the most telling
   * answer's code (gated/refused, exit 4 > not found, exit 3 > network, exit 6), as the metadata
   * step's noEndpointAnswered does; not the code of whichever endpoint happened to answer last.
   */
  #noSource(
    job: FileJob,
    last: HfgetError,
    answers: ReadonlyMap<string, string>,
    errors: ReadonlyMap<string, HfgetError>,
  ): HfgetError {
    if (job.work.sources.length < 2 || answers.size < 2) return last;
    const strip = (m: string) => (m.startsWith(`${job.path}: `) ? m.slice(job.path.length + 2) : m);
    const said = [...answers].map(([e, m]) => `${e}: ${strip(m)}`).join("; ");
    const code = mostTellingCode([...errors.values()].map((e) => e.code)) ?? last.code;
    const lead = code === last.code ? last : ([...errors.values()].find((e) => e.code === code) ?? last);
    return new HfgetError(code, `${job.path}: no endpoint could serve it (${said})`, {
      hint: lead.hint,
      status: lead.status,
      cause: lead,
    });
  }

  async #runChunk(job: FileJob, task: ChunkTask): Promise<void> {
    const generation = job.generation;
    job.running.add(task);
    const file = job.work.file;
    const what = file.path;
    const multi = job.work.sources.length > 1;
    const listedOrigins = multi
      ? new Set(job.work.sources.map((s) => new URL(s.endpoint).origin))
      : undefined;
    const small = job.size <= this.#ctx.options.chunkSize;
    let attempts: AttemptState = FRESH_ATTEMPTS;
    /** Endpoints set aside for this chunk in this round; cleared after a round where all failed. */
    const aside = new Set<string>();
    /** What each endpoint last answered for this chunk. */
    const answers = new Map<string, string>();
    /** The error each endpoint last gave for this chunk (for the exit code when none can serve it). */
    const errors = new Map<string, HfgetError>();
    let last: HfgetError | undefined;
    const superseded = () => this.#signal.aborted || job.generation !== generation || job.phase === "done";
    for (;;) {
      if (superseded()) return;
      // A server that ignores Range always sends from byte 0: so does every retry of that stream.
      if (job.whole) {
        task.pos = 0;
        task.received = 0;
      }
      const endgame = multi && !small ? this.#endgame(task, job.size) : undefined;
      let source = this.#pool.pick(this.#open(job, aside), new Set(), small, endgame);
      if (source === undefined && aside.size > 0) {
        aside.clear();
        source = this.#pool.pick(this.#open(job, aside), new Set(), small, endgame);
      }
      if (source === undefined) {
        job.running.delete(task);
        const e =
          last ??
          new HfgetError("ENTRY_NOT_FOUND", `${what}: no listed endpoint can serve it`, { retryable: false });
        await this.#failJob(job, this.#noSource(job, e, answers, errors));
        return;
      }
      const endpoint = source.endpoint;
      const before = task.pos;
      const usedUrl = job.urls.get(endpoint);
      this.#pool.started(endpoint);
      this.#fetchingFrom.set(task, endpoint);
      try {
        const viaResolve = usedUrl === undefined;
        // A small file is one request without Range; a larger one is fetched in bounded requests
        // from its first byte, so that its tail can be split without waste.
        const wholeFile =
          job.whole || (viaResolve && task.pos === 0 && task.end === job.size && job.size <= 2 * REQUEST_MIN);
        const outcome = await fetchChunk({
          http: this.#ctx.httpFor?.(endpoint) ?? this.#ctx.http,
          endpointOrigin: new URL(endpoint).origin,
          listedOrigins,
          url: usedUrl ?? source.url,
          size: job.size,
          task,
          fh: job.fh!,
          wholeFile,
          signal: job.controller.signal,
          what,
          filePath: job.work.placement.incomplete,
          // One endpoint's ETag must not change; mirrors' ETags may differ from each other.
          expectEtag: multi ? job.etags.get(endpoint) : job.etag,
          // The first answer tells where the bytes are: the other connections can start now,
          // not when this whole chunk is done.
          requestEnd: (t) => {
            const rate = this.#pool.stats(endpoint).bytesPerSec;
            const conns = this.#ctx.options.connections;
            // Past this much unasked, the rate alone decides.
            const unasked = this.#sched.unasked(
              2 * conns * Math.max(REQUEST_MIN, (rate ?? 0) * REQUEST_SECONDS),
            );
            return t.pos + requestSize(t.end - t.pos, rate, unasked, conns);
          },
          atFront: (pos) => job.written.coveredUntil(0) >= pos,
          onRequestDone: (bytes, ms) => this.#pool.succeeded(endpoint, bytes, ms),
          onResponse: (url, etag, ms) => {
            this.#pool.answered(endpoint, ms);
            if (job.generation !== generation || job.whole) return;
            if (!job.urls.has(endpoint)) job.urls.set(endpoint, url);
            if (etag !== undefined && !job.etags.has(endpoint)) job.etags.set(endpoint, etag);
            if (job.etag === undefined && etag !== undefined) {
              job.etag = etag;
              void job.state?.flush();
            }
            if (job.phase === "probing") {
              job.to("fetching");
              this.#sched.notify();
            }
          },
          onWritten: (offset, bytes, pieces) => {
            if (job.generation !== generation) return;
            job.written.add(offset, offset + bytes);
            job.wrote(endpoint, offset, offset + bytes);
            this.#pool.received(endpoint, bytes);
            job.pump?.onWritten(offset, bytes, pieces);
            job.state?.wrote(offset, offset + bytes);
            this.#ctx.emit({ type: "bytes", path: what, bytes });
          },
        });
        this.#pool.ended(endpoint);
        this.#fetchingFrom.delete(task);
        if (superseded()) return;
        if (outcome.kind === "range-ignored") {
          await this.#switchToWhole(job);
          return;
        }
        break;
      } catch (err) {
        this.#pool.ended(endpoint);
        this.#fetchingFrom.delete(task);
        if (superseded()) return;
        if (err instanceof ContentChangedError) {
          await this.#restart(job, err);
          return;
        }
        const others = this.#open(job, aside).filter((s) => s.endpoint !== endpoint).length;
        let d: Decided;
        try {
          d = decide(err, task.pos - before, attempts, this.#ctx.retry, this.#ctx.random, others);
        } catch (bug) {
          job.running.delete(task);
          await this.#failJob(job, bug);
          return;
        }
        attempts = d.next;
        const decision = d.decision;
        const reason = messageOf(err);
        if (isHfgetError(err)) {
          last = err;
          errors.set(endpoint, err);
        }
        answers.set(endpoint, reason);
        if (decision.kind === "other-source") {
          // Not this endpoint, for this chunk (for this file when it said it has not got it).
          if (isHfgetError(err) && !err.retryable) job.lacking.set(endpoint, reason);
          else aside.add(endpoint);
          if (err instanceof ExpiredUrlError && job.urls.get(endpoint) === usedUrl) job.urls.delete(endpoint);
          const down = this.#pool.failed(endpoint, decision.waitMs);
          this.#ctx.emit({
            type: "source-set-aside",
            path: what,
            endpoint,
            for: down ? "a while" : "request",
            reason,
          });
          continue;
        }
        if (decision.kind === "resolve-again") {
          // Every chunk of the file sees the 403 at once; only the URL they used is dropped.
          if (job.urls.get(endpoint) === usedUrl) job.urls.delete(endpoint);
          continue;
        }
        if (err instanceof ExpiredUrlError && job.urls.get(endpoint) === usedUrl) job.urls.delete(endpoint);
        if (decision.kind === "give-up") {
          job.running.delete(task);
          await this.#failJob(job, this.#noSource(job, decision.error, answers, errors));
          return;
        }
        if (multi && task.pos === before) this.#pool.failed(endpoint);
        const delayMs = decision.delayMs;
        // A new round: every endpoint may be asked again.
        aside.clear();
        if (delayMs === 0) continue;
        const capped = decision.capped;
        if (capped && !(await this.#sched.acquireRetrySlot(superseded))) return;
        this.#ctx.emit({ type: "retry", path: what, endpoint, attempt: decision.attempt, delayMs, reason });
        try {
          await this.#ctx.sleep(delayMs, job.controller.signal);
        } catch {
          return;
        } finally {
          if (capped) this.#sched.releaseRetrySlot();
        }
      }
    }
    job.running.delete(task);
    // A finished chunk is saved now, not within the second: kill -9 loses only chunks in flight.
    void job.state?.flush();
    if (job.complete && job.phase === "fetching") {
      job.to("finishing");
      await this.#finish(job);
    }
  }

  /** The server answered 200 to a Range request: drop the chunks, fetch the file as one stream. */
  async #switchToWhole(job: FileJob): Promise<void> {
    job.newGeneration();
    job.whole = true;
    job.pending = [];
    job.running.clear();
    job.written = new RangeSet();
    job.rangesBy.clear();
    this.#newPump(job);
    job.to("fetching");
    await this.#runChunk(job, chunkTask(0, job.size));
  }

  /** Throws the bytes away and fetches the file again, once; a second failure fails the file. */
  async #restart(job: FileJob, err: HfgetError): Promise<void> {
    job.verifyFailures++;
    this.#ctx.emit({ type: "verify-failed", path: job.path, willRetry: job.verifyFailures < 2 });
    if (job.verifyFailures >= 2) {
      await this.#failJob(job, err);
      return;
    }
    job.newGeneration();
    job.pending = [];
    job.running.clear();
    job.urls.clear();
    job.etags.clear();
    job.rangesBy.clear();
    job.suspect = undefined;
    job.cleared.clear();
    job.etag = undefined;
    job.whole = false;
    try {
      await job.closeFiles("discard");
      await atPath(job.work.placement.incomplete, () => this.#openFile(job));
    } catch (e) {
      await this.#failJob(job, e);
      return;
    }
    await this.#start(job);
  }

  /**
   * The hash failed and other endpoints could serve this file: fetch one contributing endpoint's
   * ranges again from the others. If the hash is then right, that endpoint sent the bad bytes. Returns
   * false when no endpoint is left to suspect.
   */
  async #suspectNext(job: FileJob): Promise<boolean> {
    if (job.suspect !== undefined) job.cleared.add(job.suspect);
    const contributors = [...job.rangesBy.keys()];
    const next = contributors.find((e) => !job.cleared.has(e) && e !== job.suspect);
    const others = job.work.sources.filter((s) => s.endpoint !== next && this.#pool.usable(s.endpoint));
    if (next === undefined || others.length === 0) return false;
    const theirs = job.rangesBy.get(next)!;
    this.#ctx.emit({ type: "verify-failed", path: job.path, willRetry: true });
    job.newGeneration();
    job.pending = [];
    job.running.clear();
    job.suspect = next;
    job.written = subtract(job.written.toJSON(), theirs, job.size);
    job.state?.reset();
    job.rangesBy.delete(next);
    this.#newPump(job);
    await this.#start(job);
    return true;
  }

  async #finish(job: FileJob): Promise<void> {
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
      if (!job.whole && (await this.#suspectNext(job))) return;
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
    if (job.suspect !== undefined) {
      // Its ranges, fetched from the others, made the hash right: it sent the bad bytes.
      const reason = `sent bytes of ${file.path} that failed its hash`;
      this.#pool.drop(job.suspect, reason);
      this.#ctx.emit({ type: "source-set-aside", path: job.path, endpoint: job.suspect, for: "run", reason });
      job.suspect = undefined;
    }
    try {
      await job.teardown("commit");
    } catch (err) {
      await this.#failJob(job, err);
      return;
    }
    this.#finishJob(job, { status: "downloaded" });
  }
}
