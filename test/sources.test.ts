// Several sources per file (issue 9, library level): the source pool, fail-over without spending
// the retry budget, spreading a file over endpoints, and finding the endpoint that sent bad bytes.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import { HfgetError, isHfgetError } from "../src/errors.js";
import { DEFAULT_CONN_CONTROL } from "../src/fetch/conns.js";
import { decide, FRESH_ATTEMPTS } from "../src/fetch/decide.js";
import { DOWN_AFTER, DOWN_MS, type FileSource, SourcePool } from "../src/fetch/sources.js";
import { lineReporter } from "../src/progress.js";
import { DEFAULT_RETRY_POLICY } from "../src/util/retry.js";
import { type EngineRun, runEngine, setAside } from "./enginekit.js";
import { type FakeHub, fileFromBuffer, makeRepo, randomBytesSeeded, startFakeHub } from "./fakehub/index.js";
import { tempDir } from "./helpers.js";

const src = (endpoint: string): FileSource => ({ endpoint, url: `${endpoint}/x` });

describe("source pool", () => {
  it("a large file goes first to endpoints not measured yet, then in proportion to throughput", () => {
    const pool = new SourcePool(() => 0);
    const a = src("http://a");
    const b = src("http://b");
    assert.equal(pool.pick([a, b], new Set(), false), a);
    pool.started(a.endpoint);
    assert.equal(pool.pick([a, b], new Set(), false), b, "unmeasured b is tried");
    pool.started(b.endpoint);
    pool.succeeded(a.endpoint, 4_000_000, 1000); // 4 MB/s
    pool.succeeded(b.endpoint, 1_000_000, 1000); // 1 MB/s
    pool.ended(a.endpoint);
    pool.ended(b.endpoint);
    const counts = { a: 0, b: 0 };
    for (let i = 0; i < 10; i++) {
      const s = pool.pick([a, b], new Set(), false)!;
      pool.started(s.endpoint);
      counts[s === a ? "a" : "b"]++;
    }
    assert.deepEqual(counts, { a: 8, b: 2 }, "requests in flight follow throughput 4:1");
  });

  it("the whole rate of an endpoint is measured over windows of all its requests together", () => {
    let now = 0;
    const pool = new SourcePool(() => now);
    const a = src("http://a");
    assert.equal(pool.stats(a.endpoint).rate, undefined);
    now = 5_000; // idle until now: the pause is not its rate
    for (let i = 0; i < 4; i++) pool.started(a.endpoint);
    for (let t = 0; t < 1_000; t += 10) {
      now = 5_000 + t + 10;
      pool.received(a.endpoint, 40_000); // 4 requests x 1 MB/s
    }
    const rate = pool.stats(a.endpoint).rate!;
    assert.ok(Math.abs(rate - 4_000_000) < 100_000, `rate ${rate}`);
  });

  it("the last wave: a chunk goes to the endpoint that would deliver it first, and waits for its room", () => {
    let now = 0;
    const pool = new SourcePool(() => now);
    const a = src("http://a");
    const b = src("http://b");
    // Two endpoints capped at 16 MB/s in total.
    // One connection short of the starting count on a, all of it on b.
    const initial = DEFAULT_CONN_CONTROL.initial;
    for (let i = 0; i < initial - 1; i++) pool.started(a.endpoint);
    for (let i = 0; i < initial; i++) pool.started(b.endpoint);
    for (let t = 0; t < 1_000; t += 10) {
      now = t + 10;
      pool.received(a.endpoint, 160_000);
      pool.received(b.endpoint, 160_000);
    }
    // Each may have `initial` connections now: a has room, b has not.
    pool.governConnections(32, () => undefined);
    assert.equal(pool.hasRoom(a.endpoint), true);
    assert.equal(pool.hasRoom(b.endpoint), false);
    const MiB = 1024 * 1024;
    // a still has 30 MiB to send, b 6 MiB: a 2 MiB chunk is done first on b, once b has room.
    const queued = new Map([
      [a.endpoint, 30 * MiB],
      [b.endpoint, 6 * MiB],
    ]);
    const endgame = { outstanding: (e: string) => queued.get(e) ?? 0, bytes: 2 * MiB };
    assert.equal(pool.roomFor([a, b]), true, "before the last wave: any room will do");
    assert.equal(pool.pick([a, b], new Set(), false), a);
    assert.equal(pool.roomFor([a, b], endgame), false, "the last wave waits for b");
    pool.ended(b.endpoint);
    assert.equal(pool.roomFor([a, b], endgame), true);
    assert.equal(pool.pick([a, b], new Set(), false, endgame), b);
    queued.set(a.endpoint, 2 * MiB);
    assert.equal(pool.pick([a, b], new Set(), false, endgame), a, "a is done first now");
    assert.equal(pool.roomFor([a], endgame), true, "one source: its room alone");
  });

  it("a small file goes to the lowest latency", () => {
    const pool = new SourcePool(() => 0);
    const a = src("http://a");
    const b = src("http://b");
    pool.answered(a.endpoint, 300);
    pool.answered(b.endpoint, 20);
    assert.equal(pool.pick([a, b], new Set(), true), b);
    assert.equal(pool.pick([a, b], new Set([b.endpoint]), true), a, "set aside: the other one");
  });

  it(`down after ${DOWN_AFTER} failures in a row, probed again later; dropped ones never come back`, () => {
    let now = 1_000;
    const pool = new SourcePool(() => now);
    const a = src("http://a");
    const b = src("http://b");
    for (let i = 1; i < DOWN_AFTER; i++) assert.equal(pool.failed(a.endpoint), false);
    assert.equal(pool.failed(a.endpoint), true, "marked down");
    assert.equal(pool.pick([a, b], new Set(), false), b);
    assert.equal(pool.pick([a], new Set(), false), a, "when nothing else is left it is probed");
    now += DOWN_MS + 1;
    pool.started(b.endpoint);
    pool.succeeded(b.endpoint, 1_000_000, 100);
    assert.equal(pool.pick([a, b], new Set(), false), a, "after the wait it is asked again");
    pool.succeeded(a.endpoint, 0, 0);
    assert.equal(pool.stats(a.endpoint).failures, 0);
    pool.drop(b.endpoint, "bad bytes");
    assert.equal(pool.pick([b], new Set(), false), undefined);
  });

  it("decide: a source's own failure moves to another source at no cost while one is left", () => {
    const policy = { ...DEFAULT_RETRY_POLICY, retries: 0 };
    const cases = [
      new HfgetError("NETWORK", "refused"),
      new HfgetError("SERVER_ERROR", "500", { status: 500 }),
      new HfgetError("RATE_LIMITED", "429", { status: 429, retryAfterMs: 30_000 }),
      new HfgetError("REVISION_NOT_FOUND", "lagging", { retryable: false }),
      new HfgetError("ENTRY_NOT_FOUND", "not here", { retryable: false }),
    ];
    for (const e of cases) {
      const d = decide(e, 0, FRESH_ATTEMPTS, policy, () => 0.5, 1);
      assert.equal(d.decision.kind, "other-source", e.message);
      assert.equal(d.next.failures, 0, `${e.message}: budget untouched`);
      assert.equal(decide(e, 0, FRESH_ATTEMPTS, policy, () => 0.5, 0).decision.kind, "give-up", e.message);
    }
    const wait = decide(cases[2]!, 0, FRESH_ATTEMPTS, policy, () => 0.5, 1).decision;
    assert.deepEqual(wait, { kind: "other-source", waitMs: 30_000 });
    const disk = new HfgetError("DISK", "full", { retryable: false });
    assert.equal(decide(disk, 0, FRESH_ATTEMPTS, policy, () => 0.5, 2).decision.kind, "give-up");
  });
});

const big = fileFromBuffer("model.bin", randomBytesSeeded(21, 8 * 1024 * 1024), { lfs: true });
const cfg = fileFromBuffer("config.json", Buffer.from('{"a": 1}\n'));
const repo = makeRepo("org/mirrors", [big, cfg]);

async function withHubs<T>(n: number, fn: (hubs: FakeHub[]) => Promise<T>, repos = [repo]): Promise<T> {
  const hubs: FakeHub[] = [];
  try {
    for (let i = 0; i < n; i++) hubs.push(await startFakeHub({ repos }));
    return await fn(hubs);
  } finally {
    await Promise.all(hubs.map((h) => h.close()));
  }
}

/** A port nobody listens on: connection refused. */
async function deadEndpoint(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

function assertAllRight(run: EngineRun): void {
  assert.equal(run.error, undefined, String(run.error));
  assert.equal(run.outcomes!.get("model.bin")?.status, "downloaded");
  assert.equal(run.outcomes!.get("config.json")?.status, "downloaded");
  assert.equal(run.sha256Of(big), big.lfs!.sha256);
}

const retries = (run: EngineRun) => run.events.filter((e) => e.type === "retry").length;
const cdnBytes = (hub: FakeHub) =>
  hub.log.filter((r) => r.server === "cdn").reduce((n, r) => n + (r.bytesSent ?? 0), 0);

async function inTemp<T>(fn: (cacheDir: string) => Promise<T>): Promise<T> {
  const cacheDir = tempDir();
  try {
    return await fn(cacheDir);
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

describe("fail over between endpoints", () => {
  it("a mirror killed mid-download: the others finish it, with the retry budget untouched", async () => {
    await withHubs(2, ([a, b]) =>
      inTemp(async (cacheDir) => {
        let seen = 0;
        let killed: Promise<void> | undefined;
        // a is slow enough to be mid-file when it dies.
        a!.faults.push({ server: "cdn", fault: { type: "throttle", bytesPerSec: 4_000_000 } });
        const run = await runEngine(repo, [big, cfg], {
          cacheDir,
          endpoints: [a!.url, b!.url],
          retries: 0,
          onEvent: (e) => {
            if (e.type !== "bytes" || e.path !== "model.bin") return;
            seen += e.bytes;
            if (seen > 1_000_000 && !killed) killed = a!.close();
          },
        });
        await killed;
        assert.ok(killed, "the mirror was killed");
        assertAllRight(run);
        assert.equal(retries(run), 0, "no backoff: every failure moved to the other endpoint");
        assert.ok(setAside(run).has(a!.url), "the log names the killed mirror");
      }),
    );
  });

  it("a lagging mirror (no such commit) and one that 308s to an unlisted hub are set aside", async () => {
    const older = makeRepo("org/mirrors", [cfg]); // another commit only: the pinned one is unknown there
    const lagging = await startFakeHub({ repos: [older] });
    try {
      await withHubs(3, ([good, elsewhere, redirecting]) =>
        inTemp(async (cacheDir) => {
          // hf-mirror's way: a 308 to the same resolve path on another hub (not listed here).
          const commit = repo.commits[0]!.sha;
          redirecting!.faults.push({
            server: "hub",
            pathIncludes: "/resolve/",
            fault: {
              type: "redirect",
              status: 308,
              location: `${elsewhere!.url}/${repo.id}/resolve/${commit}/model.bin`,
            },
          });
          const run = await runEngine(repo, [big, cfg], {
            cacheDir,
            endpoints: [lagging.url, redirecting!.url, good!.url],
            retries: 0,
          });
          assertAllRight(run);
          assert.equal(retries(run), 0);
          const aside = setAside(run);
          assert.ok(aside.has(lagging.url), "the lagging mirror is named");
          assert.ok(aside.has(redirecting!.url), "the redirecting mirror is named");
          assert.equal(elsewhere!.log.length, 0, "the redirect to an unlisted hub was not followed");
          const reasons = run.events.flatMap((e) => (e.type === "source-set-aside" ? [e.reason] : []));
          assert.ok(
            reasons.some((r) => /revision not found|file not found/.test(r)),
            reasons.join("\n"),
          );
          assert.ok(
            reasons.some((r) => /does not have it \(308/.test(r)),
            reasons.join("\n"),
          );
        }),
      );
    } finally {
      await lagging.close();
    }
  });

  it("5xx and 429 from one mirror: the other serves, no retry waits", async () => {
    await withHubs(3, ([five, many, ok]) =>
      inTemp(async (cacheDir) => {
        five!.faults.push({ fault: { type: "status", status: 503 } });
        many!.faults.push({ fault: { type: "status", status: 429, headers: { "retry-after": "60" } } });
        const run = await runEngine(repo, [big, cfg], {
          cacheDir,
          endpoints: [five!.url, many!.url, ok!.url],
          retries: 0,
        });
        assertAllRight(run);
        assert.equal(retries(run), 0);
        assert.ok(setAside(run).has(five!.url) && setAside(run).has(many!.url));
        // Failing again and again marks it down: it is not asked once per chunk.
        assert.ok(setAside(run, "a while").has(five!.url), "the 503 mirror is marked down");
        const asked503 = five!.log.filter((r) => r.status === 503).length;
        assert.ok(asked503 <= DOWN_AFTER + 4, `${asked503} requests to the 503 mirror`);
        // The 429 asked for 60 s: that mirror is left alone meanwhile, not asked per chunk.
        const asked429 = many!.log.filter((r) => r.status === 429).length;
        assert.ok(asked429 <= 4, `${asked429} requests to the rate-limited mirror`);
      }),
    );
  });

  it("a CDN that keeps answering 403 after a fresh resolve: the other endpoint serves", async () => {
    const expired = await startFakeHub({ repos: [repo], cdnUrlTtlMs: -60_000 });
    try {
      await withHubs(1, ([ok]) =>
        inTemp(async (cacheDir) => {
          const run = await runEngine(repo, [big, cfg], {
            cacheDir,
            endpoints: [expired.url, ok!.url],
            retries: 0,
          });
          assertAllRight(run);
          assert.equal(retries(run), 0);
          assert.ok(setAside(run).has(expired.url));
          // Resolved again once per chunk at most, then set aside: not hammered.
          const refused = expired.log.filter((r) => r.server === "cdn" && r.status === 403).length;
          assert.ok(refused >= 2 && refused <= 2 * 8, `${refused} refused CDN requests`);
        }),
      );
    } finally {
      await expired.close();
    }
  });

  it("a mirror that stalls: the chunk moves on after the timeout, budget untouched", async () => {
    await withHubs(2, ([stalling, ok]) =>
      inTemp(async (cacheDir) => {
        stalling!.faults.push({ server: "cdn", fault: { type: "stall", afterBytes: 0 } });
        const run = await runEngine(repo, [big, cfg], {
          cacheDir,
          endpoints: [stalling!.url, ok!.url],
          retries: 0,
          timeout: 1,
        });
        assertAllRight(run);
        assert.equal(retries(run), 0);
        assert.ok(setAside(run).has(stalling!.url));
      }),
    );
  });

  it("every endpoint dead: a network error (exit 6) saying what each answered, within the budget", async () => {
    const dead = await deadEndpoint();
    await withHubs(1, ([five]) =>
      inTemp(async (cacheDir) => {
        five!.faults.push({ fault: { type: "status", status: 500 } });
        const run = await runEngine(repo, [big], { cacheDir, endpoints: [five!.url, dead], retries: 2 });
        assert.ok(isHfgetError(run.error), String(run.error));
        const e = run.error;
        assert.equal(e.exitCode, 6, e.message);
        assert.match(e.message, /no endpoint could serve it/);
        assert.ok(e.message.includes(five!.url) && e.message.includes(dead), e.message);
        assert.match(e.message, /ECONNREFUSED/);
        assert.match(e.message, /500|server error/i);
        // 3 rounds (retries 2) over two endpoints, a few chunks at once: bounded.
        const asked = five!.log.filter((r) => r.url.includes("/resolve/")).length;
        assert.ok(asked <= 3 * 4 + 2, `${asked} requests to the 500 mirror`);
      }),
    );
  });
});

describe("line reporter", () => {
  it("names what was set aside: once per endpoint for a request, always when down or dropped", () => {
    const out: string[] = [];
    const stream = {
      write: (t: string) => out.push(t) !== 0,
      isTTY: false,
    } as unknown as NodeJS.WritableStream;
    const r = lineReporter({ stream, quiet: false, intervalMs: 60_000, now: () => 0 });
    const e = {
      type: "source-set-aside",
      path: "m.bin",
      endpoint: "https://m1",
      reason: "HTTP 503",
    } as const;
    r.onEvent({ ...e, for: "request" });
    r.onEvent({ ...e, for: "request" });
    r.onEvent({ ...e, for: "a while" });
    r.onEvent({ ...e, endpoint: "https://m2", for: "run", reason: "sent bad bytes" });
    const lines = out.filter((l) => l.includes("https://m"));
    assert.equal(lines.length, 3, out.join(""));
    assert.match(lines[0]!, /https:\/\/m1 set aside \(m\.bin: HTTP 503\)/);
    assert.match(lines[1]!, /https:\/\/m1 down for a while/);
    assert.match(lines[2]!, /https:\/\/m2 dropped for this run/);
  });
});

describe("one file from several endpoints", () => {
  it("a large file's chunks spread over both mirrors, more from the faster one", async () => {
    await withHubs(2, ([slow, fast]) =>
      inTemp(async (cacheDir) => {
        slow!.faults.push({ server: "cdn", fault: { type: "throttle", bytesPerSec: 1_000_000 } });
        fast!.faults.push({ server: "cdn", fault: { type: "throttle", bytesPerSec: 16_000_000 } });
        const run = await runEngine(repo, [big], {
          cacheDir,
          endpoints: [slow!.url, fast!.url],
          connections: 4,
        });
        assert.equal(run.error, undefined, String(run.error));
        assert.equal(run.sha256Of(big), big.lfs!.sha256);
        const s = run.pool.stats(slow!.url).bytes;
        const f = run.pool.stats(fast!.url).bytes;
        assert.equal(s + f, big.size, "every byte counted once");
        assert.ok(s > 0, "the slow mirror served part of it");
        assert.ok(f > 2 * s, `fast ${f} B, slow ${s} B`);
        assert.ok(cdnBytes(slow!) > 0 && cdnBytes(fast!) > 0);
      }),
    );
  });

  it("bad bytes from one mirror: found by refetching its ranges elsewhere, dropped, file ok", async () => {
    for (const culprit of [0, 1]) {
      await withHubs(2, (hubs) =>
        inTemp(async (cacheDir) => {
          const bad = hubs[culprit]!;
          bad.faults.push({ server: "cdn", fault: { type: "corrupt" } });
          const run = await runEngine(repo, [big], {
            cacheDir,
            endpoints: hubs.map((h) => h.url),
            connections: 4,
          });
          assert.equal(run.error, undefined, `culprit ${culprit}: ${String(run.error)}`);
          assert.equal(run.outcomes!.get("model.bin")?.status, "downloaded");
          assert.equal(run.sha256Of(big), big.lfs!.sha256);
          assert.deepEqual([...setAside(run, "run")], [bad.url], `culprit ${culprit}`);
          assert.equal(run.pool.stats(bad.url).dropped !== undefined, true);
        }),
      );
    }
  });
});
