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
