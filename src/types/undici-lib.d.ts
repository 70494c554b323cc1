// Types for the undici modules src/hub/undici.ts imports one by one. undici ships types only for its
// index; each of these modules' module.exports is the index's export of the same name (undici's
// index.js re-exports them as such), so the index's types describe them.

declare module "undici/lib/dispatcher/dispatcher.js" {
  import type { Dispatcher } from "undici";

  const DispatcherClass: typeof Dispatcher;
  export default DispatcherClass;
}

declare module "undici/lib/api/index.js" {
  /** request, stream, pipeline, upgrade, connect: functions of `this` (a dispatcher) that undici's
   * index installs as Dispatcher methods; undici.ts only copies them onto the prototype. */
  const api: object;
  export default api;
}

declare module "undici/lib/dispatcher/agent.js" {
  import type { Agent } from "undici";

  const AgentClass: typeof Agent;
  export default AgentClass;
}

declare module "undici/lib/dispatcher/pool.js" {
  import type { Pool } from "undici";

  const PoolClass: typeof Pool;
  export default PoolClass;
}

declare module "undici/lib/handler/decorator-handler.js" {
  import type { DecoratorHandler } from "undici";

  const DecoratorHandlerClass: typeof DecoratorHandler;
  export default DecoratorHandlerClass;
}

declare module "undici/lib/dispatcher/env-http-proxy-agent.js" {
  import type { EnvHttpProxyAgent } from "undici";

  const EnvHttpProxyAgentClass: typeof EnvHttpProxyAgent;
  export default EnvHttpProxyAgentClass;
}
