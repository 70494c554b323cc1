// Fault injection: the real CLI against a fake hub that misbehaves. Every run is capped in time.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, lstatSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  type FakeFile,
  type FakeHub,
  type FakeRepo,
  type FaultRule,
  fileFromBuffer,
  makeRepo,
  pushCommit,
  type RequestLogEntry,
  randomBytesSeeded,
  sha256Hex,
} from "./fakehub/index.js";
import {
  BIN,
  blobProblems,
  type CliRun,
  cacheProblems,
  cleanEnv,
  isScratchName,
  parseRangeHeader,
  readState,
  repoCacheDir,
  resumeStateProblems,
  runCli,
  selfSignedCert,
  show,
  tempDir,
  waitFor,
  walk,
  withHub,
} from "./helpers.js";

const MiB = 1024 * 1024;
const EXIT = { OK: 0, VERIFY: 5, NETWORK: 6, DISK: 7, PROTOCOL: 8 } as const;

// ---------------------------------------------------------------------------------------------
// Fixtures and small helpers

interface Fixture {
  readonly repo: FakeRepo;
  /** Content by path, for byte comparisons. */
  readonly content: Map<string, Buffer>;
  readonly files: FakeFile[];
}

function fixture(id: string, specs: Array<{ path: string; bytes: Buffer; lfs?: boolean }>): Fixture {
  const files = specs.map((s) => fileFromBuffer(s.path, s.bytes, { lfs: s.lfs === true }));
  const content = new Map(specs.map((s) => [s.path, s.bytes]));
  return { repo: makeRepo(id, files), content, files };
}

/** A repo with small regular files, one regular file larger than a chunk, and two LFS files. */
function mixedRepo(id = "org/model", lfsSize = 3 * MiB + 12_345): Fixture {
  return fixture(id, [
    { path: "config.json", bytes: Buffer.from('{"model_type":"test"}\n') },
    { path: "README.md", bytes: Buffer.from("# test model\n") },
    { path: "tokenizer.json", bytes: randomBytesSeeded(21, 150_000) },
    { path: "sub/dir/vocab.txt", bytes: randomBytesSeeded(22, 20_000) },
    { path: "data.bin", bytes: randomBytesSeeded(23, 700_000) },
    { path: "model.safetensors", bytes: randomBytesSeeded(24, lfsSize), lfs: true },
    { path: "sub/model-2.safetensors", bytes: randomBytesSeeded(25, 2 * MiB + 7), lfs: true },
  ]);
}

function lfsFixture(id: string, size: number, seed = 31): Fixture {
  return fixture(id, [{ path: "model.safetensors", bytes: randomBytesSeeded(seed, size), lfs: true }]);
}

function cacheArgs(hub: FakeHub, repoId: string, cache: string, ...extra: string[]): string[] {
  return [repoId, "--mirror", hub.url, "--cache-dir", cache, ...extra];
}

function showLog(log: readonly RequestLogEntry[]): string {
  return log
    .map(
      (e) =>
        `${e.time % 100_000} ${e.server} ${e.method} ${e.status} ${e.url.replace(/\?.*/, "?...").slice(0, 90)} ${e.range ?? ""} sent=${e.bytesSent} auth=${e.authorization}`,
    )
    .join("\n");
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  const value = await fn();
  return { value, ms: Date.now() - t0 };
}

function assertOk(r: CliRun, fx: Fixture, repoDir: string, commit: string): void {
  assert.equal(r.code, EXIT.OK, show(r));
  assert.deepEqual(cacheProblems(repoDir, commit, fx.files), [], show(r));
  assert.deepEqual(blobProblems(repoDir), []);
}

/** Entries of one LFS file on the CDN (the URL names the sha256). */
function cdnEntries(hub: FakeHub, file: FakeFile): RequestLogEntry[] {
  const sha = file.lfs?.sha256 ?? "none";
  return hub.log.filter((e) => e.server === "cdn" && e.url.includes(sha));
}

function resolveEntries(hub: FakeHub, path: string): RequestLogEntry[] {
  return hub.log.filter(
    (e) => e.server === "hub" && e.url.includes("/resolve/") && e.url.endsWith(`/${path}`),
  );
}

function fileOf(fx: Fixture, path: string): FakeFile {
  const f = fx.files.find((x) => x.path === path);
  assert.ok(f, path);
  return f;
}

function contentOf(fx: Fixture, path: string): Buffer {
  const c = fx.content.get(path);
  assert.ok(c, path);
  return c;
}

// ---------------------------------------------------------------------------------------------

describe("faults: flaky servers", () => {
  it("5% dropped connections and 5% 500/502/503 answers: exit 0, every hash right", {
    timeout: 60_000,
  }, async () => {
    const fx = mixedRepo();
    await withHub([fx.repo], {}, async (hub) => {
      const rules: FaultRule[] = [
        { probability: 0.05, seed: 13, times: 1000, fault: { type: "drop", afterBytes: 100_000 } },
        { probability: 0.05 / 3, seed: 123, times: 1000, fault: { type: "status", status: 500 } },
        { probability: 0.05 / 3, seed: 136, times: 1000, fault: { type: "status", status: 502 } },
        { probability: 0.05 / 3, seed: 107, times: 1000, fault: { type: "status", status: 503 } },
      ];
      hub.faults.push(...rules);
      const cache = tempDir();
      const r = await runCli(cacheArgs(hub, "org/model", cache, "--chunk-size", "256K"), {
        timeoutMs: 45_000,
      });
      const fired = rules.map((rule) => 1000 - (rule.times ?? 0));
      assertOk(r, fx, repoCacheDir(cache, "model", "org/model"), fx.repo.refs.main ?? "");
      // The faults really happened (drops and errors), or this test proves nothing.
      assert.ok((fired[0] ?? 0) >= 1, `drops fired: ${fired}\n${showLog(hub.log)}`);
      assert.ok(fired.slice(1).reduce((a, b) => a + b, 0) >= 1, `5xx fired: ${fired}\n${showLog(hub.log)}`);
      assert.equal(
        r.stdout.trim(),
        join(repoCacheDir(cache, "model", "org/model"), "snapshots", fx.repo.refs.main ?? ""),
      );
    });
  });

  it("429 with Retry-After in seconds (CDN): waits at least that long, then completes", {
    timeout: 30_000,
  }, async () => {
    const fx = lfsFixture("org/ra", 1 * MiB);
    await withHub([fx.repo], {}, async (hub) => {
      hub.faults.push({
        server: "cdn",
        times: 1,
        fault: { type: "status", status: 429, headers: { "retry-after": "2" } },
      });
      const cache = tempDir();
      const { value: r, ms } = await timed(() =>
        runCli(cacheArgs(hub, "org/ra", cache, "--chunk-size", "256K"), { timeoutMs: 20_000 }),
      );
      assertOk(r, fx, repoCacheDir(cache, "model", "org/ra"), fx.repo.refs.main ?? "");
      const file = fileOf(fx, "model.safetensors");
      const entries = hub.log.filter(
        (e) => e.url.includes(file.lfs?.sha256 ?? "x") || e.url.includes("/resolve/"),
      );
      const i = entries.findIndex((e) => e.status === 429);
      assert.ok(i >= 0, showLog(hub.log));
      const limited = entries[i]!;
      const later = entries.slice(i + 1);
      assert.ok(later.length > 0, showLog(hub.log));
      for (const e of later) {
        assert.ok(
          e.time >= limited.time + 2000 - 20,
          `a request came ${e.time - limited.time} ms after the 429\n${showLog(hub.log)}`,
        );
      }
      assert.ok(ms >= 2000, `${ms} ms`);
      assert.ok(ms < 12_000, `took ${ms} ms: the wait was not capped near 2 s`);
    });
  });

  it("429 with Retry-After as an HTTP date (hub API): waits until then, then completes", {
    timeout: 30_000,
  }, async () => {
    const fx = mixedRepo("org/radate", 600_000);
    await withHub([fx.repo], {}, async (hub) => {
      // HTTP dates have whole seconds: aim at a whole second 2-3 s away.
      const until = Math.ceil(Date.now() / 1000) * 1000 + 2000;
      hub.faults.push({
        server: "hub",
        pathIncludes: "/revision/",
        times: 1,
        fault: { type: "status", status: 429, headers: { "retry-after": new Date(until).toUTCString() } },
      });
      const cache = tempDir();
      const { value: r, ms } = await timed(() =>
        runCli(cacheArgs(hub, "org/radate", cache, "--chunk-size", "256K"), { timeoutMs: 20_000 }),
      );
      assertOk(r, fx, repoCacheDir(cache, "model", "org/radate"), fx.repo.refs.main ?? "");
      const revs = hub.log.filter((e) => e.url.includes("/revision/"));
      assert.equal(revs.length, 2, showLog(hub.log));
      assert.equal(revs[0]?.status, 429);
      assert.ok((revs[1]?.time ?? 0) >= until - 20, `retried ${until - (revs[1]?.time ?? 0)} ms early`);
      assert.ok(ms < 12_000, `took ${ms} ms`);
    });
  });

  it("a CDN that stalls (headers, then silence) is detected with --timeout 1 and the chunk retried", {
    timeout: 30_000,
  }, async () => {
    const fx = mixedRepo("org/stall", 2 * MiB);
    await withHub([fx.repo], {}, async (hub) => {
      hub.faults.push(
        { server: "cdn", times: 1, fault: { type: "stall", afterBytes: 0 } },
        { server: "cdn", times: 2, fault: { type: "stall", afterBytes: 100_000 } },
        { server: "hub", pathIncludes: "/resolve/", times: 1, fault: { type: "stall", afterBytes: 1000 } },
      );
      const cache = tempDir();
      const { value: r, ms } = await timed(() =>
        runCli(cacheArgs(hub, "org/stall", cache, "--chunk-size", "256K", "--timeout", "1"), {
          timeoutMs: 25_000,
        }),
      );
      assertOk(r, fx, repoCacheDir(cache, "model", "org/stall"), fx.repo.refs.main ?? "");
      assert.ok(ms < 15_000, `took ${ms} ms`);
      // The chunk that stalled after 100000 bytes continued from there.
      const big = cdnEntries(hub, fileOf(fx, "model.safetensors")).concat(
        cdnEntries(hub, fileOf(fx, "sub/model-2.safetensors")),
      );
      const stalledMid = hub.log.filter((e) => e.server === "cdn" && e.bytesSent === 100_000);
      assert.ok(stalledMid.length >= 1, showLog(hub.log));
      for (const s of stalledMid) {
        const [start] = parseRangeHeader(s.range) ?? [-1];
        assert.ok(
          big.some(
            (e) =>
              e.url.split("?")[0] === s.url.split("?")[0] &&
              parseRangeHeader(e.range)?.[0] === start + 100_000,
          ),
          `no retry from byte ${start + 100_000}\n${showLog(hub.log)}`,
        );
      }
    });
  });

  it("a CDN that always stalls fails with exit 6 in bounded time, never hangs", {
    timeout: 30_000,
  }, async () => {
    const fx = lfsFixture("org/deadcdn", 1 * MiB);
    await withHub([fx.repo], {}, async (hub) => {
      hub.faults.push({ server: "cdn", fault: { type: "stall", afterBytes: 10_000 } });
      const cache = tempDir();
      const { value: r, ms } = await timed(() =>
        runCli(
          cacheArgs(hub, "org/deadcdn", cache, "--chunk-size", "256K", "--timeout", "1", "--retries", "2"),
          {
            timeoutMs: 25_000,
          },
        ),
      );
      assert.equal(r.signal, null, `hung: killed after ${ms} ms\n${show(r)}`);
      assert.equal(r.code, EXIT.NETWORK, show(r));
      assert.match(r.stderr, /hfget: error:/);
      assert.ok(ms < 15_000, `took ${ms} ms`);
    });
  });

  it("a server that ignores Range and answers 200: correct result through one stream", {
    timeout: 30_000,
  }, async () => {
    const fx = mixedRepo("org/norange", 2 * MiB + 3);
    await withHub([fx.repo], {}, async (hub) => {
      hub.faults.push({ fault: { type: "ignoreRange" } }); // hub and CDN, permanently
      const cache = tempDir();
      const r = await runCli(cacheArgs(hub, "org/norange", cache, "--chunk-size", "256K"), {
        timeoutMs: 25_000,
      });
      assertOk(r, fx, repoCacheDir(cache, "model", "org/norange"), fx.repo.refs.main ?? "");
      for (const path of ["model.safetensors", "sub/model-2.safetensors"]) {
        const file = fileOf(fx, path);
        const whole = cdnEntries(hub, file).filter((e) => e.range === undefined && e.status === 200);
        assert.ok(
          whole.some((e) => e.bytesSent === file.size),
          `${path}: no single whole-file stream\n${showLog(hub.log)}`,
        );
      }
      // The regular file larger than a chunk comes from the hub itself.
      const data = fileOf(fx, "data.bin");
      const hubWhole = resolveEntries(hub, "data.bin").filter(
        (e) => e.range === undefined && e.status === 200,
      );
      assert.ok(
        hubWhole.some((e) => e.bytesSent === data.size),
        showLog(hub.log),
      );
    });
  });

  it("a wrong Content-Range (transient) is refused and retried: result correct", {
    timeout: 30_000,
  }, async () => {
    const fx = mixedRepo("org/wcr", 2 * MiB);
    await withHub([fx.repo], {}, async (hub) => {
      hub.faults.push(
        { server: "cdn", times: 3, fault: { type: "wrongContentRange", shift: 4096 } },
        {
          server: "hub",
          pathIncludes: "data.bin",
          times: 1,
          fault: { type: "wrongContentRange", shift: -1000 },
        },
      );
      const cache = tempDir();
      const r = await runCli(cacheArgs(hub, "org/wcr", cache, "--chunk-size", "256K"), { timeoutMs: 25_000 });
      assertOk(r, fx, repoCacheDir(cache, "model", "org/wcr"), fx.repo.refs.main ?? "");
    });
  });

  it("a wrong Content-Range (permanent): exit 8, no blob, no snapshot file", {
    timeout: 30_000,
  }, async () => {
    const fx = lfsFixture("org/wcrp", 2 * MiB);
    await withHub([fx.repo], {}, async (hub) => {
      hub.faults.push({ server: "cdn", fault: { type: "wrongContentRange", shift: 4096 } });
      const cache = tempDir();
      const r = await runCli(cacheArgs(hub, "org/wcrp", cache, "--chunk-size", "256K", "--retries", "2"), {
        timeoutMs: 25_000,
      });
      assert.equal(r.code, EXIT.PROTOCOL, show(r));
      assert.match(r.stderr, /Content-Range/);
      const repoDir = repoCacheDir(cache, "model", "org/wcrp");
      const file = fileOf(fx, "model.safetensors");
      const sha = file.lfs?.sha256 ?? "";
      assert.equal(existsSync(join(repoDir, "blobs", sha)), false);
      assert.deepEqual(
        walk(join(repoDir, "snapshots")).filter(
          (p) => !lstatSync(join(repoDir, "snapshots", p)).isDirectory(),
        ),
        [],
      );
      const incomplete = join(repoDir, "blobs", `${sha}.hfget-partial`);
      assert.deepEqual(
        resumeStateProblems(incomplete, `${incomplete}.json`, contentOf(fx, "model.safetensors")),
        [],
      );
    });
  });

  for (const chunked of [false, true]) {
    it(`more bytes than declared (extraBytes${chunked ? ", chunked" : ", Content-Length"}): stopped at the size`, {
      timeout: 30_000,
    }, async () => {
      const fx = mixedRepo(`org/extra${chunked ? "c" : "l"}`, 2 * MiB + 1);
      await withHub([fx.repo], {}, async (hub) => {
        hub.faults.push(
          { server: "cdn", fault: { type: "extraBytes", count: 70_000, chunked } },
          { server: "hub", pathIncludes: "/resolve/", fault: { type: "extraBytes", count: 70_000, chunked } },
        );
        const cache = tempDir();
        const r = await runCli(cacheArgs(hub, fx.repo.id, cache, "--chunk-size", "256K", "--retries", "3"), {
          timeoutMs: 25_000,
        });
        const repoDir = repoCacheDir(cache, "model", fx.repo.id);
        // Either everything is right, or a clear error and nothing wrong is visible.
        if (r.code === EXIT.OK) {
          assertOk(r, fx, repoDir, fx.repo.refs.main ?? "");
        } else {
          assert.ok(r.code === EXIT.PROTOCOL || r.code === EXIT.NETWORK, show(r));
          assert.match(r.stderr, /hfget: error:/);
          assert.deepEqual(blobProblems(repoDir), []);
        }
        // Nothing beyond the size was written: every blob and partial file has the file's size.
        for (const f of fx.files) {
          const id = f.lfs?.sha256 ?? f.gitOid;
          for (const name of [id, `${id}.hfget-partial`]) {
            const p = join(repoDir, "blobs", name);
            if (existsSync(p)) assert.equal(statSync(p).size, f.size, `${f.path}: ${name}`);
          }
        }
      });
    });
  }

  it("corrupt bytes from the CDN (permanent): exit 5, nothing kept; a healthy rerun succeeds", {
    timeout: 30_000,
  }, async () => {
    const fx = mixedRepo("org/corrupt", 1 * MiB + 5);
    await withHub([fx.repo], {}, async (hub) => {
      hub.faults.push({ server: "cdn", fault: { type: "corrupt" } });
      const cache = tempDir();
      const args = cacheArgs(hub, "org/corrupt", cache, "--chunk-size", "256K");
      const r = await runCli(args, { timeoutMs: 25_000 });
      assert.equal(r.code, EXIT.VERIFY, show(r));
      assert.match(r.stderr, /SHA-256 mismatch/);
      const repoDir = repoCacheDir(cache, "model", "org/corrupt");
      const commit = fx.repo.refs.main ?? "";
      for (const path of ["model.safetensors", "sub/model-2.safetensors"]) {
        const sha = fileOf(fx, path).lfs?.sha256 ?? "";
        const left = walk(join(repoDir, "blobs")).filter((n) => n.startsWith(sha));
        assert.deepEqual(left, [], `${path}: left ${left}`);
        assert.equal(existsSync(join(repoDir, "snapshots", commit, ...path.split("/"))), false, path);
      }
      assert.deepEqual(blobProblems(repoDir), []);

      hub.faults.length = 0;
      const again = await runCli(args, { timeoutMs: 25_000 });
      assertOk(again, fx, repoDir, commit);
    });
  });
});

describe("faults: content that changes", () => {
  for (const how of ["killed", "failed"] as const) {
    it(`the file changes upstream after a ${how} first run (--local-dir): old resume state discarded`, {
      timeout: 40_000,
    }, async () => {
      const old = fixture(`org/change-${how}`, [
        { path: "model.safetensors", bytes: randomBytesSeeded(41, 3 * MiB), lfs: true },
        { path: "data.bin", bytes: randomBytesSeeded(42, 1 * MiB) },
      ]);
      await withHub([old.repo], {}, async (hub) => {
        const local = tempDir();
        const meta = join(local, ".cache", "huggingface", "download");
        const args = [
          old.repo.id,
          "--mirror",
          hub.url,
          "--local-dir",
          local,
          "--chunk-size",
          "256K",
          "--connections",
          "4",
        ];
        // First run: slow, so it is stopped part way, with resume state on disk.
        hub.faults.push({ fault: { type: "throttle", bytesPerSec: 256 * 1024 } });
        const states = ["model.safetensors", "data.bin"].map((p) => join(meta, `${p}.hfget-partial.json`));
        const hasProgress = () => states.every((s) => (readState(s)?.done.length ?? 0) > 0);
        let waited: Promise<void> | undefined;
        const first = await runCli(args, {
          timeoutMs: 25_000,
          onSpawn: (child) => {
            waited = waitFor(hasProgress, 20_000, "resume state of both files").then(() => {
              if (how === "killed") child.kill("SIGKILL");
              else hub.faults.unshift({ fault: { type: "status", status: 500 } });
            });
          },
        });
        await waited;
        if (how === "killed") assert.equal(first.signal, "SIGKILL", show(first));
        else assert.equal(first.code, EXIT.NETWORK, show(first));
        assert.ok(hasProgress(), "the first run left resume state");

        // Upstream: same paths, same sizes, new bytes.
        const next = [
          fileFromBuffer("model.safetensors", randomBytesSeeded(43, 3 * MiB), { lfs: true }),
          fileFromBuffer("data.bin", randomBytesSeeded(44, 1 * MiB)),
        ];
        const newContent = new Map([
          ["model.safetensors", randomBytesSeeded(43, 3 * MiB)],
          ["data.bin", randomBytesSeeded(44, 1 * MiB)],
        ]);
        const commit = pushCommit(old.repo, next);
        hub.faults.length = 0;
        hub.clearLog();
        const second = await runCli(args, { timeoutMs: 25_000 });
        assert.equal(second.code, EXIT.OK, show(second));
        for (const [path, bytes] of newContent) {
          const got = readFileSync(join(local, path));
          assert.ok(got.equals(bytes), `${path}: wrong bytes (sha256 ${sha256Hex(got)})`);
          assert.equal(existsSync(join(meta, `${path}.hfget-partial`)), false, path);
          assert.equal(existsSync(join(meta, `${path}.hfget-partial.json`)), false, path);
          const metadata = readFileSync(join(meta, `${path}.metadata`), "utf8").split("\n");
          assert.equal(metadata[0], commit, path);
        }
        // Nothing of the old state was trusted: every byte of the new LFS file came over the wire.
        const lfs = next[0]!;
        const sent = cdnEntries(hub, lfs).reduce(
          (n, e) => n + (e.status === 206 || e.status === 200 ? e.bytesSent : 0),
          0,
        );
        assert.ok(sent >= lfs.size, `only ${sent} of ${lfs.size} bytes fetched\n${showLog(hub.log)}`);
      });
    });
  }

  for (const nth of [1, 3]) {
    it(`content changes on the CDN answer #${nth} within a run: restarted once, correct`, {
      timeout: 30_000,
    }, async () => {
      const fx = lfsFixture(`org/flip-at-${nth}`, 2 * MiB);
      await withHub([fx.repo], {}, async (hub) => {
        // A no-op fault (throttle far above the link) lets the first nth-1 CDN answers through.
        if (nth > 1)
          hub.faults.push({ server: "cdn", times: nth - 1, fault: { type: "throttle", bytesPerSec: 1e12 } });
        hub.faults.push({ server: "cdn", times: 1, fault: { type: "changeContent" } });
        const cache = tempDir();
        const r = await runCli(cacheArgs(hub, fx.repo.id, cache, "--chunk-size", "256K"), {
          timeoutMs: 25_000,
        });
        assertOk(r, fx, repoCacheDir(cache, "model", fx.repo.id), fx.repo.refs.main ?? "");
      });
    });
  }

  it("content changes on some CDN answers within a run: correct or exit 5, never a wrong file", {
    timeout: 40_000,
  }, async () => {
    for (const seed of [5, 6, 7]) {
      const fx = mixedRepo(`org/flip-${seed}`, 2 * MiB);
      await withHub([fx.repo], {}, async (hub) => {
        hub.faults.push({ server: "cdn", probability: 0.15, seed, fault: { type: "changeContent" } });
        const cache = tempDir();
        const r = await runCli(cacheArgs(hub, fx.repo.id, cache, "--chunk-size", "256K"), {
          timeoutMs: 25_000,
        });
        const repoDir = repoCacheDir(cache, "model", fx.repo.id);
        if (r.code === EXIT.OK) {
          assertOk(r, fx, repoDir, fx.repo.refs.main ?? "");
        } else {
          assert.equal(r.code, EXIT.VERIFY, show(r));
          assert.match(r.stderr, /changed|mismatch/);
        }
        assert.deepEqual(blobProblems(repoDir), [], `seed ${seed}`);
      });
    }
  });

  it("the presigned CDN URL expires mid-download: resolved again, completes", {
    timeout: 30_000,
  }, async () => {
    const fx = lfsFixture("org/expiry", 3 * MiB);
    await withHub([fx.repo], { cdnUrlTtlMs: 300 }, async (hub) => {
      hub.faults.push({ server: "cdn", fault: { type: "throttle", bytesPerSec: 1 * MiB } });
      const cache = tempDir();
      const r = await runCli(
        cacheArgs(hub, "org/expiry", cache, "--chunk-size", "256K", "--connections", "4"),
        {
          timeoutMs: 25_000,
        },
      );
      assertOk(r, fx, repoCacheDir(cache, "model", "org/expiry"), fx.repo.refs.main ?? "");
      const resolves = resolveEntries(hub, "model.safetensors");
      assert.ok(resolves.length > 1, `resolved ${resolves.length} time(s)\n${showLog(hub.log)}`);
      assert.ok(
        hub.log.some((e) => e.server === "cdn" && e.status === 403),
        showLog(hub.log),
      );
    });
  });

  it("dropped connections and 5xx mid-chunk: the retry continues where the chunk stopped", {
    timeout: 30_000,
  }, async () => {
    const fx = lfsFixture("org/resume", 4 * MiB);
    await withHub([fx.repo], {}, async (hub) => {
      hub.faults.push(
        { server: "cdn", times: 3, fault: { type: "drop", afterBytes: 300_000 } },
        { server: "cdn", times: 2, fault: { type: "status", status: 503 } },
      );
      const cache = tempDir();
      const r = await runCli(
        cacheArgs(hub, "org/resume", cache, "--chunk-size", "1M", "--connections", "4"),
        {
          timeoutMs: 25_000,
        },
      );
      assertOk(r, fx, repoCacheDir(cache, "model", "org/resume"), fx.repo.refs.main ?? "");
      const cdn = hub.log.filter((e) => e.server === "cdn");
      const dropped = cdn.slice(0, 3);
      for (const d of dropped) {
        const [start, end] = parseRangeHeader(d.range) ?? [-1, -1];
        assert.ok(start >= 0 && end - start + 1 > 300_000, `dropped request ${d.range}`);
        const after = cdn.filter((e) => e.time >= d.time && e !== d).map((e) => parseRangeHeader(e.range));
        // The retry starts past the chunk's start: at the first byte not yet written. That is
        // start + 300000, or a little before when the connection error discarded bytes still
        // buffered in the response stream (never written, so never claimed).
        assert.ok(
          after.some((g) => g !== undefined && g[0] > start && g[0] <= start + 300_000 && g[1] <= end),
          `no retry from past byte ${start} for ${d.range}\n${showLog(hub.log)}`,
        );
        assert.ok(
          !after.some((g) => g !== undefined && g[0] === start),
          `${d.range} fetched again from its start\n${showLog(hub.log)}`,
        );
      }
      // Bytes over the wire: the file once, plus per drop at most what was still buffered in the
      // response stream when the connection broke (a few 64 KiB reads).
      const sent = cdn.reduce((n, e) => n + e.bytesSent, 0);
      assert.ok(
        sent <= 4 * MiB + 3 * 128 * 1024,
        `${sent} bytes sent for a ${4 * MiB} byte file\n${showLog(hub.log)}`,
      );
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe("faults: local disk", () => {
  const mounts: string[] = [];
  after(() => {
    for (const m of mounts) {
      try {
        execFileSync("umount", [m], { stdio: "ignore" });
      } catch {
        // already unmounted
      }
    }
  });

  /** A tmpfs of `size` at a new temp folder, or undefined when mounting is not permitted. */
  function mountTmpfs(size: string): string | "EPERM" {
    const dir = tempDir("hfget-tmpfs-");
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" });
    } catch (err) {
      const text = `${(err as Error).message} ${String((err as { stderr?: unknown }).stderr ?? "")}`;
      if (/EPERM|permission denied|not permitted|must be superuser|only root/i.test(text)) return "EPERM";
      throw err;
    }
    mounts.push(dir);
    return dir;
  }

  it("disk full: exit 7 naming the path and the space needed; resume state intact; a rerun with space completes", {
    timeout: 40_000,
  }, async (t) => {
    const small = mountTmpfs("1m");
    if (small === "EPERM") {
      t.skip("mount -t tmpfs failed with EPERM (not permitted here): cannot make a small disk");
      return;
    }
    const fx = fixture("org/disk", [
      { path: "config.json", bytes: Buffer.from("{}\n") },
      { path: "a.safetensors", bytes: randomBytesSeeded(51, 3 * MiB), lfs: true },
      { path: "b.safetensors", bytes: randomBytesSeeded(52, 3 * MiB), lfs: true },
    ]);
    await withHub([fx.repo], {}, async (hub) => {
      // 1. Clearly too small: refused before writing, with the path and the bytes needed.
      const r1 = await runCli(cacheArgs(hub, "org/disk", small, "--chunk-size", "256K"), {
        timeoutMs: 20_000,
      });
      assert.equal(r1.code, EXIT.DISK, show(r1));
      assert.ok(r1.stderr.includes(small), `stderr does not name the path\n${show(r1)}`);
      assert.match(r1.stderr, /3145728 bytes|3\.1 MB|3 MiB/, show(r1));

      // 2. Room for each file alone, not for both: runs out while writing.
      const mid = mountTmpfs("4m");
      assert.notEqual(mid, "EPERM");
      const cache = mid as string;
      hub.faults.push({ server: "cdn", fault: { type: "throttle", bytesPerSec: 2 * MiB } });
      const r2 = await runCli(
        cacheArgs(hub, "org/disk", cache, "--chunk-size", "256K", "--connections", "8"),
        {
          timeoutMs: 25_000,
        },
      );
      assert.equal(r2.code, EXIT.DISK, show(r2));
      assert.ok(r2.stderr.includes(cache), `stderr does not name the path\n${show(r2)}`);
      assert.match(r2.stderr, /needs \d+ bytes|free at least \d+ bytes/, show(r2));
      const repoDir = repoCacheDir(cache, "model", "org/disk");
      assert.deepEqual(blobProblems(repoDir), []);
      const done = new Map<string, [number, number][]>();
      for (const path of ["a.safetensors", "b.safetensors"]) {
        const sha = fileOf(fx, path).lfs?.sha256 ?? "";
        const incomplete = join(repoDir, "blobs", `${sha}.hfget-partial`);
        assert.deepEqual(
          resumeStateProblems(incomplete, `${incomplete}.json`, contentOf(fx, path)),
          [],
          path,
        );
        const st = readState(`${incomplete}.json`);
        if (st !== undefined) done.set(sha, st.done);
      }

      // 3. Space freed (the tmpfs grows, its contents stay): the rerun resumes and completes.
      execFileSync("mount", ["-o", "remount,size=16m", cache], { stdio: "pipe" });
      hub.faults.length = 0;
      hub.clearLog();
      const r3 = await runCli(cacheArgs(hub, "org/disk", cache, "--chunk-size", "256K"), {
        timeoutMs: 25_000,
      });
      assertOk(r3, fx, repoDir, fx.repo.refs.main ?? "");
      assert.deepEqual(walk(join(repoDir, "blobs")).filter(isScratchName), []);
      // Ranges the state called done were not fetched again.
      for (const [sha, ranges] of done) {
        for (const e of hub.log.filter((x) => x.server === "cdn" && x.url.includes(sha))) {
          const g = parseRangeHeader(e.range);
          if (g === undefined) continue;
          for (const [a, b] of ranges) {
            assert.ok(g[1] < a || g[0] >= b, `${e.range} refetches done range ${a}-${b}`);
          }
        }
      }
    });
  });
});

describe("faults: unwritable targets (read-only file system, no permission)", () => {
  const fx = mixedRepo("org/ro", 2 * MiB);
  /** Exit 7, one error line naming `path`, no stack trace, bounded time, no request to the hub. */
  function assertDiskLine(r: CliRun, ms: number, path: string, hub: FakeHub, what: string): void {
    assert.equal(r.code, EXIT.DISK, `${what}\n${show(r)}`);
    const errors = r.stderr.split("\n").filter((l) => l.startsWith("hfget: error:"));
    assert.equal(errors.length, 1, `${what}\n${show(r)}`);
    assert.ok(errors[0]!.includes(path), `${what}: the error does not name ${path}\n${show(r)}`);
    assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, what);
    assert.ok(ms < 15_000, `${what}: ${ms} ms`);
    // Refused before any network work (the target is checked first).
    assert.deepEqual(
      hub.log.map((e) => e.url),
      [],
      `${what}: the hub was asked for a target that cannot hold the files`,
    );
  }

  it("EROFS: --local-dir and --cache-dir on a read-only mount: exit 7 naming the path", {
    timeout: 60_000,
  }, async (t) => {
    const mnt = tempDir("hfget-ro-");
    // A private read-only tmpfs in a new user+mount namespace: nothing to unmount afterwards.
    const mountRo = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o ro none "$0" && exec "$@"', mnt];
    const probe = spawnSync(
      mountRo[0]!,
      [...mountRo.slice(1), "sh", "-c", `! touch "${mnt}/x" 2>/dev/null`],
      {
        encoding: "utf8",
      },
    );
    if (probe.error !== undefined || probe.status !== 0) {
      t.skip(
        `cannot mount a read-only tmpfs here (unshare -rm + mount -o ro): ${probe.error?.message ?? probe.stderr.trim()}`,
      );
      return;
    }
    await withHub([fx.repo], {}, async (hub) => {
      const cases: Array<[string, string[]]> = [
        ["--local-dir on the read-only mount", ["--local-dir", mnt]],
        ["--local-dir under the read-only mount", ["--local-dir", join(mnt, "a", "b")]],
        ["--cache-dir on the read-only mount", ["--cache-dir", mnt]],
      ];
      for (const [what, args] of cases) {
        hub.clearLog();
        const { value: r, ms } = await timed(() =>
          runCli([fx.repo.id, "--mirror", hub.url, ...args], { wrap: mountRo, timeoutMs: 30_000 }),
        );
        assertDiskLine(r, ms, mnt, hub, what);
        assert.match(r.stderr, /read-only file system \(EROFS\)/, what);
      }
    });
    // The mount lived only in the child's namespace; the folder underneath was never written.
    assert.deepEqual(readdirSync(mnt), []);
  });

  it("EACCES: --local-dir and --cache-dir in a folder the user cannot write: exit 7 naming the path", {
    timeout: 60_000,
  }, async (t) => {
    const root = process.getuid?.() === 0;
    // As root (permissions do not stop root) the CLI runs as nobody (uid 65534) against a
    // root-owned 0755 folder; as another user, against its own 0555 folder.
    const wrap = root ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
    if (root) {
      const probe = spawnSync(wrap[0]!, [...wrap.slice(1), process.execPath, BIN, "--version"], {
        encoding: "utf8",
      });
      if (probe.error !== undefined || probe.status !== 0) {
        t.skip(
          `uid 65534 cannot run the CLI from this checkout (setpriv, or dist/ and node_modules not readable): ${probe.error?.message ?? probe.stderr.trim()}`,
        );
        return;
      }
    }
    const target = tempDir("hfget-noperm-");
    chmodSync(target, root ? 0o755 : 0o555);
    // The user's own HF_HOME is writable: only the target is not.
    const home = tempDir("hfget-home-");
    chmodSync(home, 0o777);
    try {
      await withHub([fx.repo], {}, async (hub) => {
        const cases: Array<[string, string[]]> = [
          ["--local-dir on the folder", ["--local-dir", target]],
          ["--local-dir under the folder", ["--local-dir", join(target, "a", "b")]],
          ["--cache-dir on the folder", ["--cache-dir", target]],
        ];
        for (const [what, args] of cases) {
          hub.clearLog();
          const { value: r, ms } = await timed(() =>
            runCli([fx.repo.id, "--mirror", hub.url, ...args], {
              wrap,
              env: cleanEnv({ HF_HOME: home }),
              timeoutMs: 30_000,
            }),
          );
          assertDiskLine(r, ms, target, hub, what);
          assert.match(r.stderr, /permission denied \(EACCES\)/, what);
        }
      });
      assert.deepEqual(readdirSync(target), [], "something was left in the target");
    } finally {
      chmodSync(target, 0o755);
    }
  });
});

describe("faults: several processes on one cache", () => {
  for (const n of [2, 4]) {
    it(`${n} hfget processes on one cache and one repo at once: all exit 0, cache right, nothing left over`, {
      timeout: 45_000,
    }, async () => {
      const fx = mixedRepo(`org/multi${n}`, 2 * MiB);
      await withHub([fx.repo], {}, async (hub) => {
        hub.faults.push({ server: "cdn", fault: { type: "throttle", bytesPerSec: 2 * MiB } });
        const cache = tempDir();
        const args = cacheArgs(hub, fx.repo.id, cache, "--chunk-size", "256K", "--connections", "4");
        const runs = await Promise.all(Array.from({ length: n }, () => runCli(args, { timeoutMs: 40_000 })));
        const repoDir = repoCacheDir(cache, "model", fx.repo.id);
        for (const r of runs) assertOk(r, fx, repoDir, fx.repo.refs.main ?? "");
        const snapshot = join(repoDir, "snapshots", fx.repo.refs.main ?? "");
        for (const r of runs) assert.equal(r.stdout.trim(), snapshot);
        const scratch = walk(repoDir).filter(isScratchName);
        assert.deepEqual(scratch, []);
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe("faults: dead endpoints", () => {
  const repoId = "org/model";

  it("connection refused: exit 6, a clear error, bounded time", { timeout: 30_000 }, async () => {
    // Every test server listens on 127.0.0.1, so nothing can take this port on 127.0.0.2 meanwhile
    // (closing a listener to free a port on 127.0.0.1 races with tests running in parallel).
    const port = 45_678;
    const { value: r, ms } = await timed(() =>
      runCli([repoId, "--mirror", `http://127.0.0.2:${port}`, "--cache-dir", tempDir(), "--retries", "2"], {
        timeoutMs: 29_000,
      }),
    );
    assert.equal(r.code, EXIT.NETWORK, show(r));
    assert.match(r.stderr, /ECONNREFUSED/);
    assert.ok(r.stderr.includes(`127.0.0.2:${port}`), show(r));
    assert.ok(ms < 30_000, `${ms} ms`);
  });

  it("DNS failure: exit 6, a clear error, bounded time (default retries)", { timeout: 40_000 }, async () => {
    const { value: r, ms } = await timed(() =>
      runCli([repoId, "--mirror", "http://nonexistent.invalid", "--cache-dir", tempDir()], {
        timeoutMs: 35_000,
      }),
    );
    assert.equal(r.code, EXIT.NETWORK, show(r));
    assert.match(r.stderr, /nonexistent\.invalid/);
    assert.match(r.stderr, /ENOTFOUND|EAI_AGAIN/);
    assert.ok(ms < 30_000, `${ms} ms`);
  });

  it("TLS to a plain-http server: exit 6, a clear error, bounded time (--retries 2)", {
    timeout: 40_000,
  }, async () => {
    await withHub([mixedRepo().repo], {}, async (hub) => {
      const httpsUrl = hub.url.replace("http://", "https://");
      // The plain server answers the ClientHello with an HTTP 400 and hangs up: hfget sees a reset
      // during the handshake and retries it like any reset (about 12 s with the default 6 retries).
      const { value: r, ms } = await timed(() =>
        runCli([repoId, "--mirror", httpsUrl, "--cache-dir", tempDir(), "--retries", "2"], {
          timeoutMs: 35_000,
        }),
      );
      assert.equal(r.code, EXIT.NETWORK, show(r));
      assert.ok(r.stderr.includes(httpsUrl), show(r));
      assert.match(r.stderr, /SSL|TLS|EPROTO/i);
      assert.ok(ms < 30_000, `${ms} ms`);
    });
  });

  it("TLS with a self-signed certificate: exit 6, the certificate named, bounded time", {
    timeout: 40_000,
  }, async (t) => {
    const cert = selfSignedCert();
    if (cert === undefined) {
      t.skip("openssl is not available to make a certificate");
      return;
    }
    const server = createHttpsServer({ key: cert.key, cert: cert.cert }, (_req, res) => res.end("{}"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const url = `https://localhost:${(server.address() as AddressInfo).port}`;
      const { value: r, ms } = await timed(() =>
        runCli([repoId, "--mirror", url, "--cache-dir", tempDir()], { timeoutMs: 35_000 }),
      );
      assert.equal(r.code, EXIT.NETWORK, show(r));
      assert.match(r.stderr, /SELF_SIGNED|certificate/i);
      assert.ok(ms < 30_000, `${ms} ms`);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
