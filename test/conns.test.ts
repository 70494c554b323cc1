// The per-endpoint connection count (src/fetch/conns.ts) on fake links and an injected clock: it
// grows where each connection is capped, stays small where the endpoint is capped in total, and
// never passes --connections. Then the source pool and scheduler that obey it.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { describe, it } from "node:test";
import { ConnectionControl, DEFAULT_CONN_CONTROL } from "../src/fetch/conns.js";
import { type FileSource, SourcePool } from "../src/fetch/sources.js";
import { runEngine } from "./enginekit.js";
import { fileFromBuffer, makeRepo, randomBytesSeeded } from "./fakehub/index.js";
import { tempDir, withHub } from "./helpers.js";

/**
 * Drives `ctl` for `ms` of fake time in 10 ms steps; with `n` connections allowed and `busy(n)` of
 * them in flight the link delivers `rate(busy)` bytes/ms. Returns the allowed count at each step.
 */
function drive(
  ctl: ConnectionControl,
  rate: (n: number) => number,
  ms: number,
  busy: (n: number) => number = (n) => n,
  start = 0,
): number[] {
  const seen: number[] = [];
  for (let t = start; t < start + ms; t += 10) {
    const inflight = busy(ctl.allowed);
    ctl.record(rate(inflight) * 10, inflight, t);
    seen.push(ctl.allowed);
  }
  return seen;
}

const perConnCapped = (n: number) => n * 10_000; // 10 MB/s per connection
const totalCapped = (n: number) => Math.min(16_000, n * 10_000); // 16 MB/s however many

describe("connection control", () => {
  it("reaches --connections within half a second where each connection is capped", () => {
    // 8 (one full window) -> 16 (2x the rate, clear after 100 ms) -> quadrupled, capped at 32.
    const ctl = new ConnectionControl({ ...DEFAULT_CONN_CONTROL, max: 32 });
    const seen = drive(ctl, perConnCapped, 5000);
    assert.deepEqual(ctl.history, [8, 16, 32]);
    const at32 = seen.indexOf(32);
    assert.ok(at32 >= 0 && at32 * 10 <= 500, `32 reached after ${at32 * 10} ms`);
    assert.ok(
      seen.slice(at32).every((n) => n === 32),
      "stays at 32 (every doubling paid)",
    );
  });

  it("stays small where the endpoint is capped in total, and steps down to fewer that do as well", () => {
    const ctl = new ConnectionControl({ ...DEFAULT_CONN_CONTROL, max: 32 });
    const seen = drive(ctl, totalCapped, 20_000);
    assert.equal(ctl.history[1], 16, "one doubling is tried");
    assert.equal(ctl.history[2], 8, "and dropped back");
    assert.ok(Math.max(...seen) <= 16, `at most 16: ${ctl.history.join(",")}`);
    assert.equal(ctl.allowed, 2, `ends at the fewest: ${ctl.history.join(",")}`);
  });

  it("finds a total cap between two doublings by steps up", () => {
    // 12 connections' worth: 8 -> 16 does not pay, then steps of one up to about 12.
    const ctl = new ConnectionControl({ ...DEFAULT_CONN_CONTROL, max: 32 });
    drive(ctl, (n) => Math.min(120_000, n * 10_000), 60_000);
    assert.ok(ctl.allowed >= 10 && ctl.allowed <= 13, `near 12: ${ctl.history.join(",")}`);
  });

  it("keeps a doubling that paid a little (a busy machine) and goes on by steps", () => {
    // 8 -> 16 brings +10%: kept, no more doubling.
    const ctl = new ConnectionControl({ ...DEFAULT_CONN_CONTROL, max: 32 });
    drive(ctl, (n) => (n <= 8 ? n * 10_000 : 80_000 + (n - 8) * 1_000), 2000);
    assert.deepEqual(ctl.history.slice(0, 2), [8, 16]);
    assert.ok(!ctl.history.includes(32), ctl.history.join(","));
  });

  it("one stalled window does not end slow start (a doubling is judged on the better of two)", () => {
    const ctl = new ConnectionControl({ ...DEFAULT_CONN_CONTROL, max: 32 });
    let at16 = 0;
    // The first 350 ms at 16 connections deliver only what 8 did (the machine was busy).
    drive(ctl, (n) => (n === 16 && at16++ < 35 ? 80_000 : perConnCapped(n)), 5000);
    assert.deepEqual(ctl.history, [8, 16, 32]);
  });

  it("judges a doubling early only when it clearly paid; a doubtful one gets its full window", () => {
    // 8 -> 16 gives +50%: not clear after 100 ms, so the doubling is decided after 300 ms.
    const ctl = new ConnectionControl({ ...DEFAULT_CONN_CONTROL, max: 32 });
    const seen = drive(ctl, (n) => (n <= 8 ? n * 10_000 : 80_000 + (n - 8) * 5_000), 2000);
    const at16 = seen.indexOf(16);
    const at32 = seen.indexOf(32);
    assert.deepEqual(ctl.history.slice(0, 3), [8, 16, 32], "+50% still pays a doubling (not a quadrupling)");
    assert.ok((at32 - at16) * 10 >= 300, `16 held ${(at32 - at16) * 10} ms`);
  });

  it("a quadrupling that does not pay falls back to the doubling it skipped, then to the last level that paid", () => {
    // Capped in total at 16 connections' worth: 8 -> 16 doubles the rate, 64 and 32 add nothing.
    const ctl = new ConnectionControl({ ...DEFAULT_CONN_CONTROL, max: 64 });
    drive(ctl, (n) => Math.min(16, n) * 10_000, 3000);
    assert.deepEqual(ctl.history.slice(0, 5), [8, 16, 64, 32, 16]);
  });

  it("never exceeds --connections", () => {
    for (const max of [1, 3, 6, 32]) {
      const ctl = new ConnectionControl({ ...DEFAULT_CONN_CONTROL, max });
      const seen = drive(ctl, perConnCapped, 10_000);
      assert.ok(Math.max(...seen) <= max, `max ${max}: ${ctl.history.join(",")}`);
      assert.equal(ctl.allowed, max);
    }
  });

  it("does not grow while its connections are not all busy (nothing to learn from the window)", () => {
    const ctl = new ConnectionControl({ ...DEFAULT_CONN_CONTROL, max: 32 });
    drive(ctl, perConnCapped, 5000, () => 2);
    assert.deepEqual(ctl.history, [DEFAULT_CONN_CONTROL.initial]);
  });
});

describe("source pool with connection control", () => {
  const src = (endpoint: string): FileSource => ({ endpoint, url: `${endpoint}/x` });

  it("each endpoint has its own count; a large file's chunk goes where there is room", () => {
    let now = 0;
    const pool = new SourcePool(() => now);
    let woken = 0;
    pool.governConnections(32, () => woken++);
    const a = src("http://a");
    const b = src("http://b");
    for (let i = 0; i < DEFAULT_CONN_CONTROL.initial; i++) pool.started(a.endpoint);
    assert.equal(pool.hasRoom(a.endpoint), false);
    assert.equal(pool.roomFor([a]), false);
    assert.equal(pool.roomFor([a, b]), true);
    pool.succeeded(a.endpoint, 1e6, 100);
    pool.succeeded(b.endpoint, 1e5, 100);
    assert.equal(pool.pick([a, b], new Set(), false), b, "a is full, b has room");
    // a is per-connection capped: its count grows, and the scheduler is told.
    for (; now < 2000; now += 10) {
      while (pool.stats(a.endpoint).inflight < pool.allowed(a.endpoint)) pool.started(a.endpoint);
      pool.received(a.endpoint, pool.stats(a.endpoint).inflight * 100_000);
    }
    assert.equal(pool.allowed(a.endpoint), 32);
    assert.equal(pool.allowed(b.endpoint), DEFAULT_CONN_CONTROL.initial);
    assert.ok(woken >= 2, `woken at each growth (8 -> 16 -> 32): ${woken}`);
  });

  it("several runs on one pool (hfget serve): a request one run ends wakes the others; an ended run is not woken", () => {
    const pool = new SourcePool(() => 0);
    const woken = { a: 0, b: 0 };
    const stopA = pool.governConnections(32, () => woken.a++);
    pool.governConnections(32, () => woken.b++);
    const e = src("http://a").endpoint;
    for (let i = 0; i < DEFAULT_CONN_CONTROL.initial; i++) pool.started(e);
    assert.equal(pool.hasRoom(e), false, "run b holds every connection");
    pool.ended(e);
    assert.equal(pool.hasRoom(e), true);
    assert.deepEqual(woken, { a: 1, b: 1 }, "run a, waiting for room, hears of the freed slot");
    stopA();
    pool.ended(e);
    assert.deepEqual(woken, { a: 1, b: 1 }, "one run left: its own scheduler sees its request end");
  });

  it("an ungoverned pool does not limit", () => {
    const pool = new SourcePool(() => 0);
    for (let i = 0; i < 100; i++) pool.started("http://a");
    assert.equal(pool.hasRoom("http://a"), true);
  });
});

describe("engine with connection control", () => {
  const big = fileFromBuffer("big.bin", randomBytesSeeded(31, 24 * 1024 * 1024), { lfs: true });
  const repo = makeRepo("org/conns", [big]);

  it("a CDN capping each connection gets more than the first few, never more than --connections", {
    timeout: 60_000,
  }, async () => {
    await withHub([repo], {}, async (hub) => {
      const cacheDir = tempDir();
      try {
        hub.faults.push({ server: "cdn", fault: { type: "throttle", bytesPerSec: 1_000_000 } });
        let peak = 0;
        const pool = new SourcePool();
        const run = await runEngine(repo, [big], {
          cacheDir,
          endpoints: [hub.url],
          connections: 12,
          chunkSize: "1M",
          pool,
          onEvent: () => {
            peak = Math.max(peak, pool.stats(hub.url).inflight);
          },
        });
        assert.equal(run.error, undefined, String(run.error));
        assert.equal(run.sha256Of(big), big.lfs!.sha256);
        const history = pool.stats(hub.url).control!.history;
        assert.equal(history[0], DEFAULT_CONN_CONTROL.initial);
        assert.ok(Math.max(...history) > DEFAULT_CONN_CONTROL.initial, `grew: ${history.join(",")}`);
        assert.ok(Math.max(...history) <= 12, `at most --connections: ${history.join(",")}`);
        assert.ok(peak <= 12, `peak in flight ${peak}`);
      } finally {
        rmSync(cacheDir, { recursive: true, force: true });
      }
    });
  });
});
