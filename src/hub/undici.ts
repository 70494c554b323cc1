import { createRequire } from "node:module";
import type * as Undici from "undici";

/**
 * The parts of undici hfget uses, loaded from their own modules. undici's index also loads fetch,
 * WebSocket, EventSource, the cache stores, mock agents, interceptors and the SQLite cache: ~9 MB of
 * resident memory (heap and code) in every run that nothing here calls. undici's package.json has
 * no "exports" map, so these paths are public to require; the types are the index's.
 */
const require = createRequire(import.meta.url);

const DispatcherClass = require("undici/lib/dispatcher/dispatcher.js") as typeof Undici.Dispatcher;
// What undici's index does on load: request/stream/pipeline/upgrade/connect as dispatcher methods
// (ProxyAgent's CONNECT tunnel calls client.connect()). Idempotent if the index is loaded too.
Object.assign(DispatcherClass.prototype, require("undici/lib/api/index.js") as object);

export const Agent = require("undici/lib/dispatcher/agent.js") as typeof Undici.Agent;
export const Pool = require("undici/lib/dispatcher/pool.js") as typeof Undici.Pool;
export const DecoratorHandler =
  require("undici/lib/handler/decorator-handler.js") as typeof Undici.DecoratorHandler;

/** Loaded only when a proxy is configured. */
export function envHttpProxyAgent(): typeof Undici.EnvHttpProxyAgent {
  return require("undici/lib/dispatcher/env-http-proxy-agent.js") as typeof Undici.EnvHttpProxyAgent;
}

export type RequestOptions = Omit<Undici.Dispatcher.RequestOptions, "origin" | "path" | "method"> & {
  readonly method?: Undici.Dispatcher.HttpMethod;
  readonly dispatcher: Undici.Dispatcher;
};

/** undici's top-level `request(url, opts)` with an explicit dispatcher: origin and path from the URL. */
export function request(url: string | URL, opts: RequestOptions): Promise<Undici.Dispatcher.ResponseData> {
  const u = typeof url === "string" ? new URL(url) : url;
  const { dispatcher, ...rest } = opts;
  return dispatcher.request({
    ...rest,
    origin: u.origin,
    path: u.search ? `${u.pathname}${u.search}` : u.pathname,
    method: opts.method ?? (opts.body ? "PUT" : "GET"),
  });
}
