// The CLI bundle (scripts/bundle.mjs -> dist/bundle/, what bin/hfget.js runs): bin loads it with the
// build's code cache (and without one), every worker a bundled file starts by
// `new URL("./x.js", import.meta.url)` sits beside it, and both bundled workers hash right (the
// download hash thread through HashThread, cache verify's pool through the CLI). Other CLI tests run
// the bundle too, but start a worker only above 32 MiB.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { RangeSet } from "../src/util/range-set.js";
import { HashThread, ThreadHashPump } from "../src/verify.js";
import { randomBytesSeeded } from "./fakehub/index.js";
import { BIN, ROOT, runCli, tempDir } from "./helpers.js";

const BUNDLE = join(ROOT, "dist", "bundle");
const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("the CLI bundle", () => {
  it("bin/hfget.js loads dist/bundle/cli.cjs; every worker URL in a bundled file names a file beside it", () => {
    assert.match(
      readFileSync(BIN, "utf8"),
      /loadBundle\(new URL\("\.\.\/dist\/bundle\/cli\.cjs", import\.meta\.url\)\)/,
    );
    const files = readdirSync(BUNDLE).filter((f) => f.endsWith(".js") || f.endsWith(".cjs"));
    const named = new Set<string>();
    for (const f of files) {
      // The CommonJS bundle spells import.meta.url as a variable (scripts/bundle.mjs).
      for (const m of readFileSync(join(BUNDLE, f), "utf8").matchAll(
        /new URL\("\.\/([^"]+)", (?:import\.meta\.url|__hfgetImportMetaUrl)\)/g,
      )) {
        named.add(m[1]!);
      }
    }
    assert.deepEqual([...named].sort(), ["hash-worker.js", "verify-worker.js"]);
    for (const n of named) assert.ok(existsSync(join(BUNDLE, n)), `dist/bundle/${n} missing`);
  });

  it("bin/hfget.js compiles from the build's code cache, and runs without it or with a bad one", () => {
    // The cache is a shortcut only: a missing, foreign or damaged file must mean a normal compile.
    // A copy of bin + bundle, so that the build's own cache stays as it is.
    const root = tempDir("hfget-codecache-");
    mkdirSync(join(root, "bin"));
    mkdirSync(join(root, "dist", "bundle"), { recursive: true });
    copyFileSync(BIN, join(root, "bin", "hfget.js"));
    for (const f of ["cli.cjs", "cli.v8cache"])
      copyFileSync(join(BUNDLE, f), join(root, "dist", "bundle", f));
    const cachePath = join(root, "dist", "bundle", "cli.v8cache");
    const run = () => {
      const r = spawnSync(process.execPath, [join(root, "bin", "hfget.js"), "--version"], {
        encoding: "utf8",
        env: { ...process.env, HFGET_CODE_CACHE: "debug" },
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), "0.1.0");
      return /code cache (\w+)/.exec(r.stderr)?.[1];
    };
    assert.equal(run(), "accepted", "the build wrote a cache that this node accepts");
    const good = readFileSync(cachePath);
    const id = good.subarray(0, good.indexOf(10) + 1);
    // V8's own check: same build id, damaged V8 data.
    writeFileSync(cachePath, Buffer.concat([id, Buffer.alloc(good.length - id.length, 7)]));
    assert.equal(run(), "rejected");
    // Another build's cache (V8 would check only the length): not even offered to V8.
    writeFileSync(
      cachePath,
      Buffer.concat([Buffer.from("// hfget-bundle 0123456789abcdef\n"), good.subarray(id.length)]),
    );
    assert.equal(run(), "none");
    writeFileSync(cachePath, "");
    assert.equal(run(), "none");
    rmSync(cachePath);
    assert.equal(run(), "none");
  });

  it("importing the bundle leaves what the first request does not need for later", () => {
    // What a run loads before its first request is start-up latency (issue 9): the engine, the
    // plan and the cache load while the metadata requests are out (download.ts), node:http2 only
    // on an h2 connection (scripts/bundle.mjs). Native modules stand in for ours: the engine's
    // chunk would bring node:crypto and node:worker_threads. A `--version` run of bin/hfget.js
    // loads the bundle as a download does (code cache included), then stops before any request.
    const script = `const before = new Set(process.moduleLoadList);
process.argv = [process.argv[0], ${JSON.stringify(BIN)}, "--version"];
process.on("exit", () => process.stderr.write(process.moduleLoadList.filter((m) => !before.has(m)).join("\\n")));
await import(${JSON.stringify(pathToFileURL(BIN).href)});`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const loaded = new Set(r.stderr.split("\n").map((m) => m.replace(/^NativeModule /, "")));
    assert.ok(loaded.has("net"), "the probe sees native modules (undici's node:net)");
    for (const m of ["http2", "worker_threads", "crypto"])
      assert.ok(!loaded.has(m), `node:${m} loaded at import`);
  });

  it("bin/hfget.js keeps its V8 heap flag when a Worker starts", () => {
    // V8 applies its flag implications again at each Worker's start, which puts
    // --semi-space-growth-factor back to 2; bin sets it again. The flag hash
    // (cachedDataVersionTag) shows whether the flags are still those bin set.
    const script = `import { cachedDataVersionTag } from "node:v8";
import { Worker } from "node:worker_threads";
process.argv = [process.argv[0], ${JSON.stringify(BIN)}, "--version"];
await import(${JSON.stringify(pathToFileURL(BIN).href)});
const set = cachedDataVersionTag();
const w = new Worker("setTimeout(() => {}, 50)", { eval: true });
// After bin's own "online" listener, which node adds a tick after this one.
w.once("online", () => setImmediate(() => process.stderr.write(set === cachedDataVersionTag() ? "kept" : "reset")));`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, "kept");
  });

  it("the bundled download hash thread gives the right SHA-256", async () => {
    const data = randomBytesSeeded(901, 2 * MiB + 17);
    const path = join(tempDir("hfget-bundle-"), "f.incomplete");
    const fh = await open(path, "w+");
    try {
      await fh.write(data, 0, data.length, 0);
      const written = new RangeSet();
      const thread = new HashThread(pathToFileURL(join(BUNDLE, "verify-worker.js")));
      const pump = new ThreadHashPump(
        { fh, path, size: data.length, expected: { algorithm: "sha256", hex: sha256(data) }, written },
        thread,
      );
      written.add(0, data.length);
      pump.onWritten(0, data.length, [data]);
      assert.equal(await pump.digest(), sha256(data));
      await pump.close();
      assert.equal(thread.stats.started, 1);
    } finally {
      await fh.close();
    }
  });

  it("`hfget cache verify` hashes on the bundle's worker threads (over 32 MiB) and finds a flipped byte", {
    timeout: 60_000,
  }, async () => {
    const cache = tempDir("hfget-bundle-cache-");
    const blobs = join(cache, "models--org--big", "blobs");
    mkdirSync(blobs, { recursive: true });
    let bad = "";
    for (let i = 0; i < 2; i++) {
      const bytes = randomBytesSeeded(910 + i, 17 * MiB + i);
      const name = sha256(bytes);
      if (i === 1) {
        bytes[12_345]! ^= 1;
        bad = name;
      }
      writeFileSync(join(blobs, name), bytes);
    }
    const r = await runCli(["cache", "verify", "--cache-dir", cache, "--json"]);
    assert.equal(r.code, 5, r.stderr);
    const report = JSON.parse(r.stdout.trim().split("\n")[0]!) as {
      blobs: number;
      problems: { path: string }[];
    };
    assert.equal(report.blobs, 2);
    assert.deepEqual(
      report.problems.map((p) => p.path),
      [`models--org--big/blobs/${bad}`],
    );
  });
});
