import type { Dispatcher } from "undici";
import type { Config } from "./config.js";
import { HubClient } from "./hub/client.js";
import { createDispatcher, HttpClient } from "./hub/http.js";
import { rateLimiter } from "./util/rate-limit.js";
import { DEFAULT_RETRY_POLICY, type Sleep } from "./util/retry.js";

export interface SessionDeps {
  /** Inject a dispatcher (tests); otherwise one keep-alive Agent is created for the session. */
  readonly dispatcher?: Dispatcher;
  readonly sleep?: Sleep;
  /** Told before each backoff of a hub API request (the CLI shows it as an "api-retry" event). */
  readonly onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
}

export interface Session {
  /** The client for the preferred endpoint (`config.endpoints[0]`). */
  readonly hub: HubClient;
  /** One client per endpoint, in preference order (`hubs[0]` is `hub`); all share one pool. */
  readonly hubs: readonly HubClient[];
  close(): Promise<void>;
}

/** One HTTP client, one connection pool and one retry policy for everything a command does. */
export function openSession(config: Config, deps: SessionDeps = {}): Session {
  const owned = deps.dispatcher === undefined;
  const dispatcher =
    deps.dispatcher ??
    createDispatcher({
      timeoutMs: config.timeoutMs,
      proxy: config.proxy,
      limiter: rateLimiter(config.limitRate ?? 0),
    });
  const http = new HttpClient({
    endpoint: config.endpoint,
    endpoints: config.endpoints,
    token: config.token,
    dispatcher,
  });
  const hub = new HubClient({
    http,
    retry: { ...DEFAULT_RETRY_POLICY, retries: config.retries },
    ...(deps.sleep ? { sleep: deps.sleep } : {}),
    ...(deps.onRetry ? { onRetry: deps.onRetry } : {}),
  });
  const hubs = [hub, ...config.endpoints.slice(1).map((endpoint) => hub.with({ endpoint }))];
  return {
    hub,
    hubs,
    close: async () => {
      if (owned) await dispatcher.close().catch(() => undefined);
    },
  };
}
