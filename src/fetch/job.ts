import { setMaxListeners } from "node:events";
import type { FileHandle } from "node:fs/promises";
import { discardIncomplete, type Placement } from "../cache/commit.js";
import type { Release } from "../cache/lock.js";
import type { RepoFile } from "../hub/types.js";
import { removeState, type StateWriter } from "../state.js";
import { atPath } from "../util/io-error.js";
import { RangeSet } from "../util/range-set.js";
import type { HashPump } from "../verify.js";
import type { ChunkTask } from "./chunk.js";
import type { FileSource } from "./sources.js";

/** One file to fetch: what it is, where it comes from, where it goes. */
export interface FileWork {
  readonly file: RepoFile;
  /** Where the bytes may come from, in order of preference (at least one), all at the pinned commit. */
  readonly sources: readonly FileSource[];
  readonly placement: Placement;
  /** Re-download even if present. */
  readonly force: boolean;
}

/**
 * Smaller files keep no resume state: an interrupted one costs at most this much again, while a
 * state file (read, written, removed) would cost a dataset of 3000 small files ~10k syscalls.
 */
export const STATE_MIN_BYTES = 1024 * 1024;

/**
 * A file's life: queued -> opening (lock, present?, open the partial file) -> probing (the first
 * request finds where the bytes are) -> fetching (every worker may take its chunks) -> finishing
 * (hash, commit) -> done. Opening goes back to queued while another process holds the lock;
 * probing/fetching/finishing go back to probing when the file is fetched again (hash mismatch,
 * changed content). Anything may end in done (failure, interrupt).
 */
export type Phase = "queued" | "opening" | "probing" | "fetching" | "finishing" | "done";

const NEXT: Record<Phase, readonly Phase[]> = {
  queued: ["opening", "done"],
  opening: ["queued", "probing", "finishing", "done"],
  probing: ["probing", "fetching", "finishing", "done"],
  fetching: ["probing", "fetching", "finishing", "done"],
  finishing: ["probing", "finishing", "done"],
  done: [],
};

/** How a job's files end: committed (success), kept for resume (interrupt, most failures), or thrown away. */
export type Ending = "commit" | "keep" | "discard";

export class FileJob {
  #phase: Phase = "queued";
  notBefore = 0;
  fh: FileHandle | undefined;
  written = new RangeSet();
  pump: HashPump | undefined;
  state: StateWriter | undefined;
  release: Release | undefined;
  pending: ChunkTask[] = [];
  /** Pending chunks workers may take while the file is still probing: each other endpoint's first request. */
  probes = 0;
  running = new Set<ChunkTask>();
  /** Per endpoint: the CDN URL, once a response told us where its bytes are. */
  readonly urls = new Map<string, string>();
  /** The ETag of the first answer (kept in the resume state). */
  etag: string | undefined;
  /** Per endpoint: the ETag its answers carry (mirrors may differ; one endpoint must not change). */
  readonly etags = new Map<string, string>();
  /** Endpoints that answered that they cannot serve this file (404 at the commit, elsewhere), with their answer. */
  readonly lacking = new Map<string, string>();
  /** Which endpoint wrote which bytes of this file, this run (to find who sent bad bytes). */
  readonly rangesBy = new Map<string, RangeSet>();
  /** The server ignores Range: one stream for the whole file. */
  whole = false;
  /** Bumped whenever in-flight requests of this file must be dropped (restart, whole-file switch). */
  generation = 0;
  /** Made when first asked for: a run of 3000 small files then builds 3000 jobs without 3000 listeners on the run's signal. */
  #controller: AbortController | undefined;
  /** Removes the current controller's listener on the run's signal. */
  #unlink: (() => void) | undefined;
  verifyFailures = 0;
  /** Endpoints suspected of bad bytes whose ranges are being fetched again from the others. */
  suspect: string | undefined;
  /** Endpoints already cleared of suspicion for this file. */
  readonly cleared = new Set<string>();

  constructor(
    readonly work: FileWork,
    readonly runSignal: AbortSignal,
  ) {}

  /** Aborts every request and retry sleep of this file (a new generation, teardown, the run's abort). */
  get controller(): AbortController {
    this.#controller ??= this.#linkedController();
    return this.#controller;
  }

  get phase(): Phase {
    return this.#phase;
  }

  /** Moves to the next phase; a move the table does not allow is a bug. */
  to(next: Phase): void {
    if (!NEXT[this.#phase].includes(next)) {
      throw new Error(`internal: ${this.path}: phase ${this.#phase} -> ${next}`);
    }
    this.#phase = next;
  }

  /** A controller for this file's requests that also aborts with the run. */
  #linkedController(): AbortController {
    const c = new AbortController();
    // Every chunk request and retry sleep of the file listens on it: more than Node's default 10.
    setMaxListeners(0, c.signal);
    const run = this.runSignal;
    const onRunAbort = () => c.abort(run.reason);
    if (run.aborted) onRunAbort();
    else {
      run.addEventListener("abort", onRunAbort, { once: true });
      this.#unlink = () => run.removeEventListener("abort", onRunAbort);
    }
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
    this.#unlink?.();
    this.#controller = this.#linkedController();
  }

  /** Records that `endpoint` wrote [offset, end). */
  wrote(endpoint: string, offset: number, end: number): void {
    let r = this.rangesBy.get(endpoint);
    if (r === undefined) {
      r = new RangeSet();
      this.rangesBy.set(endpoint, r);
    }
    r.add(offset, end);
  }

  /**
   * Closes the partial file and its state, keeping the lock (a restart), and: "commit" moves the
   * verified file into place and removes the state; "keep" saves the state for a resume; "discard"
   * removes the partial file. Errors of "commit" are thrown (named by path); the others are best effort
   * where the file fails anyway.
   */
  async closeFiles(end: Ending): Promise<void> {
    const { placement } = this.work;
    const state = this.state;
    this.state = undefined;
    if (end === "keep") await state?.flush();
    await state?.close();
    const fh = this.fh;
    this.fh = undefined;
    if (end === "commit") {
      await atPath(placement.incomplete, async () => fh?.close());
      await atPath(placement.incomplete, () => placement.commit());
      if (this.size >= STATE_MIN_BYTES) await atPath(placement.state, () => removeState(placement.state));
      return;
    }
    await fh?.close().catch(() => undefined);
    if (end === "discard") {
      // Best effort: the next run truncates what is left.
      await discardIncomplete(placement).catch(() => undefined);
    }
  }

  /**
   * The one way a job lets go of everything it holds (success, failure, interrupt): closes the
   * partial file and state as `end` says, then always releases the lock. Safe to call twice.
   */
  async teardown(end: Ending): Promise<void> {
    // Nothing of this file may still be in flight once its handles close.
    if (end !== "commit") this.controller.abort(new Error("stopped"));
    try {
      await this.closeFiles(end);
    } finally {
      // A finished job is not kept alive by the run's signal.
      this.#unlink?.();
      this.#unlink = undefined;
      const release = this.release;
      this.release = undefined;
      await release?.();
    }
  }
}
