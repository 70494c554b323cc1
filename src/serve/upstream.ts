import type { Dispatcher } from "undici";
import { request } from "../hub/undici.js";
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

/**
 * The upstream endpoints, in order. Metadata requests go to the first that answers (a network
 * error or a 5xx moves on to the next). The client's own Authorization, never the server's token,
 * goes with metadata requests: the upstream decides what that client may see.
 */
export class Upstreams {
  readonly endpoints: readonly string[];
  readonly #dispatcher: Dispatcher;
  readonly #metrics: Metrics;

  constructor(endpoints: readonly string[], dispatcher: Dispatcher, metrics: Metrics) {
    if (endpoints.length === 0) throw new Error("no upstream");
    this.endpoints = endpoints;
    this.#dispatcher = dispatcher;
    this.#metrics = metrics;
  }

  /** `pathAndQuery` starts with "/". Throws only when no upstream could be reached. */
  async ask(
    method: "GET" | "HEAD" | "POST",
    pathAndQuery: string,
    opts: { authorization?: string | undefined; contentType?: string | undefined; body?: Buffer | undefined },
    signal: AbortSignal,
  ): Promise<UpstreamAnswer> {
    let lastError: unknown;
    for (const endpoint of this.endpoints) {
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
          this.#metrics.upstreamError(endpoint);
          lastError = new Error(`upstream ${endpoint} answered ${res.statusCode}`);
          continue;
        }
        return { endpoint, status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
      } catch (err) {
        if (signal.aborted) throw err;
        this.#metrics.upstreamError(endpoint);
        lastError = err;
      }
    }
    throw new UpstreamUnreachable(lastError);
  }
}

export class UpstreamUnreachable extends Error {
  constructor(cause: unknown) {
    super("no upstream answered", { cause });
  }
}
