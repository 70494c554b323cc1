import type * as Undici from "undici";
import apiMethods from "undici/lib/api/index.js";
import AgentClass from "undici/lib/dispatcher/agent.js";
import DispatcherClass from "undici/lib/dispatcher/dispatcher.js";
import EnvHttpProxyAgentClass from "undici/lib/dispatcher/env-http-proxy-agent.js";
import PoolClass from "undici/lib/dispatcher/pool.js";
import DecoratorHandlerClass from "undici/lib/handler/decorator-handler.js";

/**
 * The parts of undici hfget uses, imported from their own modules. undici's index also loads fetch,
 * WebSocket, EventSource, the cache stores, mock agents, interceptors and the SQLite cache: ~9 MB of
 * resident memory (heap and code) in every run that nothing here calls. undici's package.json has
 * no "exports" map, so these paths are public; their types (src/types/undici-lib.d.ts) are the
 * index's. Static imports, not a createRequire: the CLI bundle (scripts/bundle.mjs) can only take in
 * modules it sees imported, and a runtime require would load a second copy of undici's classes
 * from node_modules beside the bundled ones.
 */

// What undici's index does on load: request/stream/pipeline/upgrade/connect as dispatcher methods
// (ProxyAgent's CONNECT tunnel calls client.connect()). Idempotent if the index is loaded too.
Object.assign(DispatcherClass.prototype, apiMethods);

export const Agent = AgentClass;
export const Pool = PoolClass;
export const DecoratorHandler = DecoratorHandlerClass;
/** Used only when a proxy is configured; loaded always (~3-5 ms unbundled, less in the bundle), as
 * createDispatcher is synchronous. */
export const EnvHttpProxyAgent = EnvHttpProxyAgentClass;

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
