// Bundles the CLI into dist/bundle/, which bin/hfget.js loads. Start-up is mostly module loading:
// dist/src is ~100 small ESM files plus undici's, chalk's and commander's; one bundle is read,
// parsed and linked at a fraction of the cost. The library entry (package.json "main") stays tsc's
// output in dist/src.
//
// - cli.cjs: the CLI as one CommonJS file, so that bin/hfget.js can compile it with V8's code
//   cache (node 20 has none for ES modules), then a warm-up run writes cli.v8cache (below).
//   Measured against the ESM bundle with split chunks it replaced (2026-12-02, see the commit):
//   the single file alone costs about what the chunks did; the cache takes ~40 ms of CPU off the
//   time to the first request. `await import()` in src stays lazy: esbuild turns each into a call
//   of the module's init function, so a module still runs only when reached (only its parse
//   comes early, and the cache holds that).
// - import.meta.url, which CommonJS has not, is defined from __filename in the banner: the
//   workers' `new URL("./verify-worker.js", import.meta.url)` and `./hash-worker.js` find them in
//   dist/bundle/ beside cli.cjs, as they find tsc's files in dist/src.
// - verify-worker.js and hash-worker.js: one ESM file each, with nothing shared with cli.cjs.
//   Their banner defines `require` for the CommonJS dependencies, which esbuild turns into calls
//   of a `require` that ESM does not have.
// - sourcemap "linked": dist/bundle/*.map beside each file, costing nothing unless node reads
//   them; `NODE_OPTIONS=--enable-source-maps hfget ...` maps internal-error stacks to src/*.ts
//   (bin/hfget.js then loads cli.cjs by require, without the code cache; the flag costs ~35 ms CPU
//   and ~5 MB RSS at start-up, so it is not on by default). Without it stacks name the bundle,
//   which is not minified: function names and code as in src.
// - External: koffi (native addon: loads its .node file relative to its own package) and
//   cli-progress (src/progress.ts requires it at run time, only when a terminal shows bars).
// - node:http2 is loaded lazily: undici's client-h2.js requires it at load time only to read a
//   few constants, and loading it costs ~20 ms of start-up (the biggest single node module of the
//   run; hfget never speaks h2). The shim below carries those constants, taken from this node's
//   http2 at build time, and loads the real module on the first h2 connection.

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { constants as http2Constants } from "node:http2";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
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

const common = {
  absWorkingDir: new URL("..", import.meta.url).pathname,
  outdir,
  bundle: true,
  platform: "node",
  target: "node20",
  entryNames: "[name]",
  sourcemap: "linked",
  external: ["koffi", "cli-progress"],
  plugins: [lazyHttp2],
  logLevel: "warning",
  // HFGET_BUNDLE_META=FILE: esbuild's metafile (which inputs went into which output, and sizes).
  metafile: process.env.HFGET_BUNDLE_META !== undefined,
};
// The bundle's first line names its build (a hash of its text): bin/hfget.js uses the code cache
// only when the cache starts with the same line. A placeholder of the same length keeps the
// source map's positions.
const ID_PLACEHOLDER = `// hfget-bundle ${"0".repeat(16)}`;
const [result, workers] = await Promise.all([
  build({
    ...common,
    entryPoints: { cli: "src/cli.ts" },
    format: "cjs",
    outExtension: { ".js": ".cjs" },
    write: false,
    define: { "import.meta.url": "__hfgetImportMetaUrl" },
    banner: {
      js: `${ID_PLACEHOLDER}\n"use strict";\nvar __hfgetImportMetaUrl = require("node:url").pathToFileURL(__filename).href;`,
    },
  }),
  build({
    ...common,
    entryPoints: { "verify-worker": "src/verify-worker.ts", "hash-worker": "src/cache/hash-worker.ts" },
    format: "esm",
    banner: {
      js: 'import { createRequire as __hfgetCreateRequire } from "node:module"; const require = __hfgetCreateRequire(import.meta.url);',
    },
  }),
]);
if (result.errors.length > 0 || workers.errors.length > 0) process.exit(1);
for (const f of result.outputFiles) {
  let text = f.text;
  if (f.path.endsWith(".cjs")) {
    const id = createHash("sha256").update(text).digest("hex").slice(0, 16);
    text = text.replace(ID_PLACEHOLDER, `// hfget-bundle ${id}`);
  }
  await mkdir(dirname(f.path), { recursive: true });
  await writeFile(f.path, text);
}
if (process.env.HFGET_BUNDLE_META !== undefined) {
  await writeFile(
    process.env.HFGET_BUNDLE_META,
    JSON.stringify({ cli: result.metafile, workers: workers.metafile }),
  );
}
const WARMUP_REPO = "hfget/warmup";
try {
  await writeCodeCache();
} catch (err) {
  process.stderr.write(`bundle: no code cache written (start-up compiles the bundle each run): ${err}\n`);
}

/**
 * The warm-up: one run of bin/hfget.js with HFGET_CODE_CACHE=write saves the bytecode of what it
 * compiled to dist/bundle/cli.v8cache: a download of a two-file repo (a small file and a small LFS
 * file) from the test suite's fake hub (dist/test/fakehub, which tsc has built before this script
 * in every package script), on 127.0.0.1, in well under a second. So the cache holds start-up,
 * options, config, the hub client and undici, the listing, the plan, the engine, the file jobs and
 * the summary: what a real run compiles up to its first file bytes. A cache written after a long
 * download would hold less: V8 drops the bytecode of functions that have not run for a while.
 * Without the fake hub (this script run alone) the run is one against a server that answers "not
 * found" (cache up to the first answer); a failed warm-up only means a smaller cache or none.
 * Measured (ab-start, CPU at the first /resolve/ request, 12 runs, 2026-12-02): no cache 356 ms,
 * a "not found" warm-up 310 ms, the download warm-up 258 ms.
 */
async function writeCodeCache() {
  const hub = await warmupHub();
  const home = await mkdtemp(join(tmpdir(), "hfget-warmup-"));
  // No HF_* or proxy settings of the builder's: the run talks to 127.0.0.1 only, with no token.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !/^(HF_|HUGGINGFACE_|HFGET_|https?_proxy$|no_proxy$)/i.test(k),
    ),
  );
  const bin = new URL("../bin/hfget.js", import.meta.url).pathname;
  const args = [WARMUP_REPO, "--mirror", hub.url, "--retries", "0", "--quiet"];
  const child = spawn(process.execPath, [bin, ...args, "--local-dir", join(home, "out")], {
    env: { ...env, HF_HOME: home, NO_COLOR: "1", HFGET_CODE_CACHE: "write" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const code = await new Promise((resolve) => child.on("close", resolve));
  clearTimeout(timer);
  await hub.close();
  await rm(home, { recursive: true, force: true });
  if (!existsSync(join(outdir, "cli.v8cache"))) {
    process.stderr.write(`bundle: no code cache written (start-up compiles the bundle each run):\n${stderr}`);
  } else if (hub.download && code !== 0) {
    process.stderr.write(
      `bundle: the warm-up download failed (exit ${code}); the code cache holds less:\n${stderr}`,
    );
  }
}

/** The fake hub serving WARMUP_REPO (download: true), or without it a server answering 404. */
async function warmupHub() {
  let fakehub;
  try {
    fakehub = await import(new URL("../dist/test/fakehub/index.js", import.meta.url).href);
  } catch {
    fakehub = undefined;
  }
  if (fakehub !== undefined) {
    const { fileFromBuffer, makeRepo, randomBytesSeeded, startFakeHub } = fakehub;
    const files = [
      fileFromBuffer("config.json", Buffer.from('{"model_type": "warmup"}\n')),
      fileFromBuffer("model.safetensors", randomBytesSeeded(1, 256 * 1024), { lfs: true }),
    ];
    const hub = await startFakeHub({ repos: [makeRepo(WARMUP_REPO, files)] });
    return { url: hub.url, close: () => hub.close(), download: true };
  }
  const server = createServer((_req, res) => {
    res.writeHead(404, {
      "content-type": "application/json",
      "x-error-code": "RepoNotFound",
      "x-error-message": "Repository not found",
    });
    res.end(JSON.stringify({ error: "Repository not found" }));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve(undefined))),
    download: false,
  };
}
