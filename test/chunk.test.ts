import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { type FileHandle, open, readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer, type Socket } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { type ChunkRequest, type ChunkTask, chunkTask, fetchChunk, WRITE_BLOCK } from "../src/fetch/chunk.js";
import { createDispatcher, HttpClient } from "../src/hub/http.js";
import { tempDir } from "./helpers.js";

function listen(server: Server | ReturnType<typeof createNetServer>): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const a = server.address();
      if (a === null || typeof a === "string") throw new Error("no port");
      resolve(`http://127.0.0.1:${a.port}`);
    });
  });
}

/** Range server (keep-alive) over `data`; counts sockets and requests. */
function rangeServer(data: Buffer) {
  const seen = { sockets: 0, requests: [] as string[] };
  const server = createServer((req, res) => {
    seen.requests.push(req.headers.range ?? "");
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
    if (!m) {
      res.writeHead(200, { "content-length": data.length });
      res.end(data);
      return;
    }
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), data.length - 1);
    res.writeHead(206, {
      "content-length": end - start + 1,
      "content-range": `bytes ${start}-${end}/${data.length}`,
      etag: '"e1"',
    });
    res.end(data.subarray(start, end + 1));
  });
  server.on("connection", () => seen.sockets++);
  return { server, seen };
}

/** A request for `task` of the file at `${base}${urlPath}`, written to `fh`; `more` adds or overrides fields. */
function chunkRequest(
  base: string,
  urlPath: string,
  file: { readonly fh: ChunkRequest["fh"]; readonly path: string; readonly size: number },
  task: ChunkTask,
  more: Partial<ChunkRequest> & Pick<ChunkRequest, "onWritten">,
): ChunkRequest {
  return {
    http: new HttpClient({ endpoint: base, dispatcher: createDispatcher({ timeoutMs: 10_000 }) }),
    endpointOrigin: base,
    url: `${base}${urlPath}`,
    size: file.size,
    task,
    fh: file.fh,
    wholeFile: false,
    signal: new AbortController().signal,
    what: "f",
    filePath: file.path,
    expectEtag: undefined,
    ...more,
  };
}

describe("chunk fetcher (body read straight from undici's dispatch handler)", () => {
  it("fetches a chunk as bounded Range requests on one kept-alive connection, every byte at its offset", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 12345);
    const { server, seen } = rangeServer(data);
    const base = await listen(server);
    const dir = tempDir();
    const path = join(dir, "f");
    const fh = await open(path, "w+");
    try {
      const task = chunkTask(1000, data.length);
      const written: [number, number][] = [];
      let responses = 0;
      const out = await fetchChunk(
        chunkRequest(base, "/f", { fh, path, size: data.length }, task, {
          requestEnd: (t) => t.pos + 1024 * 1024,
          onResponse: () => responses++,
          onWritten: (offset, bytes, pieces) => {
            const buf = Buffer.concat(pieces);
            assert.equal(buf.length, bytes);
            assert.ok(buf.equals(data.subarray(offset, offset + bytes)), `bytes at ${offset}`);
            written.push([offset, bytes]);
          },
        }),
      );
      assert.equal(out.kind, "done");
      assert.equal(task.pos, data.length);
      assert.equal(responses, 4);
      assert.deepEqual(seen.requests.slice(0, 2), ["bytes=1000-1049575", "bytes=1049576-2098151"]);
      // (undici may open a second connection for the request right after the first; never one each.)
      assert.ok(
        seen.sockets < seen.requests.length,
        `${seen.sockets} connections for 4 requests: not reused`,
      );
      let at = 1000;
      for (const [o, n] of written) {
        assert.equal(o, at);
        at += n;
      }
      assert.equal(at, data.length);
      await fh.close();
      const got = await readFile(path);
      assert.ok(got.subarray(1000).equals(data.subarray(1000)));
    } finally {
      await fh.close().catch(() => undefined);
      server.close();
    }
  });

  it("reads a Connection: close body (HTTP/1.0-style, no length) to its end with slow writes, without pausing undici", async () => {
    // undici 7.30 asserts (crashing the process) when such a server closes while the response is
    // paused; the fetcher must buffer instead of pausing here.
    const data = randomBytes(2 * 1024 * 1024 + 7);
    const sockets: Socket[] = [];
    const server = createNetServer((s) => {
      sockets.push(s);
      s.once("data", () => {
        s.write("HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n");
        s.end(data);
      });
    });
    const base = await listen(server);
    const dir = tempDir();
    const path = join(dir, "f");
    const fh = await open(path, "w+");
    try {
      let writes = 0;
      const out = await fetchChunk(
        chunkRequest(base, "/f", { fh, path, size: data.length }, chunkTask(0, data.length), {
          wholeFile: true,
          onWritten: () => {
            writes++;
            // Slow the writer down: the server closes meanwhile.
            const until = Date.now() + 5;
            while (Date.now() < until);
          },
        }),
      );
      assert.equal(out.kind, "done");
      assert.ok(writes >= 4, `writes ${writes}`);
      await fh.close();
      assert.ok((await readFile(path)).equals(data));
    } finally {
      await fh.close().catch(() => undefined);
      server.close();
      for (const s of sockets) s.destroy();
    }
  });

  it("a 404 body becomes the error's message; a 206 with the wrong Content-Range is a retryable protocol error", async () => {
    let mode = "404";
    const server = createServer((_req, res) => {
      if (mode === "404") {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: "Entry not found here" }));
        return;
      }
      res.writeHead(206, { "content-range": "bytes 5-9/100", "content-length": 5 });
      res.end("hello");
    });
    const base = await listen(server);
    const dir = tempDir();
    const path = join(dir, "f");
    const fh = await open(path, "w+");
    try {
      const req = () =>
        chunkRequest(base, "/org/name/resolve/main/f", { fh, path, size: 100 }, chunkTask(0, 100), {
          what: "file f",
          onWritten: () => undefined,
        });
      await assert.rejects(fetchChunk(req()), (e: Error & { code?: string }) => {
        assert.equal(e.code, "ENTRY_NOT_FOUND");
        assert.match(e.message, /Entry not found here/);
        return true;
      });
      mode = "206";
      await assert.rejects(fetchChunk(req()), (e: Error & { code?: string; retryable?: boolean }) => {
        assert.equal(e.code, "PROTOCOL");
        assert.match(e.message, /Content-Range/);
        return true;
      });
    } finally {
      await fh.close();
      server.close();
    }
  });
  it("finishes a write the disk took only part of, and tells of every byte once, in order", async () => {
    const data = randomBytes(2 * 1024 * 1024 + 4321);
    const { server } = rangeServer(data);
    const base = await listen(server);
    const dir = tempDir();
    const path = join(dir, "f");
    const real = await open(path, "w+");
    let calls = 0;
    // Takes at most 70,001 bytes per call (cutting a piece in the middle): the rest must follow.
    const stingy = {
      writev: (bufs: Buffer[], position: number) => {
        calls++;
        const some: Buffer[] = [];
        let left = 70_001;
        for (const b of bufs) {
          if (left === 0) break;
          const part = b.subarray(0, Math.min(left, b.length));
          some.push(part);
          left -= part.length;
        }
        return real.writev(some, position);
      },
    } as unknown as FileHandle;
    try {
      const task = chunkTask(5, data.length);
      let at = 5;
      let told = 0;
      const out = await fetchChunk(
        chunkRequest(base, "/f", { fh: stingy, path, size: data.length }, task, {
          requestEnd: (t) => t.pos + 1024 * 1024,
          onWritten: (offset, bytes, pieces) => {
            assert.equal(offset, at);
            const buf = Buffer.concat(pieces);
            assert.equal(buf.length, bytes);
            assert.ok(buf.equals(data.subarray(offset, offset + bytes)), `bytes at ${offset}`);
            at += bytes;
            told++;
          },
        }),
      );
      assert.equal(out.kind, "done");
      assert.equal(task.pos, data.length);
      assert.equal(at, data.length);
      assert.ok(calls > told, `${calls} writev calls for ${told} writes: none was partial`);
      await real.close();
      assert.ok((await readFile(path)).subarray(5).equals(data.subarray(5)));
    } finally {
      await real.close().catch(() => undefined);
      server.close();
    }
  });

  it("writes at most a block at a time and nothing past an end moved into the middle of a piece", async () => {
    // The body comes in odd-sized socket writes, so pieces straddle block bounds and the new end.
    const data = randomBytes(3 * 1024 * 1024 + 99);
    const sockets: Socket[] = [];
    const server = createNetServer((s) => {
      sockets.push(s);
      s.once("data", () => {
        s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${data.length}\r\nConnection: keep-alive\r\n\r\n`);
        let at = 0;
        const more = () => {
          while (at < data.length) {
            const n = Math.min(100_003, data.length - at);
            const ok = s.write(data.subarray(at, at + n));
            at += n;
            if (!ok) {
              s.once("drain", more);
              return;
            }
          }
        };
        more();
      });
      s.on("error", () => undefined);
    });
    const base = await listen(server);
    const dir = tempDir();
    const path = join(dir, "f");
    const fh = await open(path, "w+");
    try {
      const task = chunkTask(0, data.length);
      const cut = 1024 * 1024 + 77_777;
      let at = 0;
      const out = await fetchChunk(
        chunkRequest(base, "/f", { fh, path, size: data.length }, task, {
          wholeFile: true,
          onWritten: (offset, bytes, pieces) => {
            assert.equal(offset, at);
            assert.ok(bytes <= WRITE_BLOCK, `a write of ${bytes} bytes`);
            assert.equal(
              pieces.reduce((n, p) => n + p.length, 0),
              bytes,
            );
            assert.ok(Buffer.concat(pieces).equals(data.subarray(offset, offset + bytes)));
            at += bytes;
            // A thief takes the tail from an offset inside what is still coming.
            if (task.end === data.length) task.end = cut;
          },
        }),
      );
      assert.equal(out.kind, "done");
      assert.equal(task.pos, cut);
      assert.equal(at, cut);
      await fh.close();
      const got = await readFile(path);
      assert.equal(got.length, cut, "bytes written past the end");
      assert.ok(got.equals(data.subarray(0, cut)));
    } finally {
      await fh.close().catch(() => undefined);
      server.close();
      for (const s of sockets) s.destroy();
    }
  });
});
