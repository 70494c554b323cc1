// The engine's scheduler and file jobs, in-process over a fake hub: a failing file stops handing
// out its chunks, a held lock is waited for, the caller's signal is let go.
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { rmSync } from "node:fs";
import { describe, it } from "node:test";
import { type Release, tryLock } from "../src/cache/lock.js";
import { isHfgetError } from "../src/errors.js";
import { chunkTask } from "../src/fetch/chunk.js";
import { FileJob, type FileWork } from "../src/fetch/job.js";
import { pieceSize, REQUEST_MIN, requestSize, splitPoint } from "../src/fetch/scheduler.js";
import { runEngine } from "./enginekit.js";
import { fileFromBuffer, makeRepo, randomBytesSeeded } from "./fakehub/index.js";
import { tempDir, withHub } from "./helpers.js";

const bad = fileFromBuffer("bad.bin", randomBytesSeeded(11, 12 * 1024 * 1024), { lfs: true });
const good = fileFromBuffer("good.bin", randomBytesSeeded(12, 3 * 1024 * 1024), { lfs: true });
const repo = makeRepo("org/sched", [bad, good]);

describe("file job", () => {
  const work = {
    file: { path: "f.bin", size: 10, gitOid: "0".repeat(40) },
    sources: [{ endpoint: "http://h", url: "http://h/r/resolve/c/f.bin" }],
    placement: {} as FileWork["placement"],
    force: false,
  };

  it("moves only along its phases; anything else is a bug", () => {
    const job = new FileJob(work, new AbortController().signal);
    assert.equal(job.phase, "queued");
    assert.throws(() => job.to("fetching"), /phase queued -> fetching/);
    for (const p of ["opening", "queued", "opening", "probing", "fetching", "finishing", "done"] as const)
      job.to(p);
    assert.throws(() => job.to("probing"), /phase done -> probing/);
  });

  it("one teardown: aborts what is in flight, releases the lock once, safe to call twice", async () => {
    const job = new FileJob(work, new AbortController().signal);
    let released = 0;
    job.release = async () => {
      released++;
    };
    const inFlight = job.controller.signal;
    await job.teardown("keep");
    await job.teardown("keep");
    assert.equal(released, 1);
    assert.equal(inFlight.aborted, true);
  });
});

describe("bounded requests and steals", () => {
  const MiB = 1024 * 1024;

  it("a thief splits at half of what is left, never before the victim's request in flight ends", () => {
    const t = chunkTask(0, 16 * MiB);
    t.received = 4 * MiB;
    t.asked = 6 * MiB;
    assert.equal(splitPoint(t), 10 * MiB);
    t.asked = 14 * MiB;
    assert.equal(splitPoint(t), 14 * MiB);
  });

  it("a file is cut into pieces of at most --chunk-size, 4 per connection, not below REQUEST_MIN", () => {
    assert.equal(pieceSize(256 * MiB, 16 * MiB, 32), 2 * MiB);
    assert.equal(pieceSize(1024 * MiB, 16 * MiB, 32), 8 * MiB);
    assert.equal(pieceSize(2048 * MiB, 16 * MiB, 32), 16 * MiB);
    assert.equal(pieceSize(8192 * MiB, 16 * MiB, 32), 16 * MiB);
    assert.equal(pieceSize(32 * MiB, 8 * MiB, 2), 4 * MiB);
    assert.equal(pieceSize(3 * MiB, 16 * MiB, 32), REQUEST_MIN);
    // Rounded up to whole MiB.
    assert.equal(pieceSize(100 * MiB, 16 * MiB, 8), 4 * MiB);
  });

  it("a request asks for ~2 s of the measured rate, less as the run nears its end", () => {
    const far = 1024 * MiB;
    assert.equal(requestSize(64 * MiB, undefined, far, 8), REQUEST_MIN);
    assert.equal(requestSize(64 * MiB, 5 * MiB, far, 8), 10 * MiB);
    // 96 MiB not asked yet over 8 connections: 6 MiB a request.
    assert.equal(requestSize(64 * MiB, 5 * MiB, 96 * MiB, 8), 6 * MiB);
    assert.equal(requestSize(64 * MiB, 5 * MiB, 8 * MiB, 8), REQUEST_MIN);
    // A remainder below REQUEST_MIN goes with the request.
    assert.equal(requestSize(11 * MiB, 5 * MiB, far, 8), 11 * MiB);
    assert.equal(requestSize(3 * MiB, 5 * MiB, 8 * MiB, 8), 3 * MiB);
  });

  const tail = fileFromBuffer("tail.bin", randomBytesSeeded(21, 32 * 1024 * 1024), { lfs: true });
  const tailRepo = makeRepo("org/tail", [tail]);

  it("the tail of a file is split among idle connections without the CDN sending a byte twice", {
    timeout: 60_000,
  }, async () => {
    await withHub([tailRepo], {}, async (hub) => {
      const cacheDir = tempDir();
      try {
        // 2 connections: 8 pieces of 4 MiB (pieceSize), each fetched as requests of 2 MiB. The first
        // CDN answer (the first half of piece 0) is slow: the other connection fetches the other
        // pieces meanwhile, then steals the part of piece 0 not asked for yet.
        hub.faults.push({ server: "cdn", times: 1, fault: { type: "throttle", bytesPerSec: 400_000 } });
        const run = await runEngine(tailRepo, [tail], {
          cacheDir,
          endpoints: [hub.url],
          connections: 2,
          chunkSize: "8M",
        });
        assert.equal(run.error, undefined, String(run.error));
        assert.equal(run.sha256Of(tail), tail.lfs!.sha256);
        const gets = hub.log.filter((r) => r.server === "cdn" && r.method === "GET");
        const startOf = (r: (typeof gets)[number]) => Number(/bytes=(\d+)-/.exec(r.range ?? "")?.[1] ?? 0);
        const slow = gets.find((r) => startOf(r) === 0)!;
        // No piece starts inside [2 MiB, 4 MiB): a request there is the slow connection's next one,
        // which cannot start before its first 2 MiB took >= 5.2 s at 400 kB/s, or a steal.
        const stolen = gets.filter((r) => {
          const s = startOf(r);
          return s >= REQUEST_MIN && s < 2 * REQUEST_MIN && r.time < slow.time + 5000;
        });
        assert.ok(
          stolen.length > 0,
          `piece 0 waited for its slow first request (no steal): ${gets.map((r) => `${startOf(r)}@${r.time - slow.time}ms`).join(",")}`,
        );
        const sent = gets.reduce((n, r) => n + r.bytesSent, 0);
        assert.equal(sent, tail.size, `the CDN sent ${sent} bytes for a file of ${tail.size}`);
      } finally {
        rmSync(cacheDir, { recursive: true, force: true });
      }
    });
  });
});

describe("scheduler", () => {
  it("a failing file stops handing out its chunks at once: no more requests, no spurious retries", async () => {
    await withHub([repo], {}, async (hub) => {
      const cacheDir = tempDir();
      try {
        const badSha = bad.lfs!.sha256;
        // good.bin is slow, so the run is still going when bad.bin fails.
        hub.faults.push({
          server: "cdn",
          pathIncludes: good.lfs!.sha256,
          fault: { type: "throttle", bytesPerSec: 2_000_000 },
        });
        let armed = false;
        let requestsAtFailure = -1;
        let retriesAfter = 0;
        let failed = false;
        const badRequests = () => hub.log.filter((r) => r.server === "cdn" && r.url.includes(badSha)).length;
        const run = await runEngine(repo, [bad, good], {
          cacheDir,
          endpoints: [hub.url],
          connections: 4,
          chunkSize: "1M",
          retries: 3,
          onEvent: (e) => {
            // Once bad.bin's first bytes arrived, every later request for it is refused (404 at the CDN).
            if (e.type === "bytes" && e.path === "bad.bin" && !armed) {
              armed = true;
              hub.faults.unshift({
                server: "cdn",
                pathIncludes: badSha,
                fault: { type: "status", status: 404 },
              });
            }
            if (e.type === "file-done" && e.path === "bad.bin") {
              failed = e.status === "failed";
              requestsAtFailure = badRequests();
            }
            if (e.type === "retry" && e.path === "bad.bin" && failed) retriesAfter++;
          },
        });
        assert.equal(run.error, undefined, String(run.error));
        assert.equal(run.outcomes!.get("bad.bin")?.status, "failed");
        assert.equal(run.outcomes!.get("bad.bin")?.error?.code, "ENTRY_NOT_FOUND");
        assert.equal(run.outcomes!.get("good.bin")?.status, "downloaded");
        assert.equal(run.sha256Of(good), good.lfs!.sha256);
        assert.equal(retriesAfter, 0, "retries of bad.bin after it failed");
        assert.equal(badRequests(), requestsAtFailure, "requests for bad.bin after it failed");
        // 12 chunks of 1 MiB: most were never asked for.
        assert.ok(requestsAtFailure <= 1 + 4 + 1, `${requestsAtFailure} requests for bad.bin`);
      } finally {
        rmSync(cacheDir, { recursive: true, force: true });
      }
    });
  });

  it("waits for a lock another holder has (lock-wait event), and fetches once it is released", async () => {
    await withHub([repo], {}, async (hub) => {
      const cacheDir = tempDir();
      let release: Release | undefined;
      try {
        let waitedAt = -1;
        let lockWaits = 0;
        const run = await runEngine(repo, [good], {
          cacheDir,
          endpoints: [hub.url],
          before: async (works) => {
            release = await tryLock(works[0]!.placement.lock);
            assert.ok(release, "the test holds the lock");
          },
          onEvent: (e) => {
            if (e.type === "lock-wait") {
              lockWaits++;
              waitedAt = hub.log.length;
              // Let go a little later: the engine must come back for it.
              setTimeout(() => void release?.().then(() => (release = undefined)), 200);
            }
          },
        });
        assert.equal(run.error, undefined, String(run.error));
        assert.equal(lockWaits, 1, "one lock-wait event");
        assert.equal(waitedAt, 0, "nothing was fetched while the lock was held elsewhere");
        assert.equal(run.outcomes!.get("good.bin")?.status, "downloaded");
        assert.equal(run.sha256Of(good), good.lfs!.sha256);
      } finally {
        await release?.();
        rmSync(cacheDir, { recursive: true, force: true });
      }
    });
  });

  it("removes its abort listener from the caller's signal after run(), on success and on failure", async () => {
    await withHub([repo], {}, async (hub) => {
      const cacheDir = tempDir();
      try {
        const controller = new AbortController();
        const signal = controller.signal;
        let during = 0;
        const ok = await runEngine(repo, [good], {
          cacheDir,
          endpoints: [hub.url],
          signal,
          onEvent: (e) => {
            if (e.type === "file-start") during = getEventListeners(signal, "abort").length;
          },
        });
        assert.equal(ok.error, undefined);
        assert.equal(during, 1, "the engine listens while it runs");
        assert.equal(getEventListeners(signal, "abort").length, 0, "and lets go after");
        // A run that fails (the hub refuses everything) lets go too.
        hub.faults.push({ fault: { type: "status", status: 500 } });
        const failed = await runEngine(repo, [bad], { cacheDir, endpoints: [hub.url], signal, retries: 0 });
        assert.ok(isHfgetError(failed.error), String(failed.error));
        assert.equal(getEventListeners(signal, "abort").length, 0);
      } finally {
        rmSync(cacheDir, { recursive: true, force: true });
      }
    });
  });
});
