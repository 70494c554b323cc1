/**
 * Issue 10, "Done means": four clients at once on a cold `hfget serve` download one 1 GiB file; all
 * get the right bytes and the upstream served it once. The clients are real and none holds the whole
 * file in memory: curl (plain GET) and curl (two Range halves), each piped into `openssl dgst -sha256`;
 * huggingface_hub 1.28 `hf_hub_download`; hfget itself (parallel ranges through the server, --local-dir).
 * Upstream bytes are summed from the fake hub's CDN log, and the server's /metrics must agree.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { type FakeHub, fileFromDisk, makeRepo, startFakeHub, writeSeededFile } from "./fakehub/index.js";
import { cleanEnv, runCli, show, tempDir, waitFor } from "./helpers.js";
import { PY_DOWNLOAD, runPython, skipWithoutPython } from "./pyclient.js";
import { metricValue, type ServeProcess, startServeProcess } from "./serve-helpers.js";

const SIZE = 1024 * 1024 * 1024;
const PATH = "model.safetensors";
/** Every client and the whole test are bounded: a hang fails the test instead of holding the suite. */
const CLIENT_S = 180;
const TEST_MS = 300_000;

interface Cmd {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to the end (SIGKILL after `timeoutMs`), never throwing on a non-zero exit. */
function run(cmd: string, args: readonly string[], timeoutMs = CLIENT_S * 1000): Promise<Cmd> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 1 << 20, encoding: "utf8" },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === "number" ? err.code : null;
        resolve({
          code,
          stdout,
          stderr: err !== null && code === null ? `${stderr}\n${err.message}` : stderr,
        });
      },
    );
  });
}

/**
 * sha256 of a file on disk, by `openssl dgst` in its own process (streams; the test's event loop stays
 * free). Not sha256sum: Debian's coreutils 9.1 does not use the CPU's SHA instructions and hashes ~8x
 * slower (2 s vs 0.25 s of CPU per 256 MiB here), which alone would add half a minute to this test.
 */
async function sha256Of(path: string): Promise<string> {
  const r = await run("openssl", ["dgst", "-sha256", "-r", path]);
  assert.equal(r.code, 0, `openssl dgst ${path}: ${r.stderr}`);
  return /^[0-9a-f]{64}/.exec(r.stdout)?.[0] ?? `no hash in ${JSON.stringify(r.stdout)}`;
}

/** The sha256 printed by `... | openssl dgst -sha256 -r` at the end of a bash pipeline (pipefail: curl's exit counts). */
function hashOfPipe(r: Cmd): string {
  return /^([0-9a-f]{64}) \*stdin$/m.exec(r.stdout)?.[1] ?? `no hash in ${JSON.stringify(r.stdout)}`;
}

/**
 * Why this test does not run here, else false. It moves ~5 GiB through real processes (about 45 s of
 * CPU; 85-125 s of wall time measured on the shared 2-core machine at load ~18-25), so a developer's
 * `npm test` runs it only when asked; CI (.ci/run sets CI=true) always does.
 */
function skipReason(): string | false {
  if (process.env.CI !== "true" && process.env.HFGET_TEST_BIG !== "1")
    return "1 GiB through hfget serve takes ~45 s of CPU (1-2 min on a busy 2-core machine): set HFGET_TEST_BIG=1 to run it (CI=true does)";
  const py = skipWithoutPython();
  if (py !== false) return py;
  if (process.env.CI !== "true" && spawnSync("openssl", ["version"]).status !== 0)
    return "needs the openssl command (apt-get install openssl) to hash 1 GiB streams fast";
  return false;
}

const dirs: string[] = [];
/** A temp dir removed in after() (these hold GiBs: not left until the process exits). */
function bigDir(): string {
  const d = tempDir("hfget-big-");
  dirs.push(d);
  return d;
}

let hub: FakeHub | undefined;
let srv: ServeProcess | undefined;
after(async () => {
  await srv?.stop();
  await hub?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test("serve: four clients at once on a cold server get one 1 GiB file right; upstream sent it once", {
  skip: skipReason(),
  timeout: TEST_MS,
}, async (t) => {
  const t0 = Date.now();
  const source = join(bigDir(), "model.bin");
  const { sha256 } = await writeSeededFile(source, 101, SIZE);
  const file = await fileFromDisk(PATH, source, { lfs: true, sha256, size: SIZE });
  const repo = makeRepo("org/big", [file]);
  const commit = repo.commits[0]?.sha ?? "";
  const tGen = Date.now();
  hub = await startFakeHub({ repos: [repo] });
  srv = await startServeProcess(["--upstream", hub.url, "--cache-dir", bigDir()], cleanEnv());
  const url = `${srv.url}/org/big/resolve/main/${PATH}`;
  const half = SIZE / 2;
  const curl = `curl -sS -f --max-time ${CLIENT_S}`;
  const pyCache = bigDir();
  const local = bigDir();

  // All four at the same moment, on a server that has nothing yet.
  const [plain, ranged, py, hf] = await Promise.all([
    run("bash", ["-o", "pipefail", "-c", `${curl} "$1" | openssl dgst -sha256 -r`, "_", url]),
    run("bash", [
      "-o",
      "pipefail",
      "-c",
      `{ ${curl} -w '%{stderr}%{http_code}\\n' -r "0-$2" "$1" && ${curl} -w '%{stderr}%{http_code}\\n' -r "$3-" "$1"; } | openssl dgst -sha256 -r`,
      "_",
      url,
      String(half - 1),
      String(half),
    ]),
    runPython("1.28", PY_DOWNLOAD, [JSON.stringify({ repo_id: "org/big", filename: PATH })], {
      env: cleanEnv({
        HF_ENDPOINT: srv.url,
        HF_HUB_CACHE: pyCache,
        HF_HUB_DISABLE_PROGRESS_BARS: "1",
        HF_HUB_DISABLE_TELEMETRY: "1",
        HF_HUB_DISABLE_XET: "1",
        // Its 10 s read timeout, raised: on a machine at load 20 a starved process can go that long unscheduled.
        HF_HUB_DOWNLOAD_TIMEOUT: "60",
        PYTHONUNBUFFERED: "1",
      }),
      timeoutMs: CLIENT_S * 1000,
    }),
    runCli(["org/big", "--local-dir", local, "--connections", "4", "--quiet"], {
      env: cleanEnv({ HF_ENDPOINT: srv.url }),
      timeoutMs: CLIENT_S * 1000,
    }),
  ]);
  const tClients = Date.now();
  const serverLog = (): string => `\n--- server stderr (end)\n${srv?.stderr().slice(-3000)}`;

  assert.equal(plain.code, 0, `curl: ${plain.stderr}${serverLog()}`);
  assert.equal(hashOfPipe(plain), sha256, "curl, plain GET");
  assert.equal(ranged.code, 0, `curl -r: ${ranged.stderr}${serverLog()}`);
  assert.deepEqual(ranged.stderr.trim().split("\n"), ["206", "206"], "curl: both halves answered 206");
  assert.equal(hashOfPipe(ranged), sha256, "curl, two Range halves");
  assert.equal(py.code, 0, show(py) + serverLog());
  const pyPath = py.stdout
    .split("\n")
    .find((l) => l.startsWith("RESULT "))
    ?.slice("RESULT ".length);
  assert.ok(pyPath?.startsWith(pyCache), show(py));
  assert.equal(hf.code, 0, show(hf) + serverLog());
  const [pyHash, hfHash] = await Promise.all([sha256Of(pyPath ?? ""), sha256Of(join(local, PATH))]);
  assert.equal(pyHash, sha256, "huggingface_hub 1.28 hf_hub_download");
  assert.equal(hfHash, sha256, "hfget --local-dir through the server");

  // hfget asked the server for ranges in parallel (the curl halves are two of the 206s).
  const served = srv
    .stderr()
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { method: string; path: string; status: number })
    .filter((e) => e.method === "GET" && e.path.endsWith(`/${PATH}`));
  const partial = served.filter((e) => e.status === 206).length;
  assert.ok(partial >= 2 + 4, `206 answers for the file: ${partial} (2 from curl, the rest from hfget)`);

  // Upstream: the CDN sent the blob's bytes about once, all to the server.
  const cdn = (): FakeHub["log"] =>
    (hub?.log ?? []).filter((e) => e.server === "cdn" && e.url.includes(sha256));
  await waitFor(() => cdn().every((e) => e.status !== 0), 10_000, "the CDN's log entries to complete");
  const upstream = cdn().reduce((n, e) => n + e.bytesSent, 0);
  assert.ok(
    upstream >= SIZE && upstream <= SIZE * 1.05,
    `CDN sent ${upstream} bytes for a ${SIZE}-byte blob (${(upstream / SIZE).toFixed(3)}x): want 1.0x-1.05x`,
  );

  const m = await (await fetch(`${srv.url}/metrics`)).text();
  assert.equal(metricValue(m, "hfget_serve_upstream_fetches_total"), 1, m);
  assert.equal(metricValue(m, "hfget_serve_fetches_in_flight"), 0, m);
  const fetched = metricValue(m, "hfget_serve_bytes_fetched_upstream_total") ?? 0;
  assert.ok(fetched >= SIZE && fetched <= upstream, `bytes fetched upstream per /metrics: ${fetched}\n${m}`);

  const hits = metricValue(m, "hfget_serve_bytes_served_from_cache_total") ?? 0;
  const joined = metricValue(m, "hfget_serve_bytes_served_while_fetching_total") ?? 0;
  t.diagnostic(
    `1 GiB: generated+hashed in ${((tGen - t0) / 1000).toFixed(1)} s; four clients done ${((tClients - tGen) / 1000).toFixed(1)} s after; ` +
      `upstream ${(upstream / SIZE).toFixed(3)}x; served while fetching ${(joined / SIZE).toFixed(2)} GiB, from cache ${(hits / SIZE).toFixed(2)} GiB; commit ${commit}`,
  );
});
