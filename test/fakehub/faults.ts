// Fault rules: which request gets which misbehaviour.

export type Fault =
  /** Replace the response: e.g. 500, or 429 with headers {"Retry-After": "1"}. */
  | { type: "status"; status: number; headers?: Record<string, string>; body?: string }
  /** Send the real headers + exactly afterBytes body bytes, then destroy the socket. */
  | { type: "drop"; afterBytes: number }
  /** Send the real headers + afterBytes body bytes, then nothing for ms (default: forever), then the rest. */
  | { type: "stall"; afterBytes: number; ms?: number }
  /** Answer 200 with the full body even when Range was sent. */
  | { type: "ignoreRange" }
  /** 206 whose Content-Range and bytes are for the requested offsets shifted by `shift` (clamped to the file). */
  | { type: "wrongContentRange"; shift: number }
  /** Flip bytes in the body (XOR 0x01 at body offsets 0, 65536, ...); same length, same headers. */
  | { type: "corrupt" }
  /**
   * Send `count` bytes more than announced. Default: Content-Length says N, N+count bytes are written,
   * then the connection is ended. With chunked: true, no Content-Length and N+count bytes chunked.
   */
  | { type: "extraBytes"; count: number; chunked?: boolean }
  /** Different bytes (XOR 0xff) and different ETag / X-Linked-Etag, like an upstream that changed. */
  | { type: "changeContent" }
  /** Pace the body at this rate. */
  | { type: "throttle"; bytesPerSec: number }
  /** Answer `status` (default 302) with this Location. */
  | { type: "redirect"; location: string; status?: number }
  /** Answer this raw body (default status 200, content type application/json). */
  | { type: "body"; status?: number; contentType?: string; body: string | Buffer }
  /** Stream this many bytes of JSON-ish garbage ("[" + repeated objects, never closed), chunked. */
  | { type: "hugeBody"; bytes: number };

export interface FaultRule {
  /** Default "any". */
  server?: "hub" | "cdn" | "any";
  /** Only requests whose url (path + query as received) contains this. */
  pathIncludes?: string;
  /** Only this method (case-insensitive). */
  method?: string;
  /** Apply to the first N matching requests, then stop. Decremented in place each time the rule fires. */
  times?: number;
  /** 0..1: chance the rule fires for a matching request, drawn from a PRNG seeded with `seed` (default 1). */
  probability?: number;
  seed?: number;
  fault: Fault;
}

export interface FaultRequest {
  server: "hub" | "cdn";
  method: string;
  url: string;
}

const prngs = new WeakMap<FaultRule, () => number>();

/** A small seeded PRNG: fault probabilities and test schedules replay exactly. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The first rule (in array order) that matches and fires for this request, or undefined.
 * Firing consumes one of the rule's `times`.
 */
export function pickFault(rules: readonly FaultRule[], req: FaultRequest): Fault | undefined {
  for (const rule of rules) {
    const server = rule.server ?? "any";
    if (server !== "any" && server !== req.server) continue;
    if (rule.pathIncludes !== undefined && !req.url.includes(rule.pathIncludes)) continue;
    if (rule.method !== undefined && rule.method.toUpperCase() !== req.method.toUpperCase()) continue;
    if (rule.times !== undefined && rule.times <= 0) continue;
    if (rule.probability !== undefined) {
      let next = prngs.get(rule);
      if (next === undefined) {
        next = mulberry32(rule.seed ?? 1);
        prngs.set(rule, next);
      }
      if (next() >= rule.probability) continue;
    }
    if (rule.times !== undefined) rule.times -= 1;
    return rule.fault;
  }
  return undefined;
}
