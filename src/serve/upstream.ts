import { type Dispatcher, request } from "undici";
import { SourcePool } from "../fetch/sources.js";
import type { Metrics } from "./metrics.js";

export interface UpstreamAnswer {
  readonly endpoint: string;
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

/** Answers above this are not hub metadata. */
const MAX_META_BYTES = 32 * 1024 * 1024;

export function first(h: UpstreamAnswer["headers"], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A 404 that may be one upstream's own lack (a lagging mirror), not the hub's last word. */
const LACKING = new Set(["RepoNotFound", "RevisionNotFound", "EntryNotFound"]);

/**
 * A redirect to another hub's `/resolve/` URL (hf-mirror answers a 308 to huggingface.co for what it
 * has not cached): that upstream does not have it. A redirect to a CDN (the LFS 302) is an answer.
 */
function sentElsewhere(endpoint: string, status: number, location: string | undefined): boolean {
  if (status < 300 || status >= 400 || location === undefined) return false;
  try {
    const to = new URL(location, endpoint);
    return to.origin !== new URL(endpoint).origin && to.pathname.includes("/resolve/");
  } catch {
    return false;
  }
}

/**
 * The upstream endpoints, in order (those marked down last). Metadata requests go to the first
 * that answers: a network error or a 5xx moves on to the next; so do a 429, a 404 RepoNotFound /
 * RevisionNotFound / EntryNotFound and a redirect to another hub, as `--mirror` sets a lagging
 * mirror aside, but when no later one answers better that first answer is the one returned. The
 * client's own Authorization, never the server's token, goes with metadata requests: the upstream
 * decides what that client may see.
 */
export class Upstreams {
  readonly endpoints: readonly string[];
  readonly #dispatcher: Dispatcher;
  readonly #metrics: Metrics;
  readonly #pool: SourcePool;

  /** `pool`: the health the blob fetches learn too (a new one when absent). */
  constructor(
    endpoints: readonly string[],
    dispatcher: Dispatcher,
    metrics: Metrics,
    pool = new SourcePool(),
  ) {
    if (endpoints.length === 0) throw new Error("no upstream");
    this.endpoints = endpoints;
    this.#dispatcher = dispatcher;
    this.#metrics = metrics;
    this.#pool = pool;
  }

  /**
   * The endpoints in preference order, those marked down (failed repeatedly, by metadata requests
   * or blob fetches) moved last, the one down longest first: it is probed once its time is up.
   */
  order(now = Date.now()): string[] {
    const down = (e: string) => this.#pool.stats(e).downUntil > now;
    const later = this.endpoints.filter(down);
    later.sort((a, b) => this.#pool.stats(a).downUntil - this.#pool.stats(b).downUntil);
    return [...this.endpoints.filter((e) => !down(e)), ...later];
  }

  #failed(endpoint: string): void {
    this.#metrics.upstreamError(endpoint);
    this.#pool.failed(endpoint);
  }

  /** `pathAndQuery` starts with "/". Throws only when no upstream could be reached. */
  async ask(
    method: "GET" | "HEAD" | "POST",
    pathAndQuery: string,
    opts: { authorization?: string | undefined; contentType?: string | undefined; body?: Buffer | undefined },
    signal: AbortSignal,
  ): Promise<UpstreamAnswer> {
    let lastError: unknown;
    let fallback: UpstreamAnswer | undefined;
    const order = this.order();
    for (const [i, endpoint] of order.entries()) {
      const t0 = Date.now();
      try {
        const headers: Record<string, string> = {
          "user-agent": "hfget-serve/0.1",
          "accept-encoding": "identity",
        };
        if (opts.authorization) headers.authorization = opts.authorization;
        if (opts.contentType) headers["content-type"] = opts.contentType;
        const res = await request(`${endpoint}${pathAndQuery}`, {
          method,
          headers,
          body: opts.body ?? null,
          dispatcher: this.#dispatcher,
          signal,
        });
        const chunks: Buffer[] = [];
        let total = 0;
        for await (const c of res.body) {
          total += (c as Buffer).length;
          if (total > MAX_META_BYTES) {
            res.body.destroy();
            throw new Error("upstream answer too large");
          }
          chunks.push(c as Buffer);
        }
        if (res.statusCode >= 500) {
          this.#failed(endpoint);
          lastError = new Error(`upstream ${endpoint} answered ${res.statusCode}`);
          continue;
        }
        const answer = {
          endpoint,
          status: res.statusCode,
          headers: res.headers,
          body: Buffer.concat(chunks),
        };
        const lacking =
          res.statusCode === 429 ||
          (res.statusCode === 404 && LACKING.has(first(res.headers, "x-error-code") ?? "")) ||
          sentElsewhere(endpoint, res.statusCode, first(res.headers, "location"));
        if (res.statusCode === 429) this.#failed(endpoint);
        else {
          this.#pool.answered(endpoint, Date.now() - t0);
          this.#pool.succeeded(endpoint, 0, 0);
        }
        if (lacking && i < order.length - 1) {
          fallback ??= answer;
          continue;
        }
        return fallback !== undefined && lacking ? fallback : answer;
      } catch (err) {
        if (signal.aborted) throw err;
        this.#failed(endpoint);
        lastError = err;
      }
    }
    if (fallback !== undefined) return fallback;
    throw new UpstreamUnreachable(lastError);
  }
}

export class UpstreamUnreachable extends Error {
  constructor(cause: unknown) {
    super("no upstream answered", { cause });
  }
}
