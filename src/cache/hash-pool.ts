import { Worker } from "node:worker_threads";
import type { BlobAlgorithm } from "./hash-blob.js";
import type { HashReply, HashRequest } from "./hash-worker.js";

/**
 * A few worker threads hashing blobs for `cache verify`. Node's crypto hashes on the calling thread,
 * so two hashes on the main thread share one core however many reads are in flight; one worker per
 * core uses them all. Each worker takes one blob at a time (the pool hands the next one out as a
 * worker finishes), so a worker never sits idle behind another's long file.
 */
interface Job {
  readonly req: HashRequest;
  readonly onBytes: (n: number) => void;
  readonly resolve: (digest: string) => void;
  readonly reject: (err: Error) => void;
}

class PoolWorker {
  readonly worker: Worker;
  job: Job | undefined;
  constructor(onIdle: (w: PoolWorker) => void, onCrash: (w: PoolWorker, err: Error) => void) {
    this.worker = new Worker(new URL("./hash-worker.js", import.meta.url));
    this.worker.on("message", (r: HashReply) => {
      const job = this.job;
      if (job === undefined || r.id !== job.req.id) return;
      if (r.type === "bytes") {
        job.onBytes(r.bytes);
        return;
      }
      this.job = undefined;
      if (r.type === "done") job.resolve(r.digest);
      else job.reject(new Error(r.message));
      onIdle(this);
    });
    this.worker.on("error", (err) => onCrash(this, err));
  }
}

export class HashPool {
  readonly #workers: PoolWorker[] = [];
  readonly #queue: Job[] = [];
  #nextId = 0;
  #closed = false;

  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      this.#workers.push(
        new PoolWorker(
          (w) => this.#feed(w),
          (w, err) => {
            // A crashed thread is a bug, not a bad blob: its job and every queued one fail with it.
            w.job?.reject(err);
            w.job = undefined;
            for (const j of this.#queue.splice(0)) j.reject(err);
          },
        ),
      );
    }
  }

  /** The hex digest of `path`; `onBytes` hears each read's size. */
  hash(path: string, algorithm: BlobAlgorithm, onBytes: (n: number) => void): Promise<string> {
    if (this.#closed) return Promise.reject(new Error("hash pool closed"));
    return new Promise((resolve, reject) => {
      this.#queue.push({ req: { id: this.#nextId++, path, algorithm }, onBytes, resolve, reject });
      const idle = this.#workers.find((w) => w.job === undefined);
      if (idle !== undefined) this.#feed(idle);
    });
  }

  #feed(w: PoolWorker): void {
    if (w.job !== undefined || this.#closed) return;
    const job = this.#queue.shift();
    if (job === undefined) return;
    w.job = job;
    w.worker.postMessage(job.req);
  }

  /** Stops every thread; jobs still running or queued fail with `reason`. */
  async close(reason: Error = new Error("hash pool closed")): Promise<void> {
    this.#closed = true;
    for (const j of this.#queue.splice(0)) j.reject(reason);
    for (const w of this.#workers) {
      w.job?.reject(reason);
      w.job = undefined;
    }
    await Promise.all(this.#workers.map((w) => w.worker.terminate()));
  }
}
