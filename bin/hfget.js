#!/usr/bin/env node
// V8 heap tuning, set here and not as shebang flags so that `node bin/hfget.js` and `npx hfget` get
// it too. The flag is read each time V8 sizes a space, so setting it at start works.
// - Young generation kept at its initial size (1 MiB semi-spaces): at hundreds of MB/s undici
//   hands over a fresh buffer per socket read; a young generation grown to its default 16 MiB lets
//   tens of MB of them (and their external memory) wait for collection.
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
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--semi-space-growth-factor=1");
const { main } = await import("../dist/bundle/cli.js");

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
