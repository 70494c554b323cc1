import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildConfig } from "../src/config.js";
import { download } from "../src/download.js";
import { createDispatcher } from "../src/hub/http.js";
import { openSession } from "../src/session.js";
import { RateLimiter, rateLimiter } from "../src/util/rate-limit.js";
import { fileFromBuffer, makeRepo, randomBytesSeeded } from "./fakehub/index.js";
import { cacheProblems, cleanEnv, repoCacheDir, runCli, show, tempDir, withHub } from "./helpers.js";

/** A clock the test moves by hand, and a sleep that only records and advances it. */
function fakeClock() {
  let t = 1000;
  const slept: number[] = [];
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
    slept,
    sleep: async (ms: number) => {
      slept.push(ms);
      t += ms;
    },
  };
}

describe("rate limiter (token bucket)", () => {
  it("lets the burst through at once, then makes takers wait for the debt at the cap", () => {
    const c = fakeClock();
    const l = new RateLimiter({ bytesPerSec: 1000, burstBytes: 500, now: c.now });
    assert.equal(l.reserve(500), 0, "the initial burst is free");
    assert.equal(l.reserve(100), 100, "100 bytes over at 1000 B/s is 100 ms");
    // A second taker queues behind the first one's debt.
    assert.equal(l.reserve(100), 200);
    c.advance(200);
    assert.equal(l.reserve(0), 0, "200 ms later the debt is paid");
  });

  it("builds up no more credit than the burst, however long it idles", () => {
    const c = fakeClock();
    const l = new RateLimiter({ bytesPerSec: 1000, burstBytes: 500, now: c.now });
    c.advance(60_000);
    assert.equal(l.reserve(500), 0);
    assert.equal(l.reserve(1000), 1000);
  });

  it("holds any number of takers to the cap in total (simulated 10 s, 8 connections)", async () => {
    const c = fakeClock();
    const rate = 20 * 1024 * 1024;
    const l = new RateLimiter({ bytesPerSec: rate, now: c.now, sleep: c.sleep });
    const start = c.now();
    let bytes = 0;
    // Round-robin over 8 "connections", each reading 64 KiB socket chunks, until 10 s passed.
    for (let i = 0; i < 100_000 && c.now() - start < 10_000; i++) {
      await l.take(64 * 1024);
      bytes += 64 * 1024;
    }
    const seconds = (c.now() - start) / 1000;
    const measured = bytes / seconds;
    assert.ok(seconds >= 10, `ran ${seconds} s`);
    // At most the cap plus the burst over the span (the debt model never lets more through).
    assert.ok(measured <= rate + l.burstBytes / seconds + 1, `${measured} B/s over a cap of ${rate}`);
    assert.ok(measured >= rate * 0.95, `${measured} B/s: the cap is not reached`);
    assert.ok(c.slept.length > 0);
  });

  it("0 means no limiter; a negative or NaN rate is refused", () => {
    assert.equal(rateLimiter(0), undefined);
    assert.ok(rateLimiter(1) instanceof RateLimiter);
    assert.throws(() => new RateLimiter({ bytesPerSec: -1 }), RangeError);
    assert.throws(() => new RateLimiter({ bytesPerSec: Number.NaN }), RangeError);
  });

  it("--limit-rate parses sizes; 0 is none; garbage is a usage error", () => {
    assert.equal(buildConfig({ repoId: "a/b", limitRate: "20M" }, {}).limitRate, 20 * 1024 * 1024);
    assert.equal(buildConfig({ repoId: "a/b", limitRate: "0" }, {}).limitRate, 0);
    assert.equal(buildConfig({ repoId: "a/b" }, {}).limitRate, 0);
    assert.throws(() => buildConfig({ repoId: "a/b", limitRate: "fast" }, {}), /--limit-rate/);
  });
});

describe("--limit-rate end to end", () => {
  const files = [fileFromBuffer("big.bin", randomBytesSeeded(31, 3 * 1024 * 1024), { lfs: true })];
  const repo = makeRepo("org/capped", files);

  it("every body byte the engine reads passes through the limiter (8 connections)", {
    timeout: 60_000,
  }, async () => {
    let counted = 0;
    class Spy extends RateLimiter {
      override reserve(bytes: number): number {
        counted += bytes;
        return super.reserve(bytes);
      }
    }
    await withHub([repo], {}, async (hub) => {
      const cache = tempDir();
      const config = buildConfig(
        { repoId: "org/capped", mirror: hub.url, cacheDir: cache, chunkSize: "256K", connections: 8 },
        cleanEnv(),
      );
      // A generous cap (no waiting to speak of): this test counts, the next one times.
      const dispatcher = createDispatcher({
        timeoutMs: 30_000,
        limiter: new Spy({ bytesPerSec: 1024 ** 3 }),
      });
      const session = openSession(config, { dispatcher });
      try {
        const result = await download(config, session);
        assert.equal(result.bytesDownloaded, files[0]!.size);
      } finally {
        await session.close();
        await dispatcher.close();
      }
      const cdnBytes = hub.log.filter((e) => e.server === "cdn").reduce((n, e) => n + e.bytesSent, 0);
      assert.ok(cdnBytes >= files[0]!.size, `the CDN sent ${cdnBytes} bytes`);
      // Every CDN byte, plus the API's JSON, was counted.
      assert.ok(counted >= cdnBytes, `the limiter saw ${counted} of ${cdnBytes} CDN bytes`);
      assert.deepEqual(cacheProblems(repoCacheDir(cache, "model", "org/capped"), repo.refs.main!, files), []);
    });
  });

  it("limitRate 1M: a 3 MiB download (config -> session -> dispatcher) takes at least 2.8 s, intact", {
    timeout: 60_000,
  }, async () => {
    await withHub([repo], {}, async (hub) => {
      const cache = tempDir();
      const config = buildConfig(
        { repoId: "org/capped", mirror: hub.url, cacheDir: cache, chunkSize: "256K", limitRate: "1M" },
        cleanEnv(),
      );
      const session = openSession(config);
      const t0 = performance.now();
      try {
        await download(config, session);
      } finally {
        await session.close();
      }
      const seconds = (performance.now() - t0) / 1000;
      assert.deepEqual(cacheProblems(repoCacheDir(cache, "model", "org/capped"), repo.refs.main!, files), []);
      // 3 MiB at 1 MiB/s, less the 100 KiB burst. In-process and uncapped this takes a fraction of
      // a second. Only a lower bound: a busy machine makes it slower, never faster.
      assert.ok(seconds >= 2.8, `took ${seconds.toFixed(2)} s`);
    });
  });

  it("the CLI takes --limit-rate", { timeout: 30_000 }, async () => {
    const r = await runCli(["org/x", "--limit-rate", "nope", "--mirror", "http://127.0.0.1:9"], {
      env: cleanEnv(),
    });
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /--limit-rate "nope" is not a size/);
  });
});
