import { mkdirSync } from "node:fs";
import { open } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import { cachePlacement, type Placement, SafeDirs } from "../cache/commit.js";
import { cachePaths } from "../cache/paths.js";
import type { EngineOptions } from "../config.js";
import { Engine, type FileSource } from "../fetch/engine.js";
import type { SourcePool } from "../fetch/sources.js";
import type { HttpClient } from "../hub/http.js";
import type { RepoFile } from "../hub/types.js";
import type { RepoRef } from "../repo.js";
import { DEFAULT_RETRY_POLICY, sleep } from "../util/retry.js";
import type { Metrics } from "./metrics.js";

/** What a resolve request needs to know about one file at one commit. */
export interface BlobMeta {
  readonly repo: RepoRef;
  readonly commit: string;
  readonly path: string;
  /** sha256 for LFS files, git sha1 otherwise: the ETag and the blob's name in the cache. */
  readonly etag: string;
  readonly size: number;
  readonly lfs: boolean;
  /** The upstream that described it (asked first for the bytes); absent when read from the cache. */
  readonly endpoint?: string | undefined;
}

const READ = 256 * 1024;
/** An upstream that sent bytes failing a hash gets no blob fetch's requests for this long. */
export const DROP_MS = 10 * 60_000;

/**
 * One upstream fetch per blob, whoever asks. Clients of a blob in flight are served the in-order,
 * hashed prefix as it grows; the last byte only once the engine verified the whole file, so a
 * client can never end with a complete wrong file. A failed or mismatched fetch cuts them all.
 */
export class Fetch {
  prefix = 0;
  state: "running" | "done" | "failed" = "running";
  /** Why it failed (what each upstream answered), for a client not yet sent headers. */
  error: string | undefined;
  readonly responses = new Set<ServerResponse>();
  #waiters: (() => void)[] = [];

  constructor(
    readonly size: number,
    readonly placement: Placement,
    readonly blob: string,
  ) {}

  wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  changed(): Promise<void> {
    return new Promise((r) => this.#waiters.push(r));
  }

  /** Bytes a client may have now: everything when verified, else the hashed prefix less its last byte. */
  get releasable(): number {
    if (this.state === "done") return this.size;
    return Math.min(this.prefix, this.size - 1);
  }

  /**
   * Resolves once the fetch delivered its first verified bytes, ended, or `ms` passed: a client
   * gets its headers then, so one whose every upstream failed gets a 502 naming them, not a cut body.
   */
  async started(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (this.state === "running" && this.prefix === 0) {
      const left = until - Date.now();
      if (left <= 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.changed(),
        new Promise<void>((r) => {
          timer = setTimeout(r, left);
        }),
      ]);
      clearTimeout(timer);
    }
  }

  cut(): void {
    for (const r of this.responses) r.destroy();
    this.responses.clear();
  }
}

export interface BlobStoreOptions {
  readonly cacheDir: string;
  /** The server's own client for an upstream endpoint, with the server's token (for that origin only). */
  readonly http: (endpoint: string) => HttpClient;
  readonly engine: EngineOptions;
  readonly signal: AbortSignal;
  readonly metrics: Metrics;
  /**
   * What the server knows of its upstreams (health, latency, throughput, bytes), shared by every
   * blob fetch: one marked down by a fetch is passed over by the next until it is probed again, and
   * one that sent bad bytes is left out for DROP_MS.
   */
  readonly pool: SourcePool;
  /** One JSON line per upstream set aside during a blob fetch (the caller redacts tokens). */
  readonly log?: ((line: string) => void) | undefined;
}

export class BlobStore {
  readonly #opts: BlobStoreOptions;
  readonly #fetches = new Map<string, Fetch>();
  /** Upstreams dropped for bad bytes, and when. */
  readonly #dropped = new Map<string, number>();

  constructor(opts: BlobStoreOptions) {
    this.#opts = opts;
  }

  blobPath(meta: BlobMeta): string {
    return cachePaths(this.#opts.cacheDir, meta.repo).blob(meta.etag);
  }

  /**
   * The running fetch of this blob, or a new one from `sources`: the file's resolve URL at the
   * pinned commit on every upstream, preferred first. The engine's source pool picks one per chunk,
   * spreads a large file over the healthy ones and fails over as `hfget --mirror` does; every byte
   * is checked against `meta`'s hash, whichever upstream sent it.
   */
  fetch(meta: BlobMeta, sources: readonly FileSource[]): Fetch {
    const paths = cachePaths(this.#opts.cacheDir, meta.repo);
    const key = paths.blob(meta.etag);
    const running = this.#fetches.get(key);
    if (running) return running;
    if (sources.length === 0) throw new Error("internal: a blob fetch without a source");
    const file: RepoFile = meta.lfs
      ? { path: meta.path, size: meta.size, gitOid: "0".repeat(40), lfs: { sha256: meta.etag } }
      : { path: meta.path, size: meta.size, gitOid: meta.etag };
    // The engine checks its targets are inside the repo folder, so that folder must exist first.
    mkdirSync(paths.repoDir, { recursive: true });
    const placement = cachePlacement(paths, meta.commit, file, new SafeDirs(paths.repoDir));
    const f = new Fetch(meta.size, placement, key);
    this.#fetches.set(key, f);
    const { metrics } = this.#opts;
    metrics.fetchesInFlight++;
    metrics.fetchesStarted++;
    const pool = this.#opts.pool;
    // An upstream that sent bad bytes is out for a while, not for the server's lifetime.
    const now = Date.now();
    for (const [e, at] of this.#dropped) {
      if (now - at < DROP_MS) continue;
      pool.stats(e).dropped = undefined;
      this.#dropped.delete(e);
    }
    const http = this.#opts.http;
    const engine = new Engine(
      {
        http: http(sources[0]!.endpoint),
        httpFor: http,
        pool,
        options: this.#opts.engine,
        retry: { ...DEFAULT_RETRY_POLICY, retries: this.#opts.engine.retries },
        signal: this.#opts.signal,
        sleep,
        emit: (e) => {
          if (e.type === "prefix") {
            f.prefix = e.bytes;
            f.wake();
          } else if (e.type === "bytes") {
            metrics.bytesFetchedUpstream += e.bytes;
          } else if (e.type === "source-set-aside" || (e.type === "retry" && e.endpoint !== undefined)) {
            if (e.type === "source-set-aside" && e.for === "run") this.#dropped.set(e.endpoint, Date.now());
            // A failed upstream request: the chunk moved to another upstream, or waits to be asked again.
            const endpoint = e.endpoint ?? "";
            metrics.upstreamError(endpoint);
            this.#opts.log?.(
              JSON.stringify({
                time: new Date().toISOString(),
                event: e.type === "retry" ? "upstream-retry" : "upstream-set-aside",
                endpoint,
                path: `${meta.repo.id}/${meta.path}`,
                ...(e.type === "retry" ? { delayMs: e.delayMs } : { for: e.for }),
                reason: e.reason,
              }),
            );
          } else if (e.type === "verify-failed") {
            // Every response in flight got bytes of a file that did not match: cut them all.
            f.prefix = 0;
            f.cut();
            f.wake();
          }
        },
      },
      [{ file, sources, placement, force: false }],
    );
    void engine
      .run()
      .then(
        (outcomes) => {
          const o = outcomes.get(file.path);
          f.state = o?.status === "downloaded" || o?.status === "cached" ? "done" : "failed";
          if (f.state === "failed") f.error = o?.error?.message ?? "the upstream fetch failed";
        },
        (err: unknown) => {
          f.state = "failed";
          f.error = err instanceof Error ? err.message : "the upstream fetch failed";
        },
      )
      .finally(() => {
        metrics.fetchesInFlight--;
        this.#fetches.delete(key);
        if (f.state === "failed") {
          this.#opts.log?.(
            JSON.stringify({
              time: new Date().toISOString(),
              event: "upstream-fetch-failed",
              path: `${meta.repo.id}/${meta.path}`,
              reason: f.error,
            }),
          );
          f.cut();
        }
        f.wake();
      });
    return f;
  }

  /**
   * Streams bytes [start, end] of a blob in flight to `res`, as they are released. Resolves when
   * done; on a failed fetch the response is destroyed (a short body: the client retries).
   */
  async stream(f: Fetch, res: ServerResponse, start: number, end: number): Promise<void> {
    f.responses.add(res);
    const { metrics } = this.#opts;
    let fh: Awaited<ReturnType<typeof open>> | undefined;
    try {
      const buf = Buffer.allocUnsafe(READ);
      for (let pos = start; pos <= end; ) {
        if (res.destroyed) return;
        if (f.state === "failed") {
          res.destroy();
          return;
        }
        const avail = Math.min(f.releasable, end + 1);
        if (avail <= pos) {
          await f.changed();
          continue;
        }
        if (fh === undefined) {
          try {
            fh = await open(f.state === "done" ? f.blob : f.placement.incomplete, "r");
          } catch {
            // renamed into blobs/ between the check and the open
            fh = await open(f.blob, "r");
          }
        }
        const n = Math.min(READ, avail - pos);
        const { bytesRead } = await fh.read(buf, 0, n, pos);
        if (bytesRead === 0) throw new Error("blob shorter than its released prefix");
        pos += bytesRead;
        metrics.bytesServedWhileFetching += bytesRead;
        // A response cut while the read was in flight (f.cut() on a hash failure) refuses the write
        // and has already emitted 'close': waiting for it then would hang, holding the file open.
        if (!res.write(Buffer.from(buf.subarray(0, bytesRead))) && !res.destroyed) {
          await new Promise<void>((r) => {
            const done = (): void => {
              res.off("drain", done);
              res.off("close", done);
              r();
            };
            res.on("drain", done);
            res.on("close", done);
          });
        }
      }
      res.end();
    } catch {
      res.destroy();
    } finally {
      f.responses.delete(res);
      await fh?.close().catch(() => undefined);
    }
  }
}
