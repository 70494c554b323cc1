// The download hash thread (src/verify.ts ThreadHashPump, src/verify-worker.ts): the digest of bytes
// written out of order, a resumed file's saved ranges, close and abort letting go of the thread's job
// and file, a thread that dies failing as a bug, and the engine and hfget serve on that path (corrupt
// bytes, bad-bytes blame across mirrors, interrupt and resume, a blob streamed while in flight).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { isHfgetError } from "../src/errors.js";
import { RangeSet } from "../src/util/range-set.js";
import { createHashPump, HashThread, hashThreadStats, ThreadHashPump } from "../src/verify.js";
import { runEngine } from "./enginekit.js";
import { fileFromBuffer, makeRepo, randomBytesSeeded, startFakeHub } from "./fakehub/index.js";
import { tempDir, waitFor, withHub } from "./helpers.js";
import { withServeServer } from "./serve-helpers.js";

const MiB = 1024 * 1024;
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function scratch(): string {
  const d = tempDir("hfget-hash-thread-");
  dirs.push(d);
  return d;
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const gitSha1 = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

/** Descriptors of this process (every thread's) open on `path`; undefined where /proc is absent. */
function openFds(path: string): number | undefined {
  if (!existsSync("/proc/self/fd")) return undefined;
  let n = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(path)) n++;
    } catch {
      // closed while listing
    }
  }
  return n;
}

/** A sparse file of `size` bytes, open for writing as the engine opens it. */
async function partial(size: number): Promise<{ path: string; fh: FileHandle }> {
  const path = join(scratch(), "f.incomplete");
  const fh = await open(path, "w+");
  await fh.truncate(size);
  return { path, fh };
}

/** Writes `data` at its offsets in the order of `pieces`, telling the pump of each as the engine does. */
async function writePieces(
  fh: FileHandle,
  data: Buffer,
  written: RangeSet,
  pieces: readonly [number, number][],
  pump: { onWritten(offset: number, bytes: number, pieces: readonly Buffer[]): void },
): Promise<void> {
  for (const [s, e] of pieces) {
    const buf = data.subarray(s, e);
    await fh.write(buf, 0, buf.length, s);
    written.add(s, e);
    pump.onWritten(s, buf.length, [buf]);
  }
}

/** [s, e) split in `n` pieces, last first then the rest interleaved: most land out of order. */
function shuffled(size: number, n: number): [number, number][] {
  const step = Math.ceil(size / n);
  const all: [number, number][] = [];
  for (let s = 0; s < size; s += step) all.push([s, Math.min(size, s + step)]);
  const odd = all.filter((_, i) => i % 2 === 1).reverse();
  const even = all.filter((_, i) => i % 2 === 0).reverse();
  return [...odd, ...even];
}

describe("ThreadHashPump", () => {
  it("bytes written out of order: SHA-256 and git SHA-1 right; the prefix it reports only grows, never past what is written", async () => {
    const data = randomBytesSeeded(301, 5 * MiB + 12_345);
    for (const [algorithm, want] of [
      ["sha256", sha256(data)],
      ["git-sha1", gitSha1(data)],
    ] as const) {
      const { path, fh } = await partial(data.length);
      const written = new RangeSet();
      const prefixes: number[] = [];
      const pump = createHashPump(
        {
          fh,
          path,
          size: data.length,
          expected: { algorithm, hex: want },
          written,
          onPrefix: (n) => {
            assert.ok(
              n <= written.coveredUntil(0),
              `prefix ${n} past the written ${written.coveredUntil(0)}`,
            );
            prefixes.push(n);
          },
        },
        0,
      );
      assert.ok(pump instanceof ThreadHashPump, "threshold 0 takes the thread's path");
      await writePieces(fh, data, written, shuffled(data.length, 37), pump);
      assert.equal(await pump.digest(), want, algorithm);
      assert.deepEqual(
        prefixes,
        [...prefixes].sort((a, b) => a - b),
        "the prefix only grows",
      );
      assert.equal(prefixes.at(-1), data.length);
      assert.equal(pump.hashedBytes, data.length);
      await pump.close();
      await fh.close();
    }
    assert.equal(hashThreadStats().jobs, 0, "no job left on the thread");
  });

  it("a resumed file: bytes already on disk are hashed by kick(), the rest as they come", async () => {
    const data = randomBytesSeeded(302, 3 * MiB + 7);
    const { path, fh } = await partial(data.length);
    const saved: [number, number][] = [
      [0, MiB],
      [2 * MiB, 3 * MiB],
    ];
    for (const [s, e] of saved) await fh.write(data.subarray(s, e), 0, e - s, s);
    const written = new RangeSet(saved);
    const pump = createHashPump(
      { fh, path, size: data.length, expected: { algorithm: "sha256", hex: "" }, written },
      0,
    );
    pump.kick();
    await waitFor(() => pump.hashedBytes === MiB, 10_000, "the saved first MiB hashed");
    await writePieces(
      fh,
      data,
      written,
      [
        [3 * MiB, data.length],
        [MiB, 2 * MiB],
      ],
      pump,
    );
    assert.equal(await pump.digest(), sha256(data));
    await fh.close();
  });

  it("close() mid-file: the thread drops the job and closes its own descriptor; digest() then fails", async () => {
    const data = randomBytesSeeded(303, 4 * MiB);
    const { path, fh } = await partial(data.length);
    const written = new RangeSet();
    const pump = createHashPump(
      { fh, path, size: data.length, expected: { algorithm: "sha256", hex: "" }, written },
      0,
    );
    await writePieces(fh, data, written, [[0, 2 * MiB]], pump);
    await waitFor(
      () => hashThreadStats().jobs === 1 && (openFds(path) ?? 2) === 2,
      10_000,
      "the thread opened it",
    );
    await pump.close();
    await fh.close();
    assert.equal(hashThreadStats().jobs, 0);
    const fds = openFds(path);
    if (fds !== undefined) assert.equal(fds, 0, "a descriptor on the partial file is still open");
    await assert.rejects(pump.digest(), /closed/);
    await pump.close(); // twice is fine
  });

  it("a file shorter than its written ranges fails (never a digest); bytes missing from the prefix fail at once", async () => {
    const data = randomBytesSeeded(304, 2 * MiB);
    const { path, fh } = await partial(MiB);
    const written = new RangeSet([[0, data.length]]);
    const short = createHashPump(
      { fh, path, size: data.length, expected: { algorithm: "sha256", hex: "" }, written },
      0,
    );
    short.kick();
    await assert.rejects(short.digest(), /shorter than its written ranges/);
    const gap = createHashPump(
      {
        fh,
        path,
        size: data.length,
        expected: { algorithm: "sha256", hex: "" },
        written: new RangeSet([[MiB, 2 * MiB]]),
      },
      0,
    );
    await assert.rejects(gap.digest(), /bytes missing/);
    await gap.close();
    await fh.close();
  });

  it("a hash thread that dies fails its jobs with a plain Error (an internal error), not a digest; the next job gets a new thread", async () => {
    const dir = scratch();
    const script = join(dir, "dies.mjs");
    writeFileSync(
      script,
      'import { parentPort } from "node:worker_threads";\nparentPort.on("message", (m) => { if (m.type === "covered") throw new Error("boom"); });\n',
    );
    const thread = new HashThread(pathToFileURL(script));
    for (let round = 0; round < 2; round++) {
      const data = randomBytesSeeded(305, MiB);
      const { path, fh } = await partial(data.length);
      const written = new RangeSet();
      const pump = new ThreadHashPump(
        { fh, path, size: data.length, expected: { algorithm: "sha256", hex: sha256(data) }, written },
        thread,
      );
      await writePieces(fh, data, written, [[0, data.length]], pump);
      const err = await pump.digest().then(
        (d) => assert.fail(`a digest from a dead thread: ${d}`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof Error && !isHfgetError(err), `not an HfgetError: ${String(err)}`);
      assert.match(err.message, /internal: the hash thread failed: boom/);
      assert.equal(thread.stats.jobs, 0);
      await fh.close();
    }
    assert.equal(thread.stats.started, 2);
  });
});

describe("the engine on the hash thread's path", () => {
  const big = randomBytesSeeded(311, 6 * MiB + 321);
  const file = () => fileFromBuffer("big.bin", big, { lfs: true });

  it("corrupt bytes every time: VERIFY_FAILED after one refetch, nothing committed, no job or descriptor left", {
    timeout: 60_000,
  }, async () => {
    const f = file();
    const repo = makeRepo("org/corrupt", [f]);
    await withHub([repo], {}, async (hub) => {
      hub.faults.push({ server: "cdn", times: 10_000, fault: { type: "corrupt" } });
      const cacheDir = scratch();
      const started = hashThreadStats().started;
      const run = await runEngine(repo, [f], {
        cacheDir,
        endpoints: [hub.url],
        hashThreadMinBytes: 0,
      });
      assert.equal(run.error, undefined, String(run.error));
      const o = run.outcomes?.get(f.path);
      assert.equal(o?.status, "failed");
      assert.equal(o?.error?.code, "VERIFY_FAILED", String(o?.error?.message));
      assert.equal(run.sha256Of(f), undefined, "a wrong file was committed");
      const fails = run.events.filter((e) => e.type === "verify-failed");
      assert.deepEqual(
        fails.map((e) => e.type === "verify-failed" && e.willRetry),
        [true, false],
      );
      assert.ok(hashThreadStats().started >= started + 2, "both fetches were hashed on the thread");
      assert.equal(hashThreadStats().jobs, 0);
      const fds = openFds(cacheDir);
      if (fds !== undefined) assert.equal(fds, 0, "a descriptor under the cache is still open");
    });
  });

  it("two mirrors, one sending corrupt bytes: it is blamed and dropped, the file finished right from the other", {
    timeout: 60_000,
  }, async () => {
    const f = file();
    const repo = makeRepo("org/blame", [f]);
    const a = await startFakeHub({ repos: [repo] });
    const b = await startFakeHub({ repos: [repo] });
    try {
      b.faults.push({ server: "cdn", times: 10_000, fault: { type: "corrupt" } });
      const run = await runEngine(repo, [f], {
        cacheDir: scratch(),
        endpoints: [a.url, b.url],
        hashThreadMinBytes: 0,
      });
      assert.equal(run.error, undefined, String(run.error));
      assert.equal(run.outcomes?.get(f.path)?.status, "downloaded");
      assert.equal(run.sha256Of(f), sha256(big));
      assert.ok(
        b.log.some((e) => e.server === "cdn" && e.bytesSent > 0),
        "the corrupt mirror sent nothing: nothing was tested",
      );
      const dropped = run.events.filter((e) => e.type === "source-set-aside" && e.for === "run");
      assert.deepEqual(
        dropped.map((e) => e.type === "source-set-aside" && e.endpoint),
        [b.url],
      );
      assert.equal(hashThreadStats().jobs, 0);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("interrupted mid-file: INTERRUPTED, the thread lets go of the file; the rerun resumes and hashes the saved bytes right", {
    timeout: 60_000,
  }, async () => {
    const f = file();
    const repo = makeRepo("org/resume", [f]);
    await withHub([repo], {}, async (hub) => {
      hub.faults.push({ server: "cdn", times: 10_000, fault: { type: "throttle", bytesPerSec: 2 * MiB } });
      const cacheDir = scratch();
      const ac = new AbortController();
      let got = 0;
      const first = await runEngine(repo, [f], {
        cacheDir,
        endpoints: [hub.url],
        hashThreadMinBytes: 0,
        signal: ac.signal,
        onEvent: (e) => {
          if (e.type !== "bytes") return;
          got += e.bytes;
          if (got >= big.length / 3) ac.abort(new Error("test stop"));
        },
      });
      assert.ok(isHfgetError(first.error) && first.error.code === "INTERRUPTED", String(first.error));
      assert.equal(hashThreadStats().jobs, 0, "the thread's job outlived the run");
      const fds = openFds(cacheDir);
      if (fds !== undefined) assert.equal(fds, 0, "a descriptor under the cache is still open");
      hub.faults.length = 0;
      const second = await runEngine(repo, [f], { cacheDir, endpoints: [hub.url], hashThreadMinBytes: 0 });
      assert.equal(second.error, undefined, String(second.error));
      assert.equal(second.outcomes?.get(f.path)?.status, "downloaded");
      assert.equal(second.sha256Of(f), sha256(big));
      const start = second.events.find((e) => e.type === "file-start");
      assert.ok(start?.type === "file-start" && start.resumedBytes > 0, "the rerun did not resume");
    });
  });
});

describe("hfget serve on the hash thread's path", () => {
  it("a blob in flight is streamed from its hashed prefix before it is committed, and ends right", {
    timeout: 60_000,
  }, async () => {
    const data = randomBytesSeeded(321, 4 * MiB + 99);
    const repo = makeRepo("org/stream", [fileFromBuffer("w.bin", data, { lfs: true })]);
    await withHub([repo], {}, async (hub) => {
      hub.faults.push({ server: "cdn", times: 10_000, fault: { type: "throttle", bytesPerSec: 1 * MiB } });
      const cacheDir = scratch();
      await withServeServer(
        [hub.url],
        { cacheDir, log: () => undefined },
        async (srv) => {
          const blob = join(cacheDir, "models--org--stream", "blobs", sha256(data));
          const r = await fetch(`${srv.url}/org/stream/resolve/main/w.bin`);
          assert.equal(r.status, 200);
          const reader = r.body!.getReader();
          const parts: Buffer[] = [];
          let committedAtFirstBytes: boolean | undefined;
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            committedAtFirstBytes ??= existsSync(blob);
            parts.push(Buffer.from(value));
          }
          assert.equal(committedAtFirstBytes, false, "the first bytes came only once the blob was committed");
          assert.equal(sha256(Buffer.concat(parts)), sha256(data));
          await waitFor(() => existsSync(blob), 10_000, "the blob committed");
        },
        {
          engine: {
            connections: 2,
            maxFiles: 1,
            chunkSize: 1 << 20,
            retries: 1,
            timeoutMs: 20_000,
            hashThreadMinBytes: 0,
          },
          dispatcherTimeoutMs: 20_000,
        },
      );
    });
  });
});
