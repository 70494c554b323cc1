// Turning a response plan plus an optional fault into bytes on the wire.
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { STATUS_CODES } from "node:http";
import { Readable } from "node:stream";
import type { Fault } from "./faults.js";

export type Headers = Record<string, string>;

export interface RequestLogEntry {
  server: "hub" | "cdn";
  method: string;
  /** Path + query as received. */
  url: string;
  range?: string;
  /** Whether the Authorization header carried the test token. */
  authorization: "none" | "token" | "other";
  /** 0 until headers are sent (stays 0 if the socket closed before). */
  status: number;
  /** Body bytes handed to the socket. */
  bytesSent: number;
  /** Date.now() at arrival. */
  time: number;
  host?: string;
}

export interface ContentSource {
  size: number;
  read(start: number, endExclusive: number): NodeJS.ReadableStream;
}

/** A fixed response (JSON, errors, redirects). */
export interface SimplePlan {
  kind: "simple";
  status: number;
  headers: Headers;
  body: Buffer;
  /** Header names (lowercase) holding an entity tag that changeContent alters. */
  etagHeaders?: string[];
}

/** File content that honours Range (200 / 206 / 416). */
export interface ContentPlan {
  kind: "content";
  /** Headers for every outcome (ETag, Accept-Ranges, ...); no Content-Length / Content-Range. */
  headers: Headers;
  source: ContentSource;
  range: string | undefined;
  ifRange: string | undefined;
  etagHeaders: string[];
  /** Body and content type of a 416. */
  rangeError?: { contentType: string; body: Buffer };
}

export type Plan = SimplePlan | ContentPlan;

export interface RequestCtx {
  req: IncomingMessage;
  res: ServerResponse;
  entry: RequestLogEntry;
  /** Aborted when the response closes or the hub shuts down. */
  signal: AbortSignal;
}

export function jsonPlan(status: number, value: unknown, headers: Headers = {}): SimplePlan {
  return {
    kind: "simple",
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
    body: Buffer.from(JSON.stringify(value)),
  };
}

export function textPlan(
  status: number,
  text: string,
  contentType = "text/plain; charset=utf-8",
): SimplePlan {
  return { kind: "simple", status, headers: { "content-type": contentType }, body: Buffer.from(text) };
}

export type ParsedRange =
  | { kind: "none" }
  | { kind: "unsatisfiable" }
  | { kind: "range"; start: number; end: number };

/**
 * A single `bytes=a-b`, `bytes=a-` or `bytes=-n`. Anything else (several ranges, bad syntax) is
 * ignored (200), as RFC 9110 allows. `end` is inclusive.
 */
export function parseRange(header: string | undefined, size: number): ParsedRange {
  if (header === undefined) return { kind: "none" };
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (m === null) return { kind: "none" };
  const a = m[1] ?? "";
  const b = m[2] ?? "";
  if (a === "" && b === "") return { kind: "none" };
  if (a === "") {
    const n = Number(b);
    if (n === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "range", start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  if (b !== "" && Number(b) < start) return { kind: "none" };
  if (start >= size) return { kind: "unsatisfiable" };
  const end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
  return { kind: "range", start, end };
}

/** A different entity tag of the same shape: `"<hex>"` -> `"<other hex of the same length>"`. */
export function changedEtag(value: string): string {
  const m = /^(W\/)?"?([^"]*)"?$/.exec(value);
  const inner = m?.[2] ?? value;
  const quoted = value.includes('"');
  let hex = "";
  for (let i = 0; hex.length < Math.max(inner.length, 1); i++) {
    hex += createHash("sha256").update(`changed:${i}:${inner}`).digest("hex");
  }
  const changed = hex.slice(0, Math.max(inner.length, 1));
  return quoted ? `${m?.[1] ?? ""}"${changed}"` : changed;
}

interface BodyFaults {
  dropAfter?: number;
  stallAfter?: number;
  stallMs?: number;
  throttle?: number;
  corrupt?: boolean;
  xor?: boolean;
  extra?: number;
  extraChunked?: boolean;
}

function bodyFaults(fault: Fault | undefined): BodyFaults {
  switch (fault?.type) {
    case "drop":
      return { dropAfter: Math.max(0, fault.afterBytes) };
    case "stall": {
      const f: BodyFaults = { stallAfter: Math.max(0, fault.afterBytes) };
      if (fault.ms !== undefined) f.stallMs = fault.ms;
      return f;
    }
    case "throttle":
      return { throttle: Math.max(1, fault.bytesPerSec) };
    case "corrupt":
      return { corrupt: true };
    case "changeContent":
      return { xor: true };
    case "extraBytes":
      return { extra: Math.max(0, fault.count), extraChunked: fault.chunked === true };
    default:
      return {};
  }
}

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener("abort", done);
  });
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

function drained(res: ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      res.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    res.on("drain", done);
    signal.addEventListener("abort", done);
  });
}

/** Resolves once everything written so far has been handed to the kernel. */
function flushed(res: ServerResponse): Promise<void> {
  const sock = res.socket;
  if (sock === null || sock.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    sock.write(Buffer.alloc(0), () => resolve());
  });
}

function* bufferChunks(buf: Buffer): Generator<Buffer> {
  for (let off = 0; off < buf.length; off += 65536)
    yield buf.subarray(off, Math.min(buf.length, off + 65536));
}

function* garbageJson(bytes: number): Generator<Buffer> {
  const unit = Buffer.from(
    `{"type":"file","oid":"${"0".repeat(40)}","size":1,"path":"garbage/${"x".repeat(32)}.bin"},`,
  );
  const block = Buffer.concat([Buffer.from("["), ...Array.from({ length: 600 }, () => unit)]);
  let left = bytes;
  let first = true;
  while (left > 0) {
    const src = first ? block : block.subarray(1);
    first = false;
    const n = Math.min(left, src.length);
    yield src.subarray(0, n);
    left -= n;
  }
}

function transform(piece: Buffer, offset: number, f: BodyFaults): Buffer {
  if (f.xor === true) {
    const out = Buffer.allocUnsafe(piece.length);
    for (let i = 0; i < piece.length; i++) out[i] = (piece[i] ?? 0) ^ 0xff;
    return out;
  }
  if (f.corrupt === true) {
    const first = Math.ceil(offset / 65536) * 65536;
    if (first >= offset + piece.length) return piece;
    const out = Buffer.from(piece);
    for (let o = first; o < offset + piece.length; o += 65536) {
      const i = o - offset;
      out[i] = (out[i] ?? 0) ^ 0x01;
    }
    return out;
  }
  return piece;
}

async function writeResponse(
  ctx: RequestCtx,
  status: number,
  headers: Headers,
  length: number | undefined,
  body: (() => AsyncIterable<Buffer | string> | Iterable<Buffer>) | undefined,
  f: BodyFaults,
): Promise<void> {
  const { req, res, entry, signal } = ctx;
  const out: Headers = { ...headers };
  for (const k of Object.keys(out)) if (k.toLowerCase() === "content-length") delete out[k];
  const extra = f.extra ?? 0;
  if (length !== undefined && !(extra > 0 && f.extraChunked === true)) out["content-length"] = String(length);
  if (signal.aborted) return;
  res.writeHead(status, STATUS_CODES[status] ?? "Unknown", out);
  entry.status = status;
  if (Object.keys(f).length === 0) return pipeBody(ctx, req.method === "HEAD" ? undefined : body);

  let sent = 0;
  let stallPending = f.stallAfter !== undefined;
  const started = Date.now();

  /** true => stop writing (dropped, stalled forever, or the connection went away). */
  const checkpoint = async (): Promise<boolean> => {
    if (f.dropAfter !== undefined && sent >= f.dropAfter) {
      res.flushHeaders();
      await flushed(res);
      res.destroy();
      return true;
    }
    if (stallPending && f.stallAfter !== undefined && sent >= f.stallAfter) {
      stallPending = false;
      res.flushHeaders();
      if (f.stallMs === undefined) {
        await untilAborted(signal);
        return true;
      }
      await sleep(f.stallMs, signal);
    }
    return signal.aborted;
  };

  if (await checkpoint()) return;
  if (req.method !== "HEAD" && body !== undefined) {
    const piece =
      f.throttle === undefined ? Number.POSITIVE_INFINITY : Math.max(1, Math.floor(f.throttle / 20));
    for await (const raw of body()) {
      let chunk = typeof raw === "string" ? Buffer.from(raw) : raw;
      while (chunk.length > 0) {
        let n = Math.min(chunk.length, piece);
        if (f.dropAfter !== undefined) n = Math.min(n, f.dropAfter - sent);
        if (stallPending && f.stallAfter !== undefined) n = Math.min(n, f.stallAfter - sent);
        const part = transform(chunk.subarray(0, n), sent, f);
        chunk = chunk.subarray(n);
        const ok = res.write(part);
        sent += n;
        entry.bytesSent = sent;
        if (!ok) await drained(res, signal);
        if (f.throttle !== undefined) {
          const due = started + (sent * 1000) / f.throttle;
          const wait = due - Date.now();
          if (wait > 0) await sleep(wait, signal);
        }
        if (await checkpoint()) return;
      }
    }
  }
  if (f.dropAfter !== undefined) {
    // The body was shorter than afterBytes: everything went out; drop instead of ending cleanly.
    res.flushHeaders();
    await flushed(res);
    res.destroy();
    return;
  }
  if (extra > 0 && req.method !== "HEAD") {
    res.write(Buffer.alloc(extra, 0x2a));
    sent += extra;
    entry.bytesSent = sent;
    if (f.extraChunked !== true) {
      // The surplus is garbage on a keep-alive connection: end it after the response.
      const sock = res.socket;
      res.end(() => sock?.end());
      return;
    }
  }
  res.end();
}

/** The no-fault path: plain pipe (fast, with backpressure). */
function pipeBody(
  ctx: RequestCtx,
  body: (() => AsyncIterable<Buffer | string> | Iterable<Buffer>) | undefined,
): Promise<void> {
  const { res, entry } = ctx;
  if (body === undefined) {
    res.end();
    return Promise.resolve();
  }
  const src = body();
  const stream = src instanceof Readable ? src : Readable.from(src);
  return new Promise<void>((resolve) => {
    res.once("close", () => {
      if (!stream.destroyed) stream.destroy();
      resolve();
    });
    stream.on("data", (c: Buffer | string) => {
      entry.bytesSent += c.length;
    });
    stream.once("error", () => res.destroy());
    stream.pipe(res);
  });
}

/** Sends `plan`, or what `fault` makes of it. */
export async function sendPlan(ctx: RequestCtx, plan: Plan, fault: Fault | undefined): Promise<void> {
  const f = bodyFaults(fault);
  switch (fault?.type) {
    case "status": {
      const body = Buffer.from(
        fault.body ??
          JSON.stringify({ error: `Injected fault: ${fault.status} ${STATUS_CODES[fault.status] ?? ""}` }),
      );
      const headers: Headers = { "content-type": "application/json; charset=utf-8", ...fault.headers };
      return writeResponse(ctx, fault.status, headers, body.length, () => [body], f);
    }
    case "redirect": {
      const body = Buffer.from(`Found. Redirecting to ${fault.location}`);
      const headers: Headers = { location: fault.location, "content-type": "text/plain; charset=utf-8" };
      return writeResponse(ctx, fault.status ?? 302, headers, body.length, () => [body], f);
    }
    case "body": {
      const body = typeof fault.body === "string" ? Buffer.from(fault.body) : fault.body;
      const headers: Headers = { "content-type": fault.contentType ?? "application/json; charset=utf-8" };
      return writeResponse(ctx, fault.status ?? 200, headers, body.length, () => bufferChunks(body), f);
    }
    case "hugeBody": {
      const headers: Headers = { "content-type": "application/json; charset=utf-8" };
      return writeResponse(ctx, 200, headers, undefined, () => garbageJson(Math.max(0, fault.bytes)), f);
    }
    default:
      break;
  }

  const headers: Headers = { ...plan.headers };
  if (fault?.type === "changeContent") {
    for (const name of plan.etagHeaders ?? []) {
      const v = headers[name];
      if (v !== undefined) headers[name] = changedEtag(v);
    }
  }
  if (plan.kind === "simple") {
    return writeResponse(ctx, plan.status, headers, plan.body.length, () => bufferChunks(plan.body), f);
  }

  const size = plan.source.size;
  let rangeHeader = fault?.type === "ignoreRange" ? undefined : plan.range;
  if (rangeHeader !== undefined && plan.ifRange !== undefined && plan.ifRange !== plan.headers.etag) {
    rangeHeader = undefined; // If-Range does not match the current entity: whole body
  }
  let range = parseRange(rangeHeader, size);
  if (fault?.type === "wrongContentRange" && size > 0) {
    const start0 = range.kind === "range" ? range.start : 0;
    const end0 = range.kind === "range" ? range.end : size - 1;
    const start = Math.min(Math.max(0, start0 + fault.shift), size - 1);
    const end = Math.min(Math.max(start, end0 + fault.shift), size - 1);
    range = { kind: "range", start, end };
  }
  if (range.kind === "unsatisfiable") {
    delete headers["content-type"];
    headers["content-range"] = `bytes */${size}`;
    const body = plan.rangeError?.body ?? Buffer.alloc(0);
    if (plan.rangeError !== undefined) headers["content-type"] = plan.rangeError.contentType;
    return writeResponse(ctx, 416, headers, body.length, () => [body], f);
  }
  if (range.kind === "none") {
    const source = plan.source;
    return writeResponse(ctx, 200, headers, size, () => source.read(0, size), f);
  }
  headers["content-range"] = `bytes ${range.start}-${range.end}/${size}`;
  const { start, end } = range;
  const source = plan.source;
  return writeResponse(ctx, 206, headers, end - start + 1, () => source.read(start, end + 1), f);
}
