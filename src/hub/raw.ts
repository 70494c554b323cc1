import type { Dispatcher } from "undici";

/**
 * A response body read straight from undici's dispatch handler: each piece the HTTP parser hands
 * over goes synchronously to one `onData` callback. No Readable, no async iterator, no promise per
 * socket read (on a fast link those cost more CPU than the bytes themselves: ~11,000 reads per
 * 256 MiB). Backpressure is the reader's: `pause()` stops the socket reads (undici does not count
 * a paused response against bodyTimeout), `resume()` restarts them; neither may be called from
 * inside `onData` except `pause()`.
 */
export interface RawBody {
  /**
   * Starts delivering the body (the response is held paused until then). `onEnd` is called once
   * the last byte arrived, `onError` on any failure (reset, bodyTimeout, abort): exactly one of the
   * two is called, once.
   */
  read(onData: (chunk: Buffer) => void, onEnd: () => void, onError: (err: unknown) => void): void;
  /**
   * Whether `pause()` is safe: only on a keep-alive answer with a length. undici 7.30 asserts
   * (and crashes the process) when a server closes a non-keep-alive connection while its
   * response is paused (HTTP/1.0 proxies such as tinyproxy answer so); such a body must be read
   * without pauses and buffered by the reader instead.
   */
  readonly pausable: boolean;
  /** Pauses the socket reads (only when `pausable`, else a no-op). */
  pause(): void;
  resume(): void;
  /** Drops the rest of the body (the connection is closed unless the body had ended). */
  destroy(): void;
  /** Reads the rest and throws it away, so the connection is reused; past `limit` bytes it is dropped. */
  dump(limit?: number): Promise<void>;
  /** The body as UTF-8 text, up to about `limit` bytes (then the rest is dropped). Never rejects. */
  text(limit: number): Promise<string>;
}

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: RawBody;
  /** The URL that answered, after redirects. */
  readonly url: string;
}

/** Why a body was dropped: never seen by the reader (its callbacks are gone by then). */
class Dropped extends Error {
  constructor() {
    super("response body dropped by the reader");
    this.name = "AbortError";
  }
}

const DUMP_LIMIT = 128 * 1024;

/** Bytes held for a reader not attached yet before its response is paused (when pausable). */
const EARLY_LIMIT = 1024 * 1024;

function keepAlive(headers: Record<string, string | string[] | undefined>): boolean {
  const conn = String(headers.connection ?? "").toLowerCase();
  const te = String(headers["transfer-encoding"] ?? "").toLowerCase();
  return (
    conn.includes("keep-alive") &&
    !conn.includes("close") &&
    (headers["content-length"] !== undefined || te.includes("chunked"))
  );
}

/**
 * One exchange through `dispatcher.dispatch`: resolves with the status and headers (the body then
 * waits, paused, for `read`), rejects when no answer came (connection refused, headersTimeout,
 * abort). `signal` aborts the exchange at any point.
 */
export function dispatchRaw(
  dispatcher: Dispatcher,
  url: URL,
  opts: { method: "GET" | "HEAD"; headers: Record<string, string>; signal?: AbortSignal | undefined },
): Promise<Omit<RawResponse, "url">> {
  return new Promise((resolve, reject) => {
    const signal = opts.signal;
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    let controller: Dispatcher.DispatchController | undefined;
    let started = false;
    let finished = false;
    let failure: unknown;
    let onData: ((chunk: Buffer) => void) | undefined;
    let onEnd: (() => void) | undefined;
    let onError: ((err: unknown) => void) | undefined;
    let reading = false;
    let pausable = false;
    /** Pieces that came before the reader (the rest of the socket read that held the headers). */
    let early: Buffer[] | undefined;
    let earlyBytes = 0;
    let earlyPaused = false;
    let readerPaused = false;
    const onAbort = () => {
      const reason = signal?.reason ?? new Dropped();
      if (controller) controller.abort(reason);
      else failure = reason;
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const settle = () => {
      finished = true;
      signal?.removeEventListener("abort", onAbort);
    };
    const body: RawBody = {
      get pausable() {
        return pausable;
      },
      read(d, e, f) {
        reading = true;
        onData = d;
        const held = early;
        early = undefined;
        if (held) for (const piece of held) d(piece);
        if (finished) {
          if (failure !== undefined) f(failure);
          else e();
          return;
        }
        onEnd = e;
        onError = f;
        if (earlyPaused) {
          earlyPaused = false;
          if (!readerPaused) controller?.resume();
        }
      },
      pause: () => {
        readerPaused = true;
        if (pausable) controller?.pause();
      },
      resume: () => {
        readerPaused = false;
        controller?.resume();
      },
      destroy() {
        onData = undefined;
        onEnd = undefined;
        onError = undefined;
        if (!finished) controller?.abort(new Dropped());
      },
      dump(limit = DUMP_LIMIT) {
        return readUpTo(limit);
      },
      text(limit) {
        const parts: Buffer[] = [];
        return readUpTo(limit, (chunk) => parts.push(Buffer.from(chunk))).then(() =>
          Buffer.concat(parts).toString("utf8"),
        );
      },
    };
    /**
     * Reads to the end, handing each chunk to `keep`; past `limit` bytes the rest is dropped (with the
     * connection). Never rejects: a body cut short is what it is.
     */
    const readUpTo = (limit: number, keep?: (chunk: Buffer) => void): Promise<void> =>
      new Promise((res) => {
        let got = 0;
        body.read(
          (chunk) => {
            keep?.(chunk);
            got += chunk.length;
            if (got > limit) {
              // Not from inside the parser's callback: pause now, drop just after.
              body.pause();
              queueMicrotask(() => body.destroy());
              res();
            }
          },
          res,
          () => res(),
        );
      });
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (failure !== undefined) c.abort(failure instanceof Error ? failure : new Dropped());
      },
      onResponseStart(c, status, headers) {
        controller = c;
        if (status < 200) return; // 1xx: the real answer follows
        started = true;
        const h = headers as RawResponse["headers"];
        pausable = keepAlive(h);
        resolve({ status, headers: h, body });
      },
      onResponseData(c, chunk) {
        if (onData) {
          onData(chunk);
          return;
        }
        if (reading) return; // dropped by the reader
        if (early === undefined) early = [];
        early.push(chunk);
        earlyBytes += chunk.length;
        if (earlyBytes > EARLY_LIMIT && pausable && !earlyPaused) {
          earlyPaused = true;
          c.pause();
        }
      },
      onResponseEnd() {
        settle();
        const e = onEnd;
        onData = onEnd = onError = undefined;
        e?.();
      },
      onResponseError(_c, err) {
        settle();
        failure = err;
        if (!started) {
          reject(err);
          return;
        }
        const f = onError;
        onData = onEnd = onError = undefined;
        f?.(err);
      },
    };
    dispatcher.dispatch(
      {
        origin: url.origin,
        path: url.search ? `${url.pathname}${url.search}` : url.pathname,
        method: opts.method,
        headers: opts.headers,
      },
      handler,
    );
  });
}
