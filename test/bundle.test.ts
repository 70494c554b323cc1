// The CLI bundle (scripts/bundle.mjs -> dist/bundle/, what bin/hfget.js runs): bin loads it, every
// worker a chunk starts by `new URL("./x.js", import.meta.url)` sits beside it, and both bundled
// workers hash right (the download hash thread through HashThread, cache verify's pool through the
// CLI). Other CLI tests run the bundle too, but start a worker only above 32 MiB.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
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
  it("bin/hfget.js loads dist/bundle/cli.js; every worker URL in a bundled file names a file beside it", () => {
    assert.match(readFileSync(BIN, "utf8"), /await import\("\.\.\/dist\/bundle\/cli\.js"\)/);
    const files = readdirSync(BUNDLE).filter((f) => f.endsWith(".js"));
    const named = new Set<string>();
    for (const f of files) {
      for (const m of readFileSync(join(BUNDLE, f), "utf8").matchAll(
        /new URL\("\.\/([^"]+)", import\.meta\.url\)/g,
      )) {
        named.add(m[1]!);
      }
    }
    assert.deepEqual([...named].sort(), ["hash-worker.js", "verify-worker.js"]);
    for (const n of named) assert.ok(existsSync(join(BUNDLE, n)), `dist/bundle/${n} missing`);
  });

  it("importing the bundle leaves what the first request does not need for later", () => {
    // What a run loads before its first request is start-up latency (issue 9): the engine, the
    // plan and the cache load while the metadata requests are out (download.ts), node:http2 only
    // on an h2 connection (scripts/bundle.mjs). Native modules stand in for ours: the engine's
    // chunk would bring node:crypto and node:worker_threads.
    const script = `const before = new Set(process.moduleLoadList);
await import(${JSON.stringify(pathToFileURL(join(BUNDLE, "cli.js")).href)});
process.stdout.write(process.moduleLoadList.filter((m) => !before.has(m)).join("\\n"));`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const loaded = new Set(r.stdout.split("\n").map((m) => m.replace(/^NativeModule /, "")));
    assert.ok(loaded.has("net"), "the probe sees native modules (undici's node:net)");
    for (const m of ["http2", "worker_threads", "crypto"])
      assert.ok(!loaded.has(m), `node:${m} loaded at import`);
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
