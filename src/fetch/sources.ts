/**
 * The endpoints a run may fetch bytes from, with what the run has learned of each: health (failures
 * in a row, down until when, dropped for bad bytes), latency (time to the answer's headers) and
 * throughput (bytes per second of each request). The scheduler asks it for a source per chunk.
 * Every byte is checked against the listing's hashes, so any endpoint serving the pinned commit will do.
 * Once governed (`governConnections`), each endpoint also gets its own number of connections
 * (src/fetch/conns.ts), grown while more raise its rate.
 */
import { type ConnControlOptions, ConnectionControl, DEFAULT_CONN_CONTROL } from "./conns.js";

/** One place a file can be fetched from. */
export interface FileSource {
  /** The hub endpoint (origin and path prefix) the URL belongs to. */
  readonly endpoint: string;
  /** The resolve URL of the file at the pinned commit on that endpoint. */
  readonly url: string;
}

export interface EndpointStats {
  readonly endpoint: string;
  /** Failed requests in a row (a success resets it). */
  failures: number;
  /** Not asked before this time (ms since epoch), unless nothing else is left. */
  downUntil: number;
  /** Why the endpoint is out for the rest of the run (bad bytes), or undefined. */
  dropped: string | undefined;
  /** Smoothed time to the answer's headers, ms; undefined until measured. */
  latencyMs: number | undefined;
  /** Smoothed throughput of one request, bytes/s; undefined until measured. */
  bytesPerSec: number | undefined;
  /** Requests in flight now. */
  inflight: number;
  /** Bytes received from it this run. */
  bytes: number;
  /**
   * Smoothed rate of the whole endpoint (all its requests together), bytes/s, over windows of
   * RATE_WINDOW_MS; undefined until a window is measured. What the endgame balances on.
   */
  rate: number | undefined;
  /** The current rate window: its start (ms) and the bytes in it. */
  rateSince: number;
  rateBytes: number;
  /** How many requests it may have in flight (undefined: not governed). */
  control: ConnectionControl | undefined;
}

/** Failures in a row after which an endpoint is marked down. */
export const DOWN_AFTER = 3;
/** How long a down endpoint is left alone before it is probed again (doubles while it stays down). */
export const DOWN_MS = 5_000;
const DOWN_MAX_MS = 120_000;
/** Weight of a new measurement in the smoothed latency and throughput. */
const EWMA = 0.3;
/** An endpoint's whole rate is measured over windows of about this long. */
export const RATE_WINDOW_MS = 250;

/**
 * The run's last wave (see SourcePool.pick): what each endpoint still has to send of its requests in
 * flight, and the size of the chunk to place.
 */
export interface Endgame {
  /** Bytes `endpoint` has still to send of the requests in flight to it now. */
  readonly outstanding: (endpoint: string) => number;
  /** Bytes of the chunk being placed. */
  readonly bytes: number;
}

export class SourcePool {
  readonly #stats = new Map<string, EndpointStats>();
  readonly #now: () => number;
  #control: ConnControlOptions | undefined;
  /** Every run governed by this pool (one per Engine; hfget serve shares one pool among its fetches). */
  readonly #onRoom = new Set<() => void>();

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /**
   * From now on each endpoint starts with a few connections and grows toward `max` while more
   * raise its rate (src/fetch/conns.ts); `onRoom` is called when an endpoint may take more: its
   * count grew, or one of its requests ended. Every caller's `onRoom` is called, not only the last
   * one's: several runs on one pool (hfget serve's blob fetches) share each endpoint's count, and a
   * run waiting for room another run's request frees must hear of it. Returns the unsubscribe.
   */
  governConnections(max: number, onRoom: () => void, options: Partial<ConnControlOptions> = {}): () => void {
    this.#control = { ...DEFAULT_CONN_CONTROL, ...options, max };
    this.#onRoom.add(onRoom);
    for (const s of this.#stats.values()) s.control ??= new ConnectionControl(this.#control);
    return () => {
      this.#onRoom.delete(onRoom);
    };
  }

  #room(): void {
    for (const f of this.#onRoom) f();
  }

  /** Requests `endpoint` may have in flight now (Infinity when not governed). */
  allowed(endpoint: string): number {
    return this.stats(endpoint).control?.allowed ?? Number.POSITIVE_INFINITY;
  }

  /** Whether one more request to `endpoint` may start now. */
  hasRoom(endpoint: string): boolean {
    const s = this.stats(endpoint);
    return s.inflight < (s.control?.allowed ?? Number.POSITIVE_INFINITY);
  }

  /**
   * Whether a request for one of `sources` may start now: one of the endpoints `pick` would choose
   * from (the healthy ones, or every usable one when all are down) has room. True when none is
   * usable: the request then fails at once with what the endpoints said.
   */
  roomFor(sources: readonly FileSource[], endgame?: Endgame): boolean {
    const now = this.#now();
    const open = sources.filter((s) => this.usable(s.endpoint));
    if (open.length === 0) return true;
    const healthy = open.filter((s) => this.stats(s.endpoint).downUntil <= now);
    const from = healthy.length > 0 ? healthy : open;
    if (endgame !== undefined) {
      // In the last wave a chunk waits for the endpoint that would finish it first.
      const first = this.#firstDone(from, endgame);
      if (first !== undefined) return this.hasRoom(first.endpoint);
    }
    return from.some((s) => this.hasRoom(s.endpoint));
  }

  /**
   * Of `sources`, the one that would deliver `endgame.bytes` more first: (what it still has to send
   * + the chunk) / its whole rate. Undefined unless there are several and each one's rate is known.
   */
  #firstDone(sources: readonly FileSource[], endgame: Endgame): FileSource | undefined {
    if (sources.length < 2) return undefined;
    let best: FileSource | undefined;
    let bestAt = Number.POSITIVE_INFINITY;
    for (const s of sources) {
      const rate = this.stats(s.endpoint).rate;
      if (rate === undefined || rate <= 0) return undefined;
      const at = (endgame.outstanding(s.endpoint) + endgame.bytes) / rate;
      if (at < bestAt) {
        best = s;
        bestAt = at;
      }
    }
    return best;
  }

  #record(s: EndpointStats, bytes: number): void {
    if (s.control?.record(bytes, s.inflight, this.#now())) this.#room();
  }

  stats(endpoint: string): EndpointStats {
    let s = this.#stats.get(endpoint);
    if (s === undefined) {
      s = {
        endpoint,
        failures: 0,
        downUntil: 0,
        dropped: undefined,
        latencyMs: undefined,
        bytesPerSec: undefined,
        inflight: 0,
        bytes: 0,
        rate: undefined,
        rateSince: this.#now(),
        rateBytes: 0,
        control: this.#control === undefined ? undefined : new ConnectionControl(this.#control),
      };
      this.#stats.set(endpoint, s);
    }
    return s;
  }

  all(): EndpointStats[] {
    return [...this.#stats.values()];
  }

  /** Not dropped for the run (it may be down for now). */
  usable(endpoint: string): boolean {
    return this.stats(endpoint).dropped === undefined;
  }

  /**
   * The source for the next request of a file, or undefined when every source is excluded or
   * dropped. Down endpoints are asked only when no healthy one is left (that is their probe).
   * `small`: the file fits one request, so latency matters: the lowest-latency endpoint. Otherwise
   * the endpoint whose queue drains first at its measured throughput ((in flight + 1) / bytes/s),
   * so a large file's chunks spread over the endpoints in proportion to what each delivers; an
   * idle endpoint not measured yet is tried first. Ties go to the earlier source (the user's order).
   */
  pick(
    sources: readonly FileSource[],
    exclude: ReadonlySet<string>,
    small: boolean,
    endgame?: Endgame,
  ): FileSource | undefined {
    const now = this.#now();
    const open = sources.filter((s) => !exclude.has(s.endpoint) && this.usable(s.endpoint));
    if (open.length === 0) return undefined;
    let healthy = open.filter((s) => this.stats(s.endpoint).downUntil <= now);
    // A large file's chunk goes to an endpoint that has room for one more connection, if any has.
    if (!small && healthy.length > 1) {
      const roomy = healthy.filter((s) => this.hasRoom(s.endpoint));
      if (roomy.length > 0) healthy = roomy;
    }
    if (!small && endgame !== undefined) {
      // The run's last wave: the chunk goes where it would be done first, so that every endpoint
      // ends at about the same time. An endpoint grown to more connections than the others (each
      // endpoint's count is found on its own) would otherwise take every chunk the others have no
      // room for, and be left alone at the end with all its requests to send: measured with two
      // origins capped at 16 MB/s in total, one at 18 connections and one at 5 ended 1.2 s apart.
      const first = this.#firstDone(healthy, endgame);
      if (first !== undefined) return first;
    }
    if (healthy.length === 0) {
      // Every one is down: probe the one that went down first.
      return open.reduce((a, b) =>
        this.stats(b.endpoint).downUntil < this.stats(a.endpoint).downUntil ? b : a,
      );
    }
    const score = (s: FileSource): number => {
      const st = this.stats(s.endpoint);
      if (small) return st.latencyMs ?? 0;
      // Not measured yet: tried once when idle; while that first request runs, it is not guessed at.
      if (st.bytesPerSec === undefined) return st.inflight === 0 ? -1 : 1e12 + st.inflight;
      return (st.inflight + 1) / Math.max(1, st.bytesPerSec);
    };
    let best = healthy[0]!;
    let bestScore = score(best);
    for (const s of healthy.slice(1)) {
      const sc = score(s);
      if (sc < bestScore) {
        best = s;
        bestScore = sc;
      }
    }
    return best;
  }

  /** A request to `endpoint` starts. */
  started(endpoint: string): void {
    const s = this.stats(endpoint);
    if (s.inflight === 0) {
      // It was idle: its rate window starts now (the pause is not its rate).
      s.rateSince = this.#now();
      s.rateBytes = 0;
    }
    s.inflight++;
    this.#record(s, 0);
  }

  /** A request to `endpoint` ended (either way). */
  ended(endpoint: string): void {
    const s = this.stats(endpoint);
    s.inflight = Math.max(0, s.inflight - 1);
    this.#record(s, 0);
    // A slot is free: another run on this pool may be waiting for it.
    if (s.control !== undefined && this.#onRoom.size > 1) this.#room();
  }

  /** The answer's headers arrived after `ms`. */
  answered(endpoint: string, ms: number): void {
    const s = this.stats(endpoint);
    s.latencyMs = s.latencyMs === undefined ? ms : s.latencyMs + EWMA * (ms - s.latencyMs);
  }

  received(endpoint: string, bytes: number): void {
    const s = this.stats(endpoint);
    s.bytes += bytes;
    const now = this.#now();
    s.rateBytes += bytes;
    const dt = now - s.rateSince;
    if (dt >= RATE_WINDOW_MS) {
      const rate = (s.rateBytes * 1000) / dt;
      s.rate = s.rate === undefined ? rate : s.rate + EWMA * (rate - s.rate);
      s.rateSince = now;
      s.rateBytes = 0;
    }
    this.#record(s, bytes);
  }

  /** A request delivered `bytes` in `ms` (headers to last byte). */
  succeeded(endpoint: string, bytes: number, ms: number): void {
    const s = this.stats(endpoint);
    s.failures = 0;
    s.downUntil = 0;
    // Below this a request measures latency more than throughput.
    if (bytes < 64 * 1024 || ms <= 0) return;
    const rate = (bytes * 1000) / ms;
    s.bytesPerSec = s.bytesPerSec === undefined ? rate : s.bytesPerSec + EWMA * (rate - s.bytesPerSec);
  }

  /**
   * A request to `endpoint` failed. `waitMs`: the endpoint asked to be left alone that long (429).
   * Returns true when this marked the endpoint down.
   */
  failed(endpoint: string, waitMs = 0): boolean {
    const s = this.stats(endpoint);
    s.failures++;
    const now = this.#now();
    const wasDown = s.downUntil > now;
    if (waitMs > 0) s.downUntil = Math.max(s.downUntil, now + waitMs);
    if (s.failures >= DOWN_AFTER) {
      const ms = Math.min(DOWN_MAX_MS, DOWN_MS * 2 ** (s.failures - DOWN_AFTER));
      s.downUntil = Math.max(s.downUntil, now + ms);
    }
    return !wasDown && s.downUntil > now;
  }

  /** Out for the rest of the run (it sent bytes that failed the hash). */
  drop(endpoint: string, reason: string): void {
    this.stats(endpoint).dropped = reason;
  }
}
