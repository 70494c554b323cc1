import type { FileHandle } from "node:fs/promises";
import { HfgetError } from "../errors.js";
import { errorFromText, MAX_ERROR_BODY } from "../hub/errors.js";
import { type HttpClient, header, type RawResponse, showUrl } from "../hub/http.js";
import { parseContentRange, rangeHeader } from "../util/content-range.js";
import { diskError } from "../util/io-error.js";

/** A byte range of one file being fetched by one worker. `end` may shrink when another worker steals the tail. */
export interface ChunkTask {
  start: number;
  /** Next byte to write: everything before it is on disk. */
  pos: number;
  /** Next byte to receive: bytes in [pos, received) are buffered, about to be written. */
  received: number;
  /**
   * End of the request in flight (what the server will send; `pos` between requests). A thief
   * splits at or after it, so no byte asked for is thrown away.
   */
  asked: number;
  end: number;
}

export function chunkTask(start: number, end: number): ChunkTask {
  return { start, pos: start, received: start, asked: start, end };
}

/**
 * Body pieces are held until this many bytes, then written with one positional writev: a 64 KiB
 * write per socket read cost ~20 µs of main-thread time each (0.7 s per 2 GiB). 512 KiB holds 16 MB of
 * blocks for 32 connections; 256 KiB (8 MB) measured 12.9 CPU-s on big-loopback against 8.5-11.1 at
 * 512 KiB (bench hfget-node, load ~1.3); 1 MiB pushed peak RSS near 150 MB with 16 connections.
 * Measured again (2026-12-02, 3 back-to-back pairs, load ~2): 256 KiB cut big-loopback peak RSS
 * 139-159 -> 127-130 MB but cost CPU 10.2-12.6 -> 13.3-14.1 s and MB/s 209-281 -> 152-184; two
 * 256 KiB blocks per connection (one written while the other fills, so no pause per block) cost
 * the same (12.7/15.3 s vs 11.1-14.0): the cost is per write, not per pause. Holding the pieces
 * instead of copying them into a block (writev, 2026-12-02, 6 back-to-back pairs, load 2.7-8):
 * CPU 7.9-9.8 -> 7.3-9.0 s (every pair lower, median -0.5 s), peak RSS 146-171 -> 145-160 MB.
 */
export const WRITE_BLOCK = 512 * 1024;

/**
 * A block is also written when it has waited this long, so that on a slow link bytes reach the disk
 * (and the resume state) steadily instead of once per block: kill -9 then loses little either way.
 */
export const WRITE_MAX_DELAY_MS = 20;

/**
 * The same for a request behind the front of the file (bytes before it still missing): nothing
 * hashes or streams its bytes yet, so they wait longer. 32 slow connections each writing every
 * 20 ms made ~13,000 small writes (and as many written-range, hash and progress updates) for a
 * 256 MiB file at 32 MB/s: ~0.3 CPU-s of fs work alone. A kill -9 still loses at most this long of
 * each connection (and never more than a block).
 */
export const WRITE_BEHIND_DELAY_MS = 250;

export type ChunkOutcome =
  /** The range (up to task.end) is written. */
  | { readonly kind: "done"; readonly url: string; readonly etag: string | undefined }
  /** The server ignored Range and answered 200: the caller should switch the file to one stream. */
  | { readonly kind: "range-ignored" };

export interface ChunkRequest {
  readonly http: HttpClient;
  /** Origin of the endpoint the request belongs to: a 403 from another origin is an expired CDN URL. */
  readonly endpointOrigin: string;
  /**
   * With several sources: the origins of every listed endpoint. A redirect to another origin's
   * `/resolve/` URL (hf-mirror's 308 to huggingface.co) then means "this mirror does not have it",
   * unless that origin is listed. Undefined with one source: such redirects are followed.
   */
  readonly listedOrigins?: ReadonlySet<string> | undefined;
  /** The CDN URL once resolved, else the hub's resolve URL (redirects are followed). */
  readonly url: string;
  readonly size: number;
  readonly task: ChunkTask;
  readonly fh: FileHandle;
  /** Whole-file stream with no Range header (a server that ignores Range, or a small file from 0). */
  readonly wholeFile: boolean;
  readonly signal: AbortSignal;
  readonly what: string;
  readonly filePath: string;
  /** The ETag earlier answers for this file carried; a different one means the content changed. */
  readonly expectEtag: string | undefined;
  /**
   * End (exclusive) of the next request, asked before each one: the chunk is fetched as bounded
   * requests. Undefined: one request for the whole rest of the chunk.
   */
  readonly requestEnd?: (task: ChunkTask) => number;
  /** Called once each answer's status and range are checked, before its body is read; `ms`: time to its headers. */
  readonly onResponse?: (url: string, etag: string | undefined, ms: number) => void;
  /** Called when a request delivered all it asked: `bytes` in `ms` (headers to last byte). */
  readonly onRequestDone?: (bytes: number, ms: number) => void;
  /**
   * Whether every byte before `pos` is written (the in-order prefix, which is hashed and streamed
   * as it grows, ends there): such bytes are written within WRITE_MAX_DELAY_MS, others within
   * WRITE_BEHIND_DELAY_MS. Undefined: always the former.
   */
  readonly atFront?: (pos: number) => boolean;
  /**
   * Called after each write reached the file: `bytes` bytes at `offset`, which are `pieces` in
   * order (undici's body pieces as they came, not copied; only valid during the call).
   */
  readonly onWritten: (offset: number, bytes: number, pieces: readonly Buffer[]) => void;
}

/** 403 from a host other than the endpoint: a presigned CDN URL that expired. */
export class ExpiredUrlError extends HfgetError {
  constructor(what: string) {
    super("NETWORK", `${what}: the download URL was refused (403), resolving it again`, { retryable: true });
  }
}

/** A mirror redirected the request to another hub that is not listed: it does not have the file. */
export class ElsewhereError extends HfgetError {
  constructor(what: string, from: URL, to: URL, status: number) {
    super(
      "ENTRY_NOT_FOUND",
      `${what}: ${from.origin} does not have it (${status} to ${to.origin}, which is not a listed endpoint)`,
      { retryable: false, status },
    );
  }
}

/** The ETag changed under us: the upstream file is not the one we started with. */
export class ContentChangedError extends HfgetError {
  constructor(what: string) {
    super(
      "VERIFY_FAILED",
      `${what}: the server's ETag changed during the download (the file changed upstream)`,
      {
        retryable: false,
        hint: "rerun to download the new version",
      },
    );
  }
}

function retryableProtocol(message: string): HfgetError {
  return new HfgetError("PROTOCOL", message, {
    hint: "the server or a proxy is sending wrong bytes; retry later",
    retryable: true,
  });
}

async function checkStatus(
  req: ChunkRequest,
  res: RawResponse,
  asked: { start: number; end: number } | undefined,
): Promise<"partial" | "whole"> {
  if (res.status === 206) {
    if (asked === undefined) {
      res.body.destroy();
      throw retryableProtocol(`${req.what}: 206 answer to a request without Range`);
    }
    const cr = parseContentRange(header(res.headers, "content-range"));
    // Checked against what was asked, not task.end: a thief may have shrunk that meanwhile.
    if (cr === undefined || cr.start !== asked.start || cr.end > asked.end) {
      res.body.destroy();
      throw retryableProtocol(
        `${req.what}: asked for bytes ${asked.start}-${asked.end - 1}, the server sent Content-Range ${JSON.stringify(header(res.headers, "content-range") ?? "")}`,
      );
    }
    if (cr.size !== undefined && cr.size !== req.size) {
      res.body.destroy();
      throw new HfgetError(
        "PROTOCOL",
        `${req.what}: the server says the file has ${cr.size} bytes, the listing says ${req.size}`,
        {
          hint: "the file changed upstream or the mirror is stale; retry later",
        },
      );
    }
    return "partial";
  }
  if (res.status === 200) {
    const len = header(res.headers, "content-length");
    if (len !== undefined && Number(len) !== req.size) {
      res.body.destroy();
      throw new HfgetError(
        "PROTOCOL",
        `${req.what}: the server sent ${len} bytes for a file of ${req.size} bytes`,
        {
          hint: "the file changed upstream or the mirror is stale; retry later",
        },
      );
    }
    return "whole";
  }
  const origin = new URL(res.url).origin;
  if (res.status === 403 && origin !== req.endpointOrigin) {
    res.body.destroy();
    throw new ExpiredUrlError(req.what);
  }
  if (res.status === 416) {
    res.body.destroy();
    throw new HfgetError(
      "PROTOCOL",
      `${req.what}: the server refused bytes ${asked?.start}-${(asked?.end ?? 0) - 1} (416)`,
      {
        hint: "the file changed upstream or the mirror is stale",
      },
    );
  }
  throw errorFromText(res, await res.body.text(MAX_ERROR_BODY), {
    what: req.what,
    repo: repoOfResolveUrl(req.url),
    notFound: "ENTRY_NOT_FOUND",
    tokenSent: origin === req.http.endpointOrigin && req.http.hasToken,
    redact: (s) => req.http.redact(s),
  });
}

/** `https://hub/org/name/resolve/main/x` -> `org/name` (datasets/… kept), for error messages. */
function repoOfResolveUrl(url: string): string | undefined {
  try {
    const path = new URL(url).pathname;
    const i = path.indexOf("/resolve/");
    return i > 0 ? decodeURIComponent(path.slice(1, i)) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes `pieces` fully, in order, from `position` with positional writev calls: one call unless
 * the kernel takes fewer bytes than asked, then the rest is written after. Never changes `pieces`.
 */
async function writeAll(
  fh: FileHandle,
  pieces: readonly Buffer[],
  position: number,
  filePath: string,
  size: number,
): Promise<void> {
  let left: readonly Buffer[] = pieces;
  let at = position;
  while (left.length > 0) {
    let n: number;
    try {
      n = (await fh.writev(left as Buffer[], at)).bytesWritten;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "ENOSPC" || code === "EDQUOT") {
        throw new HfgetError("DISK", `no space left on the device writing ${filePath}`, {
          hint: `free at least ${size - at} bytes there (the file is ${size} bytes), then rerun to resume`,
          cause: err,
        });
      }
      throw diskError(err, filePath);
    }
    at += n;
    let i = 0;
    while (i < left.length && n >= (left[i] as Buffer).length) n -= (left[i++] as Buffer).length;
    if (i === left.length) return;
    if (n === 0 && i === 0) throw new HfgetError("DISK", `cannot write ${filePath}: the disk took no bytes`);
    const rest = left.slice(i);
    rest[0] = (rest[0] as Buffer).subarray(n);
    left = rest;
  }
}

/**
 * Fetches the rest of a chunk as a sequence of bounded Range requests on the kept-alive connections:
 * each asks for [task.pos, requestEnd(task)) and is read to its last byte, so the connection is reused
 * and a thief that takes the tail (it splits at or after `task.asked`, see scheduler.ts) never makes
 * the CDN send bytes nobody keeps. Checks every status and Content-Range, writes the bytes at their
 * offsets, never past `task.end`. Returns when the chunk is complete; throws (retryable or not)
 * otherwise, leaving `task.pos` at the first byte not written.
 */
export async function fetchChunk(req: ChunkRequest): Promise<ChunkOutcome> {
  const { task } = req;
  try {
    let url = req.url;
    let etag: string | undefined;
    for (;;) {
      // A thief may have taken all that was left (between a failed attempt and its retry):
      // asking for nothing would get a 200 with the whole file.
      if (!req.wholeFile && task.pos >= task.end) return { kind: "done", url, etag };
      const one = await fetchRequest(req, url);
      if (one.kind === "range-ignored") return one;
      url = one.url;
      etag ??= one.etag;
      if (task.pos >= task.end) return { kind: "done", url, etag };
    }
  } finally {
    task.asked = task.pos;
  }
}

/** One request of a chunk: bytes [task.pos, requestEnd) (or the whole file). */
async function fetchRequest(
  req: ChunkRequest,
  url: string,
): Promise<(ChunkOutcome & { kind: "done" }) | { readonly kind: "range-ignored" }> {
  const { task } = req;
  const asked = req.wholeFile
    ? undefined
    : {
        start: task.pos,
        end: Math.min(task.end, Math.max(task.pos + 1, req.requestEnd?.(task) ?? task.end)),
      };
  task.asked = asked?.end ?? req.size;
  const headers: Record<string, string> = asked ? { range: rangeHeader(asked.start, asked.end) } : {};
  const listed = req.listedOrigins;
  const checkRedirect =
    listed === undefined
      ? undefined
      : (from: URL, to: URL, status: number) => {
          if (to.origin !== from.origin && to.pathname.includes("/resolve/") && !listed.has(to.origin)) {
            throw new ElsewhereError(req.what, from, to, status);
          }
        };
  const sent = Date.now();
  const res = await req.http.open(url, {
    headers,
    signal: req.signal,
    followRedirects: true,
    ...(checkRedirect ? { checkRedirect } : {}),
  });
  const kind = await checkStatus(req, res, asked);
  if (kind === "whole" && asked) {
    res.body.destroy();
    return { kind: "range-ignored" };
  }
  const etag = header(res.headers, "etag");
  if (req.expectEtag !== undefined && etag !== undefined && etag !== req.expectEtag) {
    res.body.destroy();
    throw new ContentChangedError(req.what);
  }
  const answered = Date.now();
  req.onResponse?.(res.url, etag, answered - sent);
  const first = task.pos;
  const until = asked?.end ?? req.size;
  task.received = task.pos;
  await readInto(req, res, until, answered);
  const end = Math.min(task.end, until);
  if (task.pos < end) {
    throw new HfgetError(
      "NETWORK",
      `${req.what}: the connection ended at byte ${task.pos} of ${end} (${showUrl(res.url)})`,
    );
  }
  req.onRequestDone?.(task.pos - first, Date.now() - answered);
  return { kind: "done", url: res.url, etag };
}

/**
 * Reads one answer's body, written at task.pos with one positional writev whenever WRITE_BLOCK
 * bytes are held or they have waited long enough, never past task.end nor `until`. The pieces
 * undici hands over are kept as they are (views of its socket reads), not copied into a block:
 * the copy cost ~0.8 CPU-s per 2 GiB on big-loopback. While a write is due the response is paused
 * (so memory stays one block's worth per connection) and resumed after; a response that cannot be
 * paused (not keep-alive, see RawBody.pausable) queues its pieces meanwhile. One promise per
 * block, none per socket read. Reads to the end of the body (the connection is then reused)
 * unless task.end moved below `until`, which only a whole-file stream allows.
 */
async function readInto(req: ChunkRequest, res: RawResponse, until: number, answered: number): Promise<void> {
  const { task } = req;
  const body = res.body;
  /** What the next write writes, in order, and its byte count (at most WRITE_BLOCK). */
  let pieces: Buffer[] = [];
  let fill = 0;
  let lastWrite = answered;
  /** Pieces (or the part of one) that came while a write was due: taken once the write is done. */
  const queue: Buffer[] = [];
  /** A write is due: the response is paused until it is done. */
  let due = false;
  let ended = false;
  let failed = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const stopEarly = () => task.received >= task.end && task.end < until;
  /** Whether the next write is due now: a full block, or the last byte wanted is in. */
  const full = () => fill >= WRITE_BLOCK || task.received >= Math.min(task.end, until);
  /** Keeps what fits of `piece` for the next write; returns the part that did not fit, if any. */
  const take = (piece: Buffer): Buffer | undefined => {
    const room = Math.min(task.end, until) - task.received;
    const buf = piece.length > room ? piece.subarray(0, Math.max(0, room)) : piece;
    const n = Math.min(buf.length, WRITE_BLOCK - fill);
    if (n > 0) {
      pieces.push(n < buf.length ? buf.subarray(0, n) : buf);
      fill += n;
      task.received += n;
    }
    return n < buf.length ? buf.subarray(n) : undefined;
  };
  const onData = (piece: Buffer): void => {
    if (due) {
      queue.push(piece);
      return;
    }
    const rest = take(piece);
    let now = rest !== undefined || (fill > 0 && full()) || stopEarly();
    if (rest !== undefined) queue.push(rest);
    else if (!now && fill > 0) {
      const waited = Date.now() - lastWrite;
      now =
        waited >= WRITE_BEHIND_DELAY_MS ||
        (waited >= WRITE_MAX_DELAY_MS && (req.atFront === undefined || req.atFront(task.pos)));
    }
    if (now) {
      due = true;
      body.pause();
      wake?.();
    }
  };
  /** Writes the pieces held at task.pos and lets go of them. */
  const flush = async () => {
    if (fill === 0) return;
    const bufs = pieces;
    const bytes = fill;
    await writeAll(req.fh, bufs, task.pos, req.filePath, req.size);
    const at = task.pos;
    task.pos += bytes;
    pieces = [];
    fill = 0;
    lastWrite = Date.now();
    req.onWritten(at, bytes, bufs);
  };
  body.read(
    onData,
    () => {
      ended = true;
      wake?.();
    },
    (err) => {
      failed = true;
      failure = err;
      wake?.();
    },
  );
  try {
    for (;;) {
      if (!due && !ended && !failed) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
      await flush();
      // What came meanwhile (a piece's tail, or everything of an unpausable response).
      for (let piece = queue.shift(); piece !== undefined; piece = queue.shift()) {
        const rest = take(piece);
        if (rest !== undefined) queue.unshift(rest);
        if (fill >= WRITE_BLOCK) await flush();
      }
      if (failed) throw failure;
      if (ended) {
        await flush();
        return;
      }
      if (stopEarly()) {
        body.destroy();
        await flush();
        return;
      }
      due = false;
      body.resume();
    }
  } catch (err) {
    body.destroy();
    // Keep what arrived: the retry then starts after it.
    if (!(err instanceof HfgetError && err.code === "DISK")) await flush().catch(() => undefined);
    task.received = task.pos;
    if (err instanceof HfgetError) throw err;
    throw req.http.networkError(err, new URL(res.url), req.signal);
  }
}
