import { Agent, type Dispatcher, EnvHttpProxyAgent, Pool, request } from "undici";
import { HfgetError, redact } from "../errors.js";

export interface ProxySettings {
  readonly httpProxy?: string | undefined;
  readonly httpsProxy?: string | undefined;
  readonly noProxy?: string | undefined;
}

export interface DispatcherOptions {
  readonly timeoutMs: number;
  readonly proxy?: ProxySettings | undefined;
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
export function createDispatcher(opts: DispatcherOptions): Dispatcher {
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
  /** Normalized endpoint; Authorization is only ever sent to its origin. */
  readonly endpoint: string;
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
  readonly endpointOrigin: string;
  readonly dispatcher: Dispatcher;
  readonly #token: string | undefined;
  readonly #userAgent: string;

  constructor(opts: HttpClientOptions) {
    this.endpoint = opts.endpoint;
    this.endpointOrigin = new URL(opts.endpoint).origin;
    this.dispatcher = opts.dispatcher;
    this.#token = opts.token;
    this.#userAgent = opts.userAgent ?? "hfget/0.1";
  }

  get hasToken(): boolean {
    return this.#token !== undefined;
  }

  /** Removes the token from any text that may be shown to the user. */
  redact(text: string): string {
    return redact(text, [this.#token]);
  }

  /** The token goes to the endpoint's exact origin (scheme, host and port) and nowhere else. */
  headersFor(url: URL, extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = {
      "user-agent": this.#userAgent,
      "accept-encoding": "identity",
      ...extra,
    };
    if (this.#token !== undefined && url.origin === this.endpointOrigin) {
      h.authorization = `Bearer ${this.#token}`;
    }
    return h;
  }

  async request(url: string, init: RequestInit = {}): Promise<HttpResponse> {
    const follow = init.followRedirects ?? true;
    const seen = new Set<string>();
    let current = new URL(url);
    for (let hop = 0; ; hop++) {
      seen.add(current.href);
      const res = await this.#once(current, init);
      if (!follow || res.status < 300 || res.status >= 400 || res.status === 304) return res;
      const location = header(res.headers, "location");
      await res.body.dump().catch(() => undefined);
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

  async #once(url: URL, init: RequestInit): Promise<HttpResponse> {
    try {
      const res = await request(url, {
        method: init.method ?? "GET",
        headers: this.headersFor(url, init.headers),
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
