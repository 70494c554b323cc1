import type { Dispatcher } from "undici";
import { HfgetError, redact } from "../errors.js";
import type { RateLimiter } from "../util/rate-limit.js";
import { dispatchRaw, type RawResponse } from "./raw.js";
import { Agent, DecoratorHandler, EnvHttpProxyAgent, Pool, request } from "./undici.js";

export type { RawBody, RawResponse } from "./raw.js";

export interface ProxySettings {
  readonly httpProxy?: string | undefined;
  readonly httpsProxy?: string | undefined;
  readonly noProxy?: string | undefined;
}

export interface DispatcherOptions {
  readonly timeoutMs: number;
  readonly proxy?: ProxySettings | undefined;
  /** --limit-rate: every response body read through the dispatcher counts against it. */
  readonly limiter?: RateLimiter | undefined;
}

/**
 * Counts each body chunk against the limiter as it arrives from the socket and, when the run is
 * over its cap, pauses this response's socket reads for as long as the limiter says. That is
 * backpressure on the connection itself (the server sees a slow reader, as with curl
 * --limit-rate), it covers every body of every connection of the dispatcher (chunks, small files,
 * API JSON), and no reader above needs to know. undici does not count a paused response against
 * bodyTimeout, so a long wait is not a stall.
 */
function rateLimited(limiter: RateLimiter, handler: Dispatcher.DispatchHandler): Dispatcher.DispatchHandler {
  // DecoratorHandler adapts undici's older handler style (what request() passes) to controllers;
  // its typings declare no methods, so it is used through the DispatchHandler interface.
  const inner: Dispatcher.DispatchHandler = new DecoratorHandler(handler);
  // The reader downstream pauses and resumes through `gate`, so its resume cannot cut our wait
  // short: the socket resumes only when both the reader wants more and the cap allows it.
  let real: Dispatcher.DispatchController | undefined;
  let readerPaused = false;
  let until = 0;
  let timer: NodeJS.Timeout | undefined;
  const gate: Dispatcher.DispatchController = {
    get aborted() {
      return real?.aborted ?? false;
    },
    get paused() {
      return real?.paused ?? false;
    },
    get reason() {
      return real?.reason ?? null;
    },
    abort: (reason) => real?.abort(reason),
    pause: () => {
      readerPaused = true;
      real?.pause();
    },
    resume: () => {
      readerPaused = false;
      if (timer === undefined) real?.resume();
    },
  };
  const bind = (c: Dispatcher.DispatchController) => {
    real = c;
    return gate;
  };
  return {
    onRequestStart: (c, context) => inner.onRequestStart?.(bind(c), context),
    onRequestUpgrade: (c, status, headers, socket) =>
      inner.onRequestUpgrade?.(bind(c), status, headers, socket),
    onResponseStart: (c, status, headers, message) =>
      inner.onResponseStart?.(bind(c), status, headers, message),
    onResponseData: (c, chunk) => {
      inner.onResponseData?.(bind(c), chunk);
      const wait = limiter.reserve(chunk.length);
      if (wait <= 0) return;
      until = Math.max(until, performance.now() + wait);
      c.pause();
      if (timer !== undefined) clearTimeout(timer);
      timer = setTimeout(
        () => {
          timer = undefined;
          if (!readerPaused) c.resume();
        },
        Math.max(1, until - performance.now()),
      );
    },
    onResponseEnd: (c, trailers) => {
      if (timer !== undefined) clearTimeout(timer);
      inner.onResponseEnd?.(bind(c), trailers);
    },
    onResponseError: (c, err) => {
      if (timer !== undefined) clearTimeout(timer);
      inner.onResponseError?.(bind(c), err);
    },
  };
}

export function rateLimitInterceptor(limiter: RateLimiter): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => dispatch(opts, rateLimited(limiter, handler));
}

/** The one dispatcher, with the rate cap on top when there is one. */
export function createDispatcher(opts: DispatcherOptions): Dispatcher {
  const base = createBaseDispatcher(opts);
  return opts.limiter === undefined ? base : base.compose(rateLimitInterceptor(opts.limiter));
}

/**
 * The one keep-alive connection pool of the process. Stalls are caught by undici's bodyTimeout
 * (time between two body chunks), slow servers by headersTimeout.
 *
 * Behind a proxy (settings from config.ts; undici is never left to read process.env itself):
 * https targets go through a CONNECT tunnel; plain-http targets (a mirror or CDN on http) are sent
 * to the proxy as absolute-form requests (`GET http://host:port/path`), as curl and
 * huggingface_hub do, because Debian's default tinyproxy and squid allow CONNECT to 443 only.
 * NO_PROXY entries (host, .suffix, host:port, `*`) go direct. There is no implicit localhost
 * bypass: 127.0.0.1 goes through the proxy unless NO_PROXY names it. Proxy-Authorization comes only
 * from the proxy URL's userinfo; the hub token is an ordinary Authorization header that HttpClient
 * adds for the endpoint origin alone.
 */
function createBaseDispatcher(opts: DispatcherOptions): Dispatcher {
  const common = {
    connectTimeout: Math.min(opts.timeoutMs, 30_000),
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs,
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
  };
  const p = opts.proxy;
  if (p && (p.httpProxy || p.httpsProxy)) {
    return new EnvHttpProxyAgent({
      ...common,
      // Absolute-form for http targets behind an http proxy (undici's default is to tunnel all).
      proxyTunnel: false,
      // undici builds the pool to the proxy for absolute-form requests with only `connect`:
      // without this the timeouts above would not apply to plain-http targets.
      factory: (origin: string | URL, o: object) => new Pool(origin, { ...common, ...o }),
      // Empty strings, not undefined: undici would otherwise fall back to process.env.
      httpProxy: p.httpProxy ?? "",
      // Without HTTPS_PROXY, https targets use HTTP_PROXY (undici's rule, unchanged).
      httpsProxy: p.httpsProxy ?? "",
      noProxy: p.noProxy ?? "",
    });
  }
  return new Agent(common);
}

export const MAX_REDIRECTS = 5;

/** Failures that another attempt a second later will not fix: unknown host, bad certificate. */
const PERMANENT_NETWORK_ERRORS =
  /^(ENOTFOUND|ERR_INVALID_URL|ERR_TLS_|ERR_SSL_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_(GET|VERIFY)_|HOSTNAME_MISMATCH|ERR_TLS_CERT)/;

export interface HttpResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Dispatcher.ResponseData["body"];
  /** The URL that answered, after redirects. */
  readonly url: string;
}

export interface RequestInit {
  readonly method?: "GET" | "HEAD";
  readonly headers?: Record<string, string>;
  readonly signal?: AbortSignal | undefined;
  /** Follow redirects (by hand: auth dropped on origin change, loops and odd schemes refused). Default true. */
  readonly followRedirects?: boolean;
  /** Called before a redirect is followed; throws to refuse it (a mirror sending us elsewhere). */
  readonly checkRedirect?: (from: URL, to: URL, status: number) => void;
}

export interface HttpClientOptions {
  /** Normalized endpoint (the preferred one). */
  readonly endpoint: string;
  /**
   * Every listed endpoint (default: `[endpoint]`). Authorization is sent only to their origins, and
   * only on a request that started there and has not been redirected to any other origin.
   */
  readonly endpoints?: readonly string[];
  readonly token?: string | undefined;
  readonly dispatcher: Dispatcher;
  readonly userAgent?: string;
}

export function header(h: HttpResponse["headers"], name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

export class HttpClient {
  readonly endpoint: string;
  /** The preferred endpoint's origin. */
  readonly endpointOrigin: string;
  /** The origins of every listed endpoint: the only places the token goes. */
  readonly endpointOrigins: ReadonlySet<string>;
  readonly dispatcher: Dispatcher;
  readonly #token: string | undefined;
  readonly #userAgent: string;

  constructor(opts: HttpClientOptions) {
    this.endpoint = opts.endpoint;
    this.endpointOrigin = new URL(opts.endpoint).origin;
    this.endpointOrigins = new Set([opts.endpoint, ...(opts.endpoints ?? [])].map((e) => new URL(e).origin));
    this.dispatcher = opts.dispatcher;
    this.#token = opts.token;
    this.#userAgent = opts.userAgent ?? "hfget/0.1";
  }

  /**
   * The same pool, token and set of listed origins, with `endpoint` as the preferred one (so
   * `endpointOrigin`, which the chunk fetcher compares answers with, is that endpoint's).
   */
  withEndpoint(endpoint: string): HttpClient {
    return new HttpClient({
      endpoint,
      endpoints: [...this.endpointOrigins],
      token: this.#token,
      dispatcher: this.dispatcher,
      userAgent: this.#userAgent,
    });
  }

  get hasToken(): boolean {
    return this.#token !== undefined;
  }

  /** Removes the token from any text that may be shown to the user. */
  redact(text: string): string {
    return redact(text, [this.#token]);
  }

  /** Whether `origin` (scheme, host and port) is one of the listed endpoints'. */
  isEndpointOrigin(origin: string): boolean {
    return this.endpointOrigins.has(origin);
  }

  /**
   * The token goes to a listed endpoint's exact origin (scheme, host and port) and nowhere else;
   * `mayAuth` false (a hop reached by a redirect to another origin) sends none at all.
   */
  headersFor(url: URL, extra: Record<string, string> = {}, mayAuth = true): Record<string, string> {
    const h: Record<string, string> = {
      "user-agent": this.#userAgent,
      "accept-encoding": "identity",
      ...extra,
    };
    if (mayAuth && this.#token !== undefined && this.endpointOrigins.has(url.origin)) {
      h.authorization = `Bearer ${this.#token}`;
    }
    return h;
  }

  async request(url: string, init: RequestInit = {}): Promise<HttpResponse> {
    return this.#follow(
      url,
      init,
      (u, mayAuth) => this.#once(u, init, mayAuth),
      (res) => res.body.dump().catch(() => undefined),
    );
  }

  /**
   * The same exchange as `request` (redirects, token rules, error mapping), with the body read
   * straight from undici's dispatch handler instead of a Readable: for the chunk fetcher, where
   * a Readable and its async iterator cost more CPU per byte than the bytes themselves.
   */
  async open(url: string, init: RequestInit = {}): Promise<RawResponse> {
    return this.#follow(
      url,
      init,
      async (u, mayAuth) => {
        try {
          const res = await dispatchRaw(this.dispatcher, u, {
            method: init.method ?? "GET",
            headers: this.headersFor(u, init.headers, mayAuth),
            signal: init.signal,
          });
          return { ...res, url: u.href };
        } catch (err) {
          throw this.networkError(err, u, init.signal);
        }
      },
      (res) => res.body.dump(),
    );
  }

  /**
   * Follows redirects by hand over `once` (one hop; `mayAuth` false once a redirect left the
   * origin the request started at): auth dropped on origin change, loops, odd schemes and more
   * than MAX_REDIRECTS refused, `checkRedirect` asked before each hop. `drop` discards a redirect's body.
   */
  async #follow<R extends { readonly status: number; readonly headers: HttpResponse["headers"] }>(
    url: string,
    init: RequestInit,
    once: (url: URL, mayAuth: boolean) => Promise<R>,
    drop: (res: R) => Promise<void>,
  ): Promise<R> {
    const follow = init.followRedirects ?? true;
    const seen = new Set<string>();
    let current = new URL(url);
    const startOrigin = current.origin;
    // Once a redirect left the origin the request started at, no later hop gets the token, even
    // one back on a listed endpoint: the user trusted the endpoints, not wherever they point.
    let stayed = true;
    for (let hop = 0; ; hop++) {
      seen.add(current.href);
      stayed &&= current.origin === startOrigin;
      const res = await once(current, stayed);
      if (!follow || res.status < 300 || res.status >= 400 || res.status === 304) return res;
      const location = header(res.headers, "location");
      await drop(res);
      if (location === undefined) {
        throw new HfgetError(
          "PROTOCOL",
          `${res.status} redirect without a Location from ${this.#show(current)}`,
        );
      }
      const next = new URL(location, current);
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        throw new HfgetError(
          "PROTOCOL",
          `refused a redirect to a ${next.protocol} URL from ${this.#show(current)}`,
          {
            hint: "only http and https redirects are followed",
          },
        );
      }
      if (seen.has(next.href)) {
        throw new HfgetError("PROTOCOL", `redirect loop at ${this.#show(next)}`);
      }
      // `hop` redirects were followed so far; this would be one more.
      if (hop >= MAX_REDIRECTS) {
        throw new HfgetError(
          "PROTOCOL",
          `more than ${MAX_REDIRECTS} redirects from ${this.#show(new URL(url))}`,
        );
      }
      init.checkRedirect?.(current, next, res.status);
      current = next;
    }
  }

  async #once(url: URL, init: RequestInit, mayAuth: boolean): Promise<HttpResponse> {
    try {
      const res = await request(url, {
        method: init.method ?? "GET",
        headers: this.headersFor(url, init.headers, mayAuth),
        dispatcher: this.dispatcher,
        signal: init.signal ?? null,
      });
      // Callers drop bodies they do not want with body.destroy(); undici then emits an 'error'
      // (RequestAbortedError) on a body not read to its end, which would crash the process with no
      // listener. Readers still see errors through their async iterator or dump().
      res.body.on("error", () => undefined);
      return { status: res.statusCode, headers: res.headers, body: res.body, url: url.href };
    } catch (err) {
      throw this.networkError(err, url, init.signal);
    }
  }

  /** Maps a transport failure (refused, reset, DNS, TLS, timeout, abort) to an HfgetError. */
  networkError(err: unknown, url: URL, signal?: AbortSignal | undefined): unknown {
    if (err instanceof HfgetError) return err;
    if (signal?.aborted) return signal.reason ?? err;
    const e = err as { code?: string; message?: string; name?: string };
    const code = e.code ?? e.name ?? "error";
    const detail = this.redact(e.message ?? String(err));
    // undici's words for a proxy's 407, plain-http (absolute-form) and CONNECT respectively.
    const proxyAuth = /Proxy Authentication Required \(407\)|Proxy response \(407\)/.test(detail);
    const permanent = PERMANENT_NETWORK_ERRORS.test(code) || proxyAuth;
    return new HfgetError("NETWORK", `cannot reach ${this.#show(url)}: ${code} (${detail})`, {
      hint: proxyAuth
        ? "the proxy wants credentials: put them in the proxy URL, e.g. HTTPS_PROXY=http://user:password@host:port"
        : /CERT|TLS|SSL/.test(code)
          ? "the TLS certificate was refused; check the endpoint's certificate or NODE_EXTRA_CA_CERTS"
          : "check the network, proxy settings and --mirror / HF_ENDPOINT",
      cause: err,
      retryable: !permanent,
    });
  }

  /** A URL as shown in messages: origin and path, never a presigned query string. */
  #show(url: URL): string {
    return this.redact(`${url.origin}${url.pathname}`);
  }
}

export function showUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return "<invalid URL>";
  }
}
