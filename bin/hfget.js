#!/usr/bin/env node
// V8 heap tuning, set here and not as shebang flags so that `node bin/hfget.js` and `npx hfget` get
// it too. The flag is read each time V8 sizes a space, so setting it at start works.
// - Young generation kept at its initial size (1 MiB semi-spaces): at hundreds of MB/s undici
//   hands over a fresh buffer per socket read; a young generation grown to its default 16 MiB lets
//   tens of MB of them (and their external memory) wait for collection. Measured again once the
//   flag was kept past Worker starts (see HEAP_FLAGS below; 2026-12-02 evening, 3 alternated rounds
//   each, load 1.2-2.5) against V8's default factor of 2: big-loopback peak RSS 137-145 vs 158-162
//   MB, many-files 137-150 vs 168-174 MB, CPU within the rounds' spread. The measurements of other
//   flags below were taken while this one was lost at the first Worker.
// - Old generation: V8's default growth. --heap-growing-percent=20 cut many-files peak RSS (204 ->
//   116 MB) but cost 3-5 CPU-s per 2 GiB on big-loopback (more full collections of a heap that is
//   mostly live buffers) and with it the throughput: big-loopback 8.5-10.3 CPU-s without it, 12.6-15.5
//   with 20 or 50 (bench hfget-node, load ~1.3, 2026-12-02). Speed first; RSS is an open target.
// - Also measured and left out (bench, 2026-12-02, load 2-4): --optimize-for-size (set here, it
//   applies) cut many-files peak RSS 141-151 -> 108-110 MB and big-loopback/big-throttled by 8-15 MB,
//   but cost 8-11% CPU in paired rounds (many-files 14.8 vs 13.3 s, big-throttled 6.95 vs 6.43 s,
//   big-loopback 12.5 vs 11.5 s); --heap-growing-percent=30 the same on many-files (102-105 vs
//   135-162 MB, ~10% CPU): the RSS is old-generation garbage and costs GC work to keep down.
//   --single-threaded-gc lowered big-loopback CPU (8.9-10.0 vs 11.3-12.0 s) but raised RSS (163-171
//   vs 150-153 MB).
//
// The CLI is one CommonJS bundle (scripts/bundle.mjs) compiled here through vm.Script with V8's code
// cache, which Node 20 offers for scripts but not for ES modules: dist/bundle/cli.v8cache, written
// by the build's warm-up run, holds the bytecode of what a download compiles up to its first file
// bytes, so that is deserialized instead of parsed and compiled (CPU at the first request ~240 ->
// ~150 ms, at the first file request ~390 -> ~260 ms; 2026-12-02, see scripts/bundle.mjs).
// The cache is only a shortcut: missing, unreadable, from another build (the id below) or rejected
// by V8 (another node, other V8 flags) it is ignored and the bundle compiles as without it.
// V8 keys the cache to the flags in force at compile time, so HEAP_FLAGS are set before the
// compile here and before the cache is written (a Worker's start resets them: see below).
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { cachedDataVersionTag, setFlagsFromString } from "node:v8";
import { Script } from "node:vm";

const HEAP_FLAGS = "--semi-space-growth-factor=1";
setFlagsFromString(HEAP_FLAGS);
// Each Worker's start (the hash thread, cache verify's pool) makes V8 apply its flag implications
// again, process-wide, and --semi-space-growth-factor has a minimum of 2 there: without this the
// flag holds only until the first Worker, i.e. not during a large file's download.
process.on("worker", (worker) => worker.once("online", () => setFlagsFromString(HEAP_FLAGS)));
const { main } = loadBundle(new URL("../dist/bundle/cli.cjs", import.meta.url));

/** Runs dist/bundle/cli.cjs as node would run a CommonJS module, with the code cache if it fits. */
function loadBundle(url) {
  // node maps stacks only for what its own loaders load (NODE_OPTIONS=--enable-source-maps, see
  // scripts/bundle.mjs): then require it, without the cache.
  if (process.sourceMapsEnabled) return createRequire(url)(fileURLToPath(url));
  const filename = fileURLToPath(url);
  const dirname = fileURLToPath(new URL(".", url));
  const cachePath = fileURLToPath(new URL("cli.v8cache", url));
  const source = readFileSync(filename, "utf8");
  // The bundle's first line names its build; the cache starts with the same line. V8 itself
  // checks only the source's length, its version and its flags.
  const id = source.slice(0, source.indexOf("\n") + 1);
  let cachedData;
  try {
    const file = readFileSync(cachePath);
    if (id.length > 1 && file.subarray(0, id.length).toString("latin1") === id)
      cachedData = file.subarray(id.length);
  } catch {
    // no cache: compile
  }
  const tag = cachedDataVersionTag();
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename,
    cachedData,
  });
  if (process.env.HFGET_CODE_CACHE === "debug") {
    const state = cachedData === undefined ? "none" : script.cachedDataRejected ? "rejected" : "accepted";
    process.stderr.write(`hfget: code cache ${state}\n`);
  }
  // HFGET_CODE_CACHE=write (the build's warm-up): save what this run compiled, at its end.
  if (process.env.HFGET_CODE_CACHE === "write")
    process.once("exit", () => writeCache(script, tag, id, cachePath));
  const module = { exports: {} };
  script.runInThisContext()(module.exports, createRequire(url), module, filename, dirname);
  return module.exports;
}

function writeCache(script, tag, id, cachePath) {
  // A Worker's start puts --semi-space-growth-factor back to V8's minimum (2) process-wide; a cache
  // written under other flags than the compile's would be rejected by every later run.
  setFlagsFromString(HEAP_FLAGS);
  if (cachedDataVersionTag() !== tag) return;
  const tmp = `${cachePath}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, Buffer.concat([Buffer.from(id, "latin1"), script.createCachedData()]));
    renameSync(tmp, cachePath); // atomic: a concurrent run reads the old cache or the new one
  } catch (err) {
    rmSync(tmp, { force: true });
    process.stderr.write(
      `hfget: code cache not written: ${err instanceof Error ? err.message : String(err)}\n`,
    );
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(
      `hfget: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exitCode = 1; // internal error, as documented in the README
  },
);
