#!/usr/bin/env node
// V8 heap tuning, set here and not as shebang flags so that `node bin/hfget.js` and `npx hfget` get
// it too. Both flags are read each time V8 sizes a space, so setting them at start works.
// - Young generation kept at its initial size (1 MiB semi-spaces): at hundreds of MB/s undici
//   hands over a fresh buffer per socket read; a young generation grown to its default 16 MiB lets
//   tens of MB of them (and their external memory) wait for collection.
// - Old generation grown by 20% of what survived the last full collection, not V8's default of up
//   to 4x on a machine with much memory: with 3000 small files, per-request objects outlive the
//   small young generation, and under the default factor ~50 MB of them (and ~40 MB of buffers)
//   waited for a full collection. many-files peak RSS 204 -> 116 MB (bench, hfget-node, load ~15).
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--semi-space-growth-factor=1");
setFlagsFromString("--heap-growing-percent=20");
const { main } = await import("../dist/src/cli.js");

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
