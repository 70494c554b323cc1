// In-process tests of the engine's shape: the pure retry decision, the retry budget under
// repeated cuts, the error boundary, and that a run leaves nothing behind for the next one.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SafeDirs } from "../src/cache/commit.js";
import { buildConfig } from "../src/config.js";
import { download } from "../src/download.js";
import { HfgetError, isHfgetError } from "../src/errors.js";
import { ExpiredUrlError } from "../src/fetch/chunk.js";
import { decide, FRESH_ATTEMPTS } from "../src/fetch/decide.js";
import { openSession } from "../src/session.js";
import { diskError } from "../src/util/io-error.js";
import { DEFAULT_RETRY_POLICY, type Sleep } from "../src/util/retry.js";
import { runEngine } from "./enginekit.js";
import { fileFromBuffer, makeRepo, randomBytesSeeded } from "./fakehub/index.js";
import { tempDir, waitFor, withHub } from "./helpers.js";

const policy = { ...DEFAULT_RETRY_POLICY, retries: 3 };
const net = () => new HfgetError("NETWORK", "reset");

describe("decide: the pure retry decision", () => {
  it("an attempt without progress counts; the budget runs out after `retries`", () => {
    let state = FRESH_ATTEMPTS;
    const kinds: string[] = [];
    for (let i = 0; i < 4; i++) {
      const d = decide(net(), 0, state, policy, () => 0.5);
      kinds.push(d.decision.kind);
      state = d.next;
    }
    assert.deepEqual(kinds, ["retry", "retry", "retry", "give-up"]);
    assert.equal(state.failures, 4);
  });

  it("an attempt that wrote bytes does not count and reconnects at once", () => {
    const state = { failures: 3, expiredRetried: true };
    const d = decide(net(), 100_000, state, policy, () => 0.5);
    assert.deepEqual(d.decision, { kind: "retry", delayMs: 0, capped: false, attempt: 0 });
    assert.equal(d.next.failures, 0);
    assert.equal(d.next.expiredRetried, false);
  });

  it("an expired URL is resolved again at once the first time, then backs off", () => {
    const first = decide(new ExpiredUrlError("f"), 0, FRESH_ATTEMPTS, policy);
    assert.equal(first.decision.kind, "resolve-again");
    const second = decide(new ExpiredUrlError("f"), 0, first.next, policy, () => 0);
    assert.equal(second.decision.kind, "retry");
    assert.equal(second.decision.kind === "retry" && second.decision.capped, false);
  });

  it("429 waits out Retry-After (capped by policy) outside the retry slots", () => {
    const e = new HfgetError("RATE_LIMITED", "slow down", { status: 429, retryAfterMs: 3_000 });
    const d = decide(e, 0, FRESH_ATTEMPTS, policy);
    assert.deepEqual(d.decision, { kind: "retry", delayMs: 3_000, capped: false, attempt: 1 });
    const long = new HfgetError("RATE_LIMITED", "slow down", { status: 429, retryAfterMs: 10 ** 9 });
    const d2 = decide(long, 0, FRESH_ATTEMPTS, policy);
    assert.equal(d2.decision.kind === "retry" && d2.decision.delayMs, policy.retryAfterCapMs);
  });

  it("a non-retryable error gives up at once with that error", () => {
    const e = new HfgetError("ENTRY_NOT_FOUND", "gone", { retryable: false });
    const d = decide(e, 0, FRESH_ATTEMPTS, policy);
    assert.deepEqual(d.decision, { kind: "give-up", error: e });
  });

  it("anything but an HfgetError is a bug: thrown, never retried", () => {
    assert.throws(() => decide(new TypeError("oops"), 0, FRESH_ATTEMPTS, policy), TypeError);
  });
});

const noSleep: Sleep = async (_ms, signal) => {
  if (signal?.aborted) throw signal.reason;
};

describe("engine in-process", () => {
  const big = randomBytesSeeded(99, 64 * 1024 * 1024);
  const bigSha = createHash("sha256").update(big).digest("hex");
  const repo = makeRepo("org/cut", [fileFromBuffer("model.bin", big, { lfs: true })]);

  it("every connection cut after 100 KB, --retries 3: a 64 MiB file finishes with the right hash", {
    timeout: 120_000,
  }, async () => {
    await withHub([repo], {}, async (hub) => {
      hub.faults.push({ server: "cdn", fault: { type: "drop", afterBytes: 100_000 } });
      const cacheDir = tempDir();
      try {
        const config = buildConfig(
          { repoId: "org/cut", mirror: hub.url, cacheDir, retries: 3, connections: 8 },
          {},
        );
        const session = openSession(config, { sleep: noSleep });
        const controller = new AbortController();
        let retries = 0;
        try {
          const result = await download(config, session, {
            sleep: noSleep,
            signal: controller.signal,
            onEvent: (e) => {
              if (e.type === "retry") retries++;
            },
          });
          const got = readFileSync(join(result.path, "model.bin"));
          assert.equal(createHash("sha256").update(got).digest("hex"), bigSha);
        } finally {
          await session.close();
        }
        // The cuts really happened: a 64 MiB file needs hundreds of 100 KB attempts.
        const cdnGets = hub.log.filter((r) => r.server === "cdn").length;
        assert.ok(cdnGets > 300, `only ${cdnGets} CDN requests: the fault did not fire`);
        assert.equal(retries, 0, "progressing attempts reconnect at once, with no backoff wait");
      } finally {
        rmSync(cacheDir, { recursive: true, force: true });
      }
    });
  });

  const small = makeRepo("org/small", [
    fileFromBuffer("a.txt", Buffer.from("hello a\n")),
    fileFromBuffer("b.bin", randomBytesSeeded(3, 2 * 1024 * 1024), { lfs: true }),
  ]);

  it("a bug in a callback surfaces as itself (exit 1 internal error), not as DISK", async () => {
    await withHub([small], {}, async (hub) => {
      const cacheDir = tempDir();
      try {
        const config = buildConfig({ repoId: "org/small", mirror: hub.url, cacheDir }, {});
        const session = openSession(config);
        try {
          await assert.rejects(
            download(config, session, {
              onEvent: (e) => {
                if (e.type === "file-start") throw new TypeError("bad callback");
              },
            }),
            (err: unknown) => !isHfgetError(err) && err instanceof TypeError,
          );
        } finally {
          await session.close();
        }
      } finally {
        rmSync(cacheDir, { recursive: true, force: true });
      }
    });
  });

  it("a non-errno exception inside a Placement (a TypeError committing the link) is INTERNAL, not DISK", async () => {
    await withHub([small], {}, async (hub) => {
      const cacheDir = tempDir();
      const ensure = SafeDirs.prototype.ensure;
      // The bug is injected into the library's own Placement: its folder check throws a TypeError
      // when the snapshot link is made (after the bytes were fetched and verified).
      SafeDirs.prototype.ensure = function (this: SafeDirs, dir: string) {
        if (dir.includes("/snapshots/")) {
          return Promise.reject(new TypeError("placement bug"));
        }
        return ensure.call(this, dir);
      };
      try {
        const config = buildConfig({ repoId: "org/small", mirror: hub.url, cacheDir }, {});
        const session = openSession(config);
        try {
          await assert.rejects(
            download(config, session),
            (err: unknown) =>
              !isHfgetError(err) && err instanceof TypeError && err.message === "placement bug",
          );
        } finally {
          await session.close();
        }
      } finally {
        SafeDirs.prototype.ensure = ensure;
        rmSync(cacheDir, { recursive: true, force: true });
      }
    });
  });

  it("diskError: errno errors become DISK naming the path; Node's own ERR_* and other errors pass unchanged", () => {
    const eacces = Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
    const d = diskError(eacces, "/x/y");
    assert.ok(isHfgetError(d) && d.code === "DISK" && d.exitCode === 7);
    assert.match(d.message, /\/x\/y: permission denied \(EACCES\)/);
    const erofs = diskError(
      Object.assign(new Error("ro"), { code: "EROFS" }),
      "/ro",
      "cannot create the folder",
    );
    assert.ok(
      isHfgetError(erofs) && erofs.message === "cannot create the folder /ro: read-only file system (EROFS)",
    );
    const nodeBug = Object.assign(new TypeError("bad arg"), { code: "ERR_INVALID_ARG_TYPE" });
    assert.equal(diskError(nodeBug, "/x"), nodeBug);
    const plain = new RangeError("oops");
    assert.equal(diskError(plain, "/x"), plain);
    const net = new HfgetError("NETWORK", "reset");
    assert.equal(diskError(net, "/x"), net);
  });

  it("two runs in one process, the cache removed between them; the caller's signal is let go", async () => {
    await withHub([small], {}, async (hub) => {
      const cacheDir = tempDir();
      try {
        const config = buildConfig({ repoId: "org/small", mirror: hub.url, cacheDir }, {});
        const controller = new AbortController();
        let added = 0;
        let removed = 0;
        const signal = controller.signal;
        const add = signal.addEventListener.bind(signal);
        const remove = signal.removeEventListener.bind(signal);
        signal.addEventListener = ((...a: Parameters<typeof add>) => {
          added++;
          add(...a);
        }) as typeof add;
        signal.removeEventListener = ((...a: Parameters<typeof remove>) => {
          removed++;
          remove(...a);
        }) as typeof remove;
        for (let run = 0; run < 2; run++) {
          const session = openSession(config);
          try {
            const r = await download(config, session, { signal });
            assert.equal(readFileSync(join(r.path, "a.txt"), "utf8"), "hello a\n", `run ${run}`);
            assert.deepEqual(
              r.files.map((f) => f.status),
              ["downloaded", "downloaded"],
              `run ${run}`,
            );
          } finally {
            await session.close();
          }
          rmSync(cacheDir, { recursive: true, force: true });
        }
        assert.ok(added > 0 && removed >= added, `listeners added ${added}, removed ${removed}`);
      } finally {
        rmSync(cacheDir, { recursive: true, force: true });
      }
    });
  });
  it("one session, two runs (cache and --local-dir), the target removed between them: both complete", async () => {
    await withHub([small], {}, async (hub) => {
      const cacheDir = tempDir();
      const localDir = join(tempDir(), "out");
      try {
        const configs = [
          buildConfig({ repoId: "org/small", mirror: hub.url, cacheDir }, {}),
          buildConfig({ repoId: "org/small", mirror: hub.url, cacheDir, localDir }, {}),
        ];
        const session = openSession(configs[0]!);
        try {
          for (const config of configs) {
            for (let run = 0; run < 2; run++) {
              const what = `${config.localDir === undefined ? "cache" : "local dir"} run ${run}`;
              const r = await download(config, session);
              assert.equal(readFileSync(join(r.path, "a.txt"), "utf8"), "hello a\n", what);
              const got = createHash("sha256")
                .update(readFileSync(join(r.path, "b.bin")))
                .digest("hex");
              assert.equal(
                got,
                createHash("sha256")
                  .update(randomBytesSeeded(3, 2 * 1024 * 1024))
                  .digest("hex"),
                what,
              );
              assert.deepEqual(
                r.files.map((f) => f.status),
                ["downloaded", "downloaded"],
                what,
              );
              // Everything the run made goes: folders, locks, metadata. Nothing remembered may
              // say they are still there.
              rmSync(config.localDir ?? cacheDir, { recursive: true, force: true });
            }
          }
        } finally {
          await session.close();
        }
      } finally {
        rmSync(cacheDir, { recursive: true, force: true });
      }
    });
  });
});

describe("decide: stalls", () => {
  it("an attempt that stalled counts against the budget even after some bytes", () => {
    const stall = new HfgetError("NETWORK", "timeout", {
      cause: Object.assign(new Error("t"), { code: "UND_ERR_BODY_TIMEOUT" }),
    });
    const d = decide(stall, 100_000, { failures: 3, expiredRetried: false }, policy);
    assert.equal(d.decision.kind, "give-up");
  });
});

describe("engine: works added while it runs (a listing still being paged)", () => {
  const bufs = Array.from({ length: 9 }, (_, i) => randomBytesSeeded(200 + i, 3_000 + i * 500));
  const files = bufs.map((b, i) => fileFromBuffer(`d/f${i}.bin`, b));
  const repo = makeRepo("org/incremental", files);

  it("add() in batches, end() last: one run, one outcome map; idle workers wait for more until end()", async () => {
    await withHub([repo], {}, async (hub) => {
      const cacheDir = tempDir();
      let done = 0;
      const run = await runEngine(repo, files, {
        cacheDir,
        endpoints: [hub.url],
        connections: 3,
        onEvent: (e) => {
          if (e.type === "file-done") done++;
        },
        feed: async (engine, works) => {
          for (let i = 0; i < 8; i += 4) engine.add(works.slice(i, i + 4));
          // Everything added is done and the workers are idle: a run that ended here would never
          // fetch the last file.
          await waitFor(() => done === 8, 10_000, "the first 8 files");
          await new Promise((r) => setTimeout(r, 300));
          engine.add(works.slice(8));
          engine.end();
        },
      });
      assert.equal(run.error, undefined, String(run.error));
      assert.equal(run.outcomes?.size, 9);
      for (const [i, f] of files.entries()) {
        assert.equal(run.outcomes?.get(f.path)?.status, "downloaded", f.path);
        assert.equal(run.sha256Of(f), createHash("sha256").update(bufs[i]!).digest("hex"), f.path);
      }
    });
  });

  it("end(error): the run stops as for a run-wide failure and run() throws that error", async () => {
    await withHub([repo], {}, async (hub) => {
      const cacheDir = tempDir();
      const broke = new HfgetError("NETWORK", "the listing broke off");
      const run = await runEngine(repo, files, {
        cacheDir,
        endpoints: [hub.url],
        connections: 2,
        feed: async (engine, works) => {
          engine.add(works.slice(0, 2));
          await waitFor(
            () => hub.log.filter((l) => l.url.includes("/resolve/") && l.status !== 0).length >= 2,
            10_000,
            "the first files",
          );
          engine.end(broke);
          engine.add(works.slice(2)); // after the failure: nothing new starts
          engine.end(); // a second end does nothing
        },
      });
      assert.equal(run.error, broke);
      assert.equal(hub.log.filter((l) => l.url.includes("/resolve/")).length, 2);
    });
  });
});
