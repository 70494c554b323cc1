import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import type { ExpectedHash } from "./hub/types.js";
import { createContentHash } from "./verify.js";

/**
 * The download hashing thread (src/verify.ts's HashThread starts it): for each big file in flight it
 * opens the partial file itself and hashes the contiguous written prefix, reading it back from the
 * page cache, as the main thread tells it how far that prefix reaches. The main thread then only
 * receives and writes bytes. Reads are synchronous: this thread has nothing else to do, and its reads
 * must not queue in libuv's threadpool behind the main thread's writes.
 */
export type ToHashThread =
  | {
      readonly type: "start";
      readonly id: number;
      readonly path: string;
      readonly size: number;
      readonly algorithm: ExpectedHash["algorithm"];
      /** The main thread's handle's inode: the thread must hash the file the engine writes, nothing else. */
      readonly dev: number;
      readonly ino: number;
    }
  /** Bytes [0, until) of the file are written. */
  | { readonly type: "covered"; readonly id: number; readonly until: number }
  /** Drop the job and close its file (answered with "stopped"). */
  | { readonly type: "stop"; readonly id: number };

export type FromHashThread =
  /** The in-order hashed prefix grew to `bytes`. */
  | { readonly type: "hashed"; readonly id: number; readonly bytes: number }
  | { readonly type: "done"; readonly id: number; readonly digest: string }
  /** `code` is the errno code when there is one (the main thread makes it a DISK error). */
  | { readonly type: "error"; readonly id: number; readonly message: string; readonly code?: string }
  | { readonly type: "stopped"; readonly id: number };

/** One read's size. */
const READ_BLOCK = 1024 * 1024;
/**
 * Bytes hashed for one file before the thread looks at its messages again (new "covered" and "stop"
 * messages, the other files' turns) and reports progress: about 3-6 ms of SHA-256 here.
 */
const TURN_BYTES = 8 * READ_BLOCK;

interface Job {
  readonly id: number;
  readonly size: number;
  readonly hash: ReturnType<typeof createContentHash>;
  fd: number | undefined;
  hashed: number;
  covered: number;
}

const port = parentPort;
if (port !== null) {
  const post = (m: FromHashThread) => port.postMessage(m);
  const jobs = new Map<number, Job>();
  const buf = Buffer.allocUnsafe(READ_BLOCK);
  let scheduled = false;

  const close = (job: Job) => {
    const fd = job.fd;
    job.fd = undefined;
    jobs.delete(job.id);
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // nothing to do: the job is over either way
      }
    }
  };

  const fail = (job: Job, err: unknown) => {
    close(job);
    const e = err as NodeJS.ErrnoException;
    const message = e instanceof Error ? e.message : String(err);
    post(
      typeof e.code === "string"
        ? { type: "error", id: job.id, message, code: e.code }
        : { type: "error", id: job.id, message },
    );
  };

  /** One turn of every job with bytes to hash; runs again (after the message queue) while any has more. */
  const work = () => {
    scheduled = false;
    let more = false;
    for (const job of [...jobs.values()]) {
      if (job.fd === undefined || job.covered <= job.hashed) continue;
      try {
        const stop = Math.min(job.covered, job.hashed + TURN_BYTES);
        while (job.hashed < stop) {
          const n = readSync(job.fd, buf, 0, Math.min(READ_BLOCK, stop - job.hashed), job.hashed);
          if (n === 0) throw new Error("file shorter than its written ranges");
          job.hash.update(buf.subarray(0, n));
          job.hashed += n;
        }
      } catch (err) {
        fail(job, err);
        continue;
      }
      post({ type: "hashed", id: job.id, bytes: job.hashed });
      if (job.hashed >= job.size) {
        close(job);
        post({ type: "done", id: job.id, digest: job.hash.digest("hex") });
      } else if (job.covered > job.hashed) more = true;
    }
    if (more) schedule();
  };

  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    // setImmediate, not a loop: "stop" and "covered" messages are heard between turns.
    setImmediate(work);
  };

  port.on("message", (m: ToHashThread) => {
    if (m.type === "start") {
      const job: Job = {
        id: m.id,
        size: m.size,
        hash: createContentHash({ algorithm: m.algorithm, hex: "" }, m.size),
        fd: undefined,
        hashed: 0,
        covered: 0,
      };
      jobs.set(m.id, job);
      try {
        job.fd = openSync(m.path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
        const st = fstatSync(job.fd);
        if (st.dev !== m.dev || st.ino !== m.ino)
          throw new Error(`${m.path} is not the file being downloaded`);
      } catch (err) {
        fail(job, err);
      }
      return;
    }
    const job = jobs.get(m.id);
    if (m.type === "stop") {
      if (job !== undefined) close(job);
      post({ type: "stopped", id: m.id });
      return;
    }
    if (job === undefined) return;
    if (m.until > job.covered) job.covered = Math.min(m.until, job.size);
    schedule();
  });
}
