import { createHash, type Hash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import { Worker } from "node:worker_threads";
import type { ExpectedHash } from "./hub/types.js";
import type { RangeSet } from "./util/range-set.js";
import type { FromHashThread, ToHashThread } from "./verify-worker.js";

/** sha256 of the content, or git's blob sha1: sha1("blob <size>\0" + content). */
export function createContentHash(expected: ExpectedHash, size: number): Hash {
  if (expected.algorithm === "sha256") return createHash("sha256");
  const h = createHash("sha1");
  h.update(`blob ${size}\0`);
  return h;
}

const READ_BLOCK = 1024 * 1024;

/** Hashes a whole file on disk; true when it matches. */
export async function fileMatches(path: string, expected: ExpectedHash, size: number): Promise<boolean> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, "r");
    const st = await fh.stat();
    if (st.size !== size) return false;
    const h = createContentHash(expected, size);
    const buf = Buffer.allocUnsafe(READ_BLOCK);
    for (let at = 0; at < size; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(READ_BLOCK, size - at), at);
      if (bytesRead === 0) return false;
      h.update(buf.subarray(0, bytesRead));
      at += bytesRead;
    }
    return h.digest("hex") === expected.hex;
  } catch {
    return false;
  } finally {
    await fh?.close();
  }
}

/**
 * Hashes a file while it is being downloaded out of order, and says when the in-order hashed prefix
 * grows. The engine tells it of every write (`onWritten`, after adding it to the written set) and
 * asks for the digest once every byte is written; `close` lets go of it early (teardown, a restart).
 */
export interface HashPump {
  /** The in-order prefix hashed so far. */
  readonly hashedBytes: number;
  /**
   * `bytes` bytes were just written at `offset` (and already added to the written set): `pieces`,
   * in order (only valid during the call).
   */
  onWritten(offset: number, bytes: number, pieces: readonly Buffer[]): void;
  /** Hash whatever contiguous bytes are on disk past the cursor (a resumed file's saved ranges). */
  kick(): void;
  /** Once every byte is written: the hex digest of the whole file. */
  digest(): Promise<string>;
  /** Stops hashing and lets go of what it holds (the hash thread's job and its file). Safe to call twice. */
  close(): Promise<void>;
}

export interface HashPumpInput {
  /** The partial file, open for writing by the engine. */
  readonly fh: FileHandle;
  /** Its path (the hash thread opens it for reading itself). */
  readonly path: string;
  readonly size: number;
  readonly expected: ExpectedHash;
  /** The engine's written set (the pump only reads it). */
  readonly written: RangeSet;
  /** Hears the in-order hashed prefix each time it grows (hfget serve streams it). */
  readonly onPrefix?: ((bytes: number) => void) | undefined;
}

/**
 * Files at least this big are hashed on the hash thread, smaller ones on the main thread. On
 * big-loopback (2 GiB, 32 connections) the main thread spent ~2.3 s in SHA-256 `update` and ~1 s
 * reading bytes back per 2 GiB, and was the bottleneck; a small file is not worth the thread's start
 * (~30 ms, ~5-10 MB of RSS) nor a message round trip.
 */
export const HASH_THREAD_MIN_BYTES = 32 * 1024 * 1024;

/** A pump for one file: on the hash thread from `threadMinBytes` up, else on the main thread. */
export function createHashPump(input: HashPumpInput, threadMinBytes = HASH_THREAD_MIN_BYTES): HashPump {
  return input.size >= threadMinBytes ? new ThreadHashPump(input, hashThread) : new InlineHashPump(input);
}

/**
 * Hashes on the main thread. Bytes that arrive exactly at the hash cursor are hashed from memory;
 * everything else is read back from disk (the page cache) as soon as the cursor reaches it, so by the
 * time the last byte lands little is left to hash.
 */
export class InlineHashPump implements HashPump {
  readonly #fh: FileHandle;
  readonly #size: number;
  readonly #written: RangeSet;
  readonly #hash: Hash;
  #hashed = 0;
  #busy = false;
  #failed: unknown;
  #closed = false;
  #waiters: (() => void)[] = [];
  #buf: Buffer | undefined;
  readonly #onPrefix: ((bytes: number) => void) | undefined;

  constructor(input: HashPumpInput) {
    this.#onPrefix = input.onPrefix;
    this.#fh = input.fh;
    this.#size = input.size;
    this.#written = input.written;
    this.#hash = createContentHash(input.expected, input.size);
  }

  get hashedBytes(): number {
    return this.#hashed;
  }

  onWritten(offset: number, bytes: number, pieces: readonly Buffer[]): void {
    if (this.#closed) return;
    if (!this.#busy && offset === this.#hashed) {
      for (const piece of pieces) this.#hash.update(piece);
      this.#hashed += bytes;
      this.#wake();
    }
    this.kick();
  }

  kick(): void {
    if (this.#busy || this.#failed !== undefined || this.#closed) return;
    if (this.#written.coveredUntil(this.#hashed) <= this.#hashed) return;
    this.#busy = true;
    void this.#catchUp().then(
      () => {
        this.#busy = false;
        this.#wake();
        this.kick();
      },
      (err: unknown) => {
        this.#busy = false;
        this.#failed = err;
        this.#wake();
      },
    );
  }

  async #catchUp(): Promise<void> {
    this.#buf ??= Buffer.allocUnsafe(READ_BLOCK);
    const buf = this.#buf;
    for (let until = this.#written.coveredUntil(this.#hashed); until > this.#hashed && !this.#closed; ) {
      const n = Math.min(READ_BLOCK, until - this.#hashed);
      const { bytesRead } = await this.#fh.read(buf, 0, n, this.#hashed);
      if (bytesRead === 0) throw new Error("file shorter than its written ranges");
      this.#hash.update(buf.subarray(0, bytesRead));
      this.#hashed += bytesRead;
      if (!this.#closed) this.#onPrefix?.(this.#hashed);
      if (this.#hashed >= until) until = this.#written.coveredUntil(this.#hashed);
    }
  }

  #wake(): void {
    if (!this.#closed) this.#onPrefix?.(this.#hashed);
    this.#release();
  }

  #release(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  async digest(): Promise<string> {
    while (this.#hashed < this.#size) {
      if (this.#failed !== undefined) throw this.#failed;
      if (this.#closed) throw new Error("hash pump closed");
      if (!this.#busy && this.#written.coveredUntil(this.#hashed) <= this.#hashed) {
        throw new Error(`hash cursor stuck at ${this.#hashed} of ${this.#size}: bytes missing`);
      }
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        this.kick();
      });
    }
    if (this.#failed !== undefined) throw this.#failed;
    return this.#hash.digest("hex");
  }

  async close(): Promise<void> {
    this.#closed = true;
    // Waiters only: a closed pump's prefix is stale (a restart's new file starts from 0).
    this.#release();
  }
}

/** What the hash thread tells one job. */
interface ThreadJobHandlers {
  hashed(bytes: number): void;
  done(digest: string): void;
  failed(err: Error): void;
  stopped(): void;
}

/**
 * The one hash thread of the process (src/verify-worker.ts), shared by every big file in flight
 * (hfget serve's fetches too), started on first use. It keeps the process alive only while it has
 * jobs: an idle thread never delays exit. A thread that dies fails every job it had with a plain
 * Error (a bug: "internal error", exit 1, never a file called done); the next job starts a new one.
 */
export class HashThread {
  #worker: Worker | undefined;
  readonly #jobs = new Map<number, ThreadJobHandlers>();
  #nextId = 0;
  readonly #script: URL;

  /** `script`: the thread's code (tests give one that fails). */
  constructor(script = new URL("./verify-worker.js", import.meta.url)) {
    this.#script = script;
  }

  /** Starts hashing a file; the handlers hear of it until "done", "failed" or "stopped". */
  start(
    req: Omit<Extract<ToHashThread, { type: "start" }>, "type" | "id">,
    handlers: ThreadJobHandlers,
  ): number {
    const id = this.#nextId++;
    const w = this.#thread();
    this.#jobs.set(id, handlers);
    w.ref();
    w.postMessage({ type: "start", id, ...req } satisfies ToHashThread);
    return id;
  }

  /** Bytes [0, until) of job `id`'s file are written. */
  covered(id: number, until: number): void {
    if (this.#jobs.has(id)) this.#worker?.postMessage({ type: "covered", id, until } satisfies ToHashThread);
  }

  /** Stops job `id` (its handlers hear "stopped" once the thread closed its file). */
  stop(id: number): void {
    if (this.#jobs.has(id)) this.#worker?.postMessage({ type: "stop", id } satisfies ToHashThread);
  }

  /** Jobs the thread has now, and jobs it was given so far (tests). */
  get stats(): { readonly jobs: number; readonly started: number } {
    return { jobs: this.#jobs.size, started: this.#nextId };
  }

  #thread(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const w = new Worker(this.#script);
    this.#worker = w;
    w.on("message", (m: FromHashThread) => this.#heard(m));
    w.on("error", (err) => this.#died(w, err));
    w.on("exit", (code) => this.#died(w, new Error(`the hash thread exited (code ${code})`)));
    return w;
  }

  #heard(m: FromHashThread): void {
    const job = this.#jobs.get(m.id);
    if (job === undefined) return;
    if (m.type === "hashed") {
      job.hashed(m.bytes);
      return;
    }
    this.#end(m.id);
    if (m.type === "done") job.done(m.digest);
    else if (m.type === "stopped") job.stopped();
    else {
      // An errno error stays one (the engine names the file and makes it a DISK error); any other is a bug.
      const err = new Error(m.message);
      job.failed(m.code === undefined ? err : Object.assign(err, { code: m.code }));
    }
  }

  #end(id: number): void {
    this.#jobs.delete(id);
    if (this.#jobs.size === 0) this.#worker?.unref();
  }

  #died(w: Worker, err: Error): void {
    if (this.#worker !== w) return;
    this.#worker = undefined;
    void w.terminate();
    const jobs = [...this.#jobs.values()];
    this.#jobs.clear();
    const bug = new Error(`internal: the hash thread failed: ${err.message}`, { cause: err });
    for (const j of jobs) j.failed(bug);
  }
}

const hashThread = new HashThread();

/** The process's hash thread's jobs now and so far (tests: that a path was taken and let go). */
export function hashThreadStats(): { readonly jobs: number; readonly started: number } {
  return hashThread.stats;
}

/** See ThreadHashPump's #post. */
const POST_BYTES = 4 * 1024 * 1024;
const POST_MS = 20;

/**
 * Hashes on the hash thread: the main thread only says how far the contiguous written prefix
 * reaches (one message each time it grows) and hears back the hashed prefix and the digest.
 *
 * The thread reads the bytes back from the page cache rather than being handed the write blocks:
 * few blocks land at the front of the prefix. Measured on big-loopback (2 GiB, 2026-12-02): 2.5% of
 * bytes with 32 connections, 26% with 4 (the others are written ahead of a hole and would have to be
 * held until it fills). A prototype that transferred each write block at the front to the thread
 * (at most 8 blocks out, given back to the block pool) hashed 51 MB of 2 GiB from memory at 32
 * connections and 389 MB at 4, where its read-back fell 0.75 -> 0.61 s while the main thread's
 * postMessage and GC rose by as much (one profile each). A/B pairs: CPU-s 8.6/8.0 -> 8.0/8.8 and
 * peak RSS 153 -> 158/164 MB at 32; CPU-s 7.4/8.0 -> 8.0/10.1 and peak RSS 131/132 -> 136/147 MB at
 * 4. So it was left out. Write blocks over SharedArrayBuffers instead cost more: copying undici's
 * pieces into them took 2.9 s per 2 GiB, not 0.8 (a copy into shared memory is ~3x slower in V8).
 */
export class ThreadHashPump implements HashPump {
  readonly #input: HashPumpInput;
  readonly #thread: HashThread;
  /** Resolves once the job is started on the thread (or failed to). */
  readonly #ready: Promise<void>;
  #id: number | undefined;
  /** The prefix the thread was told of. */
  #posted = 0;
  #hashed = 0;
  #digest: string | undefined;
  #failed: Error | undefined;
  #closed = false;
  /** Whether the thread still has the job (until done, failed or stopped). */
  #live = false;
  #waiters: (() => void)[] = [];
  #stopped: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(input: HashPumpInput, thread: HashThread) {
    this.#input = input;
    this.#thread = thread;
    this.#ready = input.fh
      .stat()
      .then((st) => {
        if (this.#closed) return;
        this.#id = thread.start(
          {
            path: input.path,
            size: input.size,
            algorithm: input.expected.algorithm,
            dev: st.dev,
            ino: st.ino,
          },
          {
            hashed: (bytes) => {
              this.#hashed = bytes;
              // A closed pump's prefix is stale (a restart's new file starts from 0).
              if (!this.#closed) input.onPrefix?.(bytes);
              this.#wake();
            },
            done: (digest) => {
              this.#live = false;
              this.#digest = digest;
              this.#wake();
            },
            failed: (err) => {
              this.#live = false;
              this.#failed = err;
              this.#wake();
            },
            stopped: () => {
              this.#live = false;
              this.#wake();
            },
          },
        );
        this.#live = true;
        this.#post();
      })
      // The handle's stat or the thread's start failed: digest() throws it (close() never does).
      .catch((err: unknown) => {
        this.#live = false;
        this.#failed = err instanceof Error ? err : new Error(String(err));
      });
  }

  get hashedBytes(): number {
    return this.#hashed;
  }

  onWritten(_offset: number, _bytes: number, _pieces: readonly Buffer[]): void {
    this.#post();
  }

  kick(): void {
    this.#post();
  }

  /**
   * Tells the thread of the written prefix: at once when it grew by POST_BYTES or reached the end,
   * else within POST_MS (a message per write block cost the main thread ~0.2 s per 2 GiB).
   */
  #post(now = false): void {
    const id = this.#id;
    if (id === undefined || !this.#live || this.#closed) return;
    const until = this.#input.written.coveredUntil(0);
    if (until <= this.#posted) return;
    if (!now && until - this.#posted < POST_BYTES && until < this.#input.size) {
      if (this.#timer === undefined) {
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          this.#post(true);
        }, POST_MS);
        this.#timer.unref();
      }
      return;
    }
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#posted = until;
    this.#thread.covered(id, until);
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
    if (!this.#live) this.#stopped?.();
  }

  async digest(): Promise<string> {
    await this.#ready;
    this.#post(true);
    for (;;) {
      if (this.#failed !== undefined) throw this.#failed;
      if (this.#digest !== undefined) return this.#digest;
      if (this.#closed || !this.#live) throw new Error("hash pump closed");
      if (this.#input.written.coveredUntil(0) < this.#input.size) {
        throw new Error(`hash cursor stuck at ${this.#hashed} of ${this.#input.size}: bytes missing`);
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#ready;
    if (this.#id !== undefined && this.#live) {
      const stopped = new Promise<void>((resolve) => {
        this.#stopped = resolve;
      });
      this.#thread.stop(this.#id);
      await stopped;
    }
    this.#wake();
  }
}
