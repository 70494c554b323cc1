import type { FileHandle } from "node:fs/promises";
import { HfgetError } from "../errors.js";
import { errorFromResponse } from "../hub/errors.js";
import { type HttpClient, type HttpResponse, header, showUrl } from "../hub/http.js";
import { parseContentRange, rangeHeader } from "../util/content-range.js";

/** A byte range of one file being fetched by one worker. `end` may shrink when another worker steals the tail. */
export interface ChunkTask {
  start: number;
  /** Next byte to write: everything before it is on disk. */
  pos: number;
  /** Next byte to receive: bytes in [pos, received) are buffered, about to be written. */
  received: number;
  end: number;
}

export function chunkTask(start: number, end: number): ChunkTask {
  return { start, pos: start, received: start, end };
}

/**
 * Body pieces are gathered into blocks of this size before one positional write: a 64 KiB write
 * per socket read cost ~20 µs of main-thread time each (0.7 s per 2 GiB). 512 KiB keeps most of
 * that saving; 1 MiB saved no more and pushed peak RSS near 150 MB with 16 connections.
 */
export const WRITE_BLOCK = 512 * 1024;

/**
 * A block is also written when it has waited this long, so that on a slow link bytes reach the disk
 * (and the resume state) steadily instead of once per block: kill -9 then loses little either way.
 */
export const WRITE_MAX_DELAY_MS = 20;

/** Blocks are reused across requests: a fresh block per chunk request is garbage the GC is slow to return. */
const freeBlocks: Buffer[] = [];
const MAX_FREE_BLOCKS = 32;

/** A block for `want` more bytes: a small file's request gets a buffer of its own size, not 512 KiB. */
function takeBlock(want: number): Buffer {
  if (want < WRITE_BLOCK) return Buffer.allocUnsafe(want);
  return freeBlocks.pop() ?? Buffer.allocUnsafe(WRITE_BLOCK);
}

function giveBlock(b: Buffer): void {
  if (b.length === WRITE_BLOCK && freeBlocks.length < MAX_FREE_BLOCKS) freeBlocks.push(b);
}

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
  /** Called once the answer's status and range are checked, before its body is read. */
  readonly onResponse?: (url: string, etag: string | undefined) => void;
  /** Called after each write reached the file, with the bytes written at `offset`. */
  readonly onWritten: (offset: number, buf: Buffer) => void;
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
  res: HttpResponse,
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
  throw await errorFromResponse(res, {
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

/** Writes `buf` fully at `position`. */
async function writeAll(
  fh: FileHandle,
  buf: Buffer,
  position: number,
  filePath: string,
  size: number,
): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    try {
      const { bytesWritten } = await fh.write(buf, off, buf.length - off, position + off);
      off += bytesWritten;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "ENOSPC" || code === "EDQUOT") {
        throw new HfgetError("DISK", `no space left on the device writing ${filePath}`, {
          hint: `free at least ${size - position} bytes there (the file is ${size} bytes), then rerun to resume`,
          cause: err,
        });
      }
      throw new HfgetError("DISK", `cannot write ${filePath}: ${code ?? String(err)}`, { cause: err });
    }
  }
}

/**
 * One HTTP request for the rest of a chunk: checks the status and Content-Range, writes the bytes at
 * their offsets, never past `task.end` (which may shrink while it runs), and never more than asked.
 * Returns when the chunk is complete; throws (retryable or not) otherwise, leaving `task.pos` at the
 * first byte not written.
 */
export async function fetchChunk(req: ChunkRequest): Promise<ChunkOutcome> {
  const { task } = req;
  const asked = req.wholeFile ? undefined : { start: task.pos, end: task.end };
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
  const res = await req.http.request(req.url, {
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
  req.onResponse?.(res.url, etag);
  task.received = task.pos;
  const block = takeBlock(task.end - task.pos);
  let fill = 0;
  let lastWrite = Date.now();
  /** Writes the gathered block at task.pos; the block is free again afterwards. */
  const flush = async () => {
    if (fill === 0) return;
    const bytes = block.subarray(0, fill);
    await writeAll(req.fh, bytes, task.pos, req.filePath, req.size);
    const at = task.pos;
    task.pos += fill;
    fill = 0;
    lastWrite = Date.now();
    req.onWritten(at, bytes);
  };
  try {
    for await (const data of res.body) {
      let buf = data as Buffer;
      // Never past task.end: it is the asked-for end, the file's size, or where a thief took over.
      const room = task.end - task.received;
      if (buf.length > room) buf = buf.subarray(0, room);
      while (buf.length > 0) {
        const n = Math.min(buf.length, block.length - fill);
        buf.copy(block, fill, 0, n);
        fill += n;
        task.received += n;
        buf = buf.subarray(n);
        if (fill === block.length) await flush();
      }
      if (fill > 0 && Date.now() - lastWrite >= WRITE_MAX_DELAY_MS) await flush();
      if (task.received >= task.end) break;
    }
    await flush();
  } catch (err) {
    res.body.destroy();
    // Keep what arrived: the retry then starts after it.
    if (!(err instanceof HfgetError && err.code === "DISK")) await flush().catch(() => undefined);
    task.received = task.pos;
    if (err instanceof HfgetError) throw err;
    throw req.http.networkError(err, new URL(res.url), req.signal);
  } finally {
    giveBlock(block);
  }
  if (task.pos < task.end) {
    res.body.destroy();
    throw new HfgetError(
      "NETWORK",
      `${req.what}: the connection ended at byte ${task.pos} of ${task.end} (${showUrl(res.url)})`,
    );
  }
  res.body.destroy();
  return { kind: "done", url: res.url, etag };
}
