#!/usr/bin/env node
// Keep V8's young generation at its initial size (1 MiB semi-spaces). At hundreds of MB/s undici
// hands over a fresh buffer per socket read; a young generation grown to its default 16 MiB lets
// tens of MB of them (and their external memory) wait for collection: peak RSS 140-165 -> see
// BENCHMARKS.md. Set here, not as a shebang flag, so that `node bin/hfget.js` and `npx hfget` get it
// too; the growth factor is read each time V8 would grow the space, so setting it at start works.
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--semi-space-growth-factor=1");
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
