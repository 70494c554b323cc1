import type { FileHandle } from "node:fs/promises";
import { HfgetError } from "../errors.js";
import { errorFromResponse } from "../hub/errors.js";
import { type HttpClient, type HttpResponse, header, showUrl } from "../hub/http.js";
import { parseContentRange, rangeHeader } from "./content-range.js";

/** A byte range of one file being fetched by one worker. `end` may shrink when another worker steals the tail. */
export interface ChunkTask {
  start: number;
  /** Next byte to write. */
  pos: number;
  end: number;
}

export type ChunkOutcome =
  /** The range (up to task.end) is written. */
  | { readonly kind: "done"; readonly url: string; readonly etag: string | undefined }
  /** The server ignored Range and answered 200: the caller should switch the file to one stream. */
  | { readonly kind: "range-ignored" };

export interface ChunkRequest {
  readonly http: HttpClient;
  /** The CDN URL once resolved, else the hub's resolve URL (redirects are followed). */
  readonly url: string;
  readonly viaResolve: boolean;
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
  const endpointOrigin = req.http.endpointOrigin;
  const origin = new URL(res.url).origin;
  if (res.status === 403 && origin !== endpointOrigin) {
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
    notFound: "ENTRY_NOT_FOUND",
    tokenSent: origin === endpointOrigin && req.http.hasToken,
    redact: (s) => req.http.redact(s),
  });
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
  const res = await req.http.request(req.url, { headers, signal: req.signal, followRedirects: true });
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
  try {
    for await (const data of res.body) {
      const buf = data as Buffer;
      // Never past task.end: it is the asked-for end, the file's size, or where a thief took over.
      const room = task.end - task.pos;
      const part = buf.length > room ? buf.subarray(0, room) : buf;
      if (part.length > 0) {
        await writeAll(req.fh, part, task.pos, req.filePath, req.size);
        task.pos += part.length;
        req.onWritten(task.pos - part.length, part);
      }
      if (task.pos >= task.end) break;
    }
  } catch (err) {
    res.body.destroy();
    if (err instanceof HfgetError) throw err;
    throw req.http.networkError(err, new URL(res.url), req.signal);
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
