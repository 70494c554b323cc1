// Bundles the CLI into dist/bundle/ (ESM, one file per entry plus shared/lazy chunks), which
// bin/hfget.js loads. Start-up is mostly module loading: dist/src is ~100 small ESM files plus
// undici's, chalk's and commander's; one bundle is read, parsed and linked at a fraction of the cost.
// The library entry (package.json "main") stays tsc's output in dist/src.
//
// - splitting: every `await import()` in src stays a separate chunk, loaded only when reached.
// - All output files sit side by side in dist/bundle/ (entryNames/chunkNames without a directory),
//   so `new URL("./verify-worker.js", import.meta.url)` and `./hash-worker.js` in any chunk find the
//   worker bundles, as they find tsc's files in dist/src.
// - The banner defines `require` for the CommonJS dependencies (undici's require("node:net") etc.),
//   which esbuild turns into calls of a `require` that ESM does not have.
// - sourcemap "linked": dist/bundle/*.js.map beside each file, costing nothing unless node reads
//   them; `NODE_OPTIONS=--enable-source-maps hfget ...` maps internal-error stacks to src/*.ts
//   (that flag costs ~35 ms CPU and ~5 MB RSS at start-up, so it is not on by default). Without it
//   stacks name the bundle's chunks, which are not minified: function names and code as in src.
// - External: koffi (native addon: loads its .node file relative to its own package) and
//   cli-progress (src/progress.ts requires it at run time, only when a terminal shows bars).
// - node:http2 is loaded lazily: undici's client-h2.js requires it at load time only to read a
//   few constants, and loading it costs ~20 ms of start-up (the biggest single node module of the
//   run; hfget never speaks h2). The shim below carries those constants, taken from this node's
//   http2 at build time, and loads the real module on the first h2 connection.

import { rm, writeFile } from "node:fs/promises";
import { constants as http2Constants } from "node:http2";
import { build } from "esbuild";

/** @type {import("esbuild").Plugin} */
const lazyHttp2 = {
  name: "lazy-http2",
  setup(b) {
    b.onResolve({ filter: /^node:http2$/ }, (args) =>
      args.importer.endsWith("undici/lib/dispatcher/client-h2.js")
        ? { path: "lazy-http2", namespace: "lazy-http2" }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "lazy-http2" }, () => ({
      loader: "js",
      contents: [
        `const constants = ${JSON.stringify(http2Constants)};`,
        "let real;",
        'const load = () => (real ??= require("node:http2"));',
        "module.exports = { constants, connect: (...args) => load().connect(...args) };",
      ].join("\n"),
    }));
  },
};

const outdir = new URL("../dist/bundle/", import.meta.url).pathname;
await rm(outdir, { recursive: true, force: true });

const result = await build({
  absWorkingDir: new URL("..", import.meta.url).pathname,
  entryPoints: {
    cli: "src/cli.ts",
    "verify-worker": "src/verify-worker.ts",
    "hash-worker": "src/cache/hash-worker.ts",
  },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  entryNames: "[name]",
  chunkNames: "chunk-[hash]",
  sourcemap: "linked",
  external: ["koffi", "cli-progress"],
  plugins: [lazyHttp2],
  banner: {
    js: 'import { createRequire as __hfgetCreateRequire } from "node:module"; const require = __hfgetCreateRequire(import.meta.url);',
  },
  logLevel: "warning",
  // HFGET_BUNDLE_META=FILE: esbuild's metafile (which inputs went into which output, and sizes).
  metafile: process.env.HFGET_BUNDLE_META !== undefined,
});
if (result.errors.length > 0) process.exit(1);
if (process.env.HFGET_BUNDLE_META !== undefined) {
  await writeFile(process.env.HFGET_BUNDLE_META, JSON.stringify(result.metafile));
}
