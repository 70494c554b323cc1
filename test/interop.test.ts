/**
 * hfget beside the real huggingface_hub (1.28 and 0.36) in one cache and one --local-dir: the same
 * flock on the same lock files (each waits for the other), in both orders, at the same time, and
 * after kill -9 of either side. Every run ends with every file's hash right and neither client
 * crashing. hfget's partial file is a name no huggingface_hub version takes as its own.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { isLocked } from "../src/cache/lock.js";
import { cachePaths, localDirPaths } from "../src/cache/paths.js";
import {
  type FakeFile,
  type FakeHub,
  fileFromBuffer,
  makeRepo,
  pushCommit,
  randomBytesSeeded,
  startFakeHub,
} from "./fakehub/index.js";
import {
  blobProblems,
  type CliRun,
  cacheProblems,
  gitSha1File,
  repoCacheDir,
  runCli,
  sha256File,
  show,
  tempDir,
} from "./helpers.js";
import {
  HH_VERSIONS,
  PY_DOWNLOAD,
  PY_HOLD_LOCK,
  pyEnv,
  runPython,
  skipWithoutPython,
  spawnPython,
} from "./pyclient.js";

const MiB = 1024 * 1024;
const REPO = "org/shared";
const REPO_REF = { type: "model", id: REPO } as const;

const v1Files = [
  fileFromBuffer("config.json", Buffer.from('{"version": 1}\n')),
  fileFromBuffer("tokenizer.json", randomBytesSeeded(2, 20_000)),
  fileFromBuffer("weights.bin", randomBytesSeeded(3, 8 * MiB), { lfs: true }),
];
const mainFiles = [
  fileFromBuffer("config.json", Buffer.from('{"version": 2}\n')),
  v1Files[1]!,
  fileFromBuffer("sub/notes.txt", Buffer.from("notes\n")),
  fileFromBuffer("weights.bin", randomBytesSeeded(4, 8 * MiB), { lfs: true }),
];
const weights = mainFiles[3]!;
const weightsSha = weights.lfs!.sha256;
const smallFiles = mainFiles.filter((f) => f !== weights);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls an async check, at most `timeoutMs`. */
async function until(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** Problems with a --local-dir: each listed file must hash to its id. */
function localDirProblems(dir: string, files: readonly FakeFile[]): string[] {
  const problems: string[] = [];
  for (const f of files) {
    const p = join(dir, ...f.path.split("/"));
    try {
      const got = f.lfs ? sha256File(p) : gitSha1File(p);
      const want = f.lfs ? f.lfs.sha256 : f.gitOid;
      if (got !== want) problems.push(`${f.path}: hash ${got}, want ${want}`);
    } catch (err) {
      problems.push(`${f.path}: ${(err as Error).message}`);
    }
  }
  return problems;
}

/** A CLI run that also says whether it has ended yet. */
function tracked(p: Promise<CliRun>): { done: Promise<CliRun>; ended: () => boolean } {
  let ended = false;
  const done = p.finally(() => {
    ended = true;
  });
  return { done, ended: () => ended };
}

function pyShow(r: CliRun): string {
  return `python exit ${r.code} signal ${r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr.slice(-4000)}`;
}

for (const v of HH_VERSIONS) {
  describe(`beside huggingface_hub ${v}`, { skip: skipWithoutPython() }, () => {
    let hub: FakeHub;
    let mainSha: string;
    let cache: string;
    before(async () => {
      const repo = makeRepo(REPO, v1Files, { refs: {} });
      repo.refs["v1.0"] = repo.refs.main!;
      mainSha = pushCommit(repo, mainFiles);
      hub = await startFakeHub({ repos: [repo] });
    });
    after(() => hub.close());
    beforeEach(() => {
      hub.faults.length = 0;
      hub.clearLog();
      cache = tempDir("hfget-interop-");
    });

    const env = () => pyEnv(hub, cache);
    const repoDir = () => repoCacheDir(cache, "model", REPO);
    const cacheLock = () => cachePaths(cache, REPO_REF).lock(weightsSha);
    const hfget = (args: string[], opts: { onSpawn?: (c: ChildProcess) => void } = {}) =>
      runCli([REPO, "--quiet", ...args], { env: env(), timeoutMs: 60_000, ...opts });
    const py = (a: Record<string, unknown>) =>
      runPython(v, PY_DOWNLOAD, [JSON.stringify({ repo_id: REPO, ...a })], { env: env() });
    const assertCache = (where: string) => {
      assert.deepEqual(cacheProblems(repoDir(), mainSha, mainFiles), [], where);
      assert.deepEqual(blobProblems(repoDir()), [], where);
    };
    const cdnGets = () =>
      hub.log.filter((e) => e.server === "cdn" && e.method === "GET" && e.url.includes(weightsSha));

    for (const mode of ["cache", "local-dir"] as const) {
      it(`${mode}: Python holds the lock (WeakFileLock), hfget waits for it and finishes once it is released`, async () => {
        const dir = join(cache, "local");
        const lock = mode === "cache" ? cacheLock() : localDirPaths(dir).lock("weights.bin");
        const holder = spawnPython(v, PY_HOLD_LOCK, [lock], { env: env() });
        await holder.waitForOutput("locked");
        const run = tracked(hfget(mode === "cache" ? [] : ["--local-dir", dir]));
        // hfget fetches the other files, then keeps asking for the held lock (every 500 ms).
        await until(
          () =>
            smallFiles.every((f) =>
              existsSync(
                mode === "cache" ? join(repoDir(), "blobs", f.gitOid) : join(dir, ...f.path.split("/")),
              ),
            ),
          30_000,
          "hfget to fetch the unlocked files",
        );
        await sleep(1500);
        assert.equal(run.ended(), false, "hfget must wait while Python holds the lock");
        assert.deepEqual(cdnGets(), [], "hfget fetched the locked file");
        holder.send("");
        const h = await holder.done;
        assert.equal(h.code, 0, pyShow(h));
        const r = await run.done;
        assert.equal(r.code, 0, show(r));
        if (mode === "cache") assertCache("after hfget");
        else assert.deepEqual(localDirProblems(dir, mainFiles), []);
        assert.ok(statSync(lock).isFile(), "the lock stays a regular file");
      });
    }

    it("hfget holds the lock while it downloads: Python waits, and goes on once hfget is killed (-9)", async () => {
      // hfget's one connection stalls after 1 MiB of weights.bin and holds the lock meanwhile.
      hub.faults.push({
        server: "cdn",
        pathIncludes: weightsSha,
        times: 1,
        fault: { type: "stall", afterBytes: MiB },
      });
      let child: ChildProcess | undefined;
      const run = tracked(hfget(["--connections", "1", "--timeout", "120"], { onSpawn: (c) => (child = c) }));
      await until(() => isLocked(cacheLock()), 30_000, "hfget to take the lock");
      const partial = cachePaths(cache, REPO_REF).incomplete(weightsSha);
      await until(() => existsSync(partial), 30_000, "hfget's partial file");
      const waiter = spawnPython(v, PY_HOLD_LOCK, [cacheLock()], { env: env() });
      const download = spawnPython(v, PY_DOWNLOAD, [JSON.stringify({ repo_id: REPO })], { env: env() });
      await waiter.waitForOutput("waiting");
      // Python has asked the hub for weights.bin's metadata: next it takes the lock.
      await until(
        () =>
          hub.log.some(
            (e) => e.method === "HEAD" && e.url.includes("/resolve/") && e.url.endsWith("weights.bin"),
          ),
        30_000,
        "Python's HEAD of weights.bin",
      );
      await sleep(1000);
      assert.equal(run.ended(), false, "hfget ended while its download was stalled");
      assert.ok(!waiter.output().stdout.includes("locked"), "Python took the lock hfget holds");
      assert.equal(cdnGets().length, 1, "only hfget's stalled request may have fetched weights.bin");
      // hfget preallocated its partial file at full size: huggingface_hub 0.x would take
      // `<id>.incomplete` of that size as complete, holes and all.
      assert.equal(statSync(partial).size, weights.size);
      child!.kill("SIGKILL");
      const killed = await run.done;
      assert.equal(killed.signal, "SIGKILL", show(killed));
      await waiter.waitForOutput("locked");
      waiter.send("");
      const w = await waiter.done;
      assert.equal(w.code, 0, pyShow(w));
      const d = await download.done;
      assert.equal(d.code, 0, pyShow(d));
      assert.match(d.stdout, /RESULT /);
      assertCache("after Python finished what hfget began");
      const again = await hfget([]);
      assert.equal(again.code, 0, show(again));
      assertCache("after hfget reran");
    });

    it("Python killed (-9) mid-download: hfget takes the lock at once, finishes, and leaves Python's partial file alone", async () => {
      hub.faults.push({
        server: "cdn",
        pathIncludes: weightsSha,
        times: 1,
        fault: { type: "stall", afterBytes: MiB },
      });
      const p = spawnPython(v, PY_DOWNLOAD, [JSON.stringify({ repo_id: REPO, filename: "weights.bin" })], {
        env: env(),
      });
      const blobs = join(repoDir(), "blobs");
      const pyPartials = () =>
        existsSync(blobs)
          ? readdirSync(blobs).filter((n) => n.startsWith(weightsSha) && n.endsWith(".incomplete"))
          : [];
      // Python buffers 10 MiB before it writes: wait for its file and for the hub to have sent the first MiB.
      await until(
        () => pyPartials().length > 0 && cdnGets().some((e) => e.bytesSent >= MiB),
        30_000,
        "Python's partial file and its first MiB on the wire",
      );
      assert.equal(await isLocked(cacheLock()), true, "Python holds the lock while it downloads");
      p.child.kill("SIGKILL");
      await p.done;
      await until(
        async () => !(await isLocked(cacheLock())),
        5000,
        "the kernel to drop the killed holder's lock",
      );
      const left = pyPartials().map((n) => [n, statSync(join(blobs, n)).size]);
      const r = await hfget([]);
      assert.equal(r.code, 0, show(r));
      assertCache("after hfget");
      assert.deepEqual(
        pyPartials().map((n) => [n, statSync(join(blobs, n)).size]),
        left,
        "Python's partial file is Python's",
      );
      // And Python runs on the cache hfget wrote (its lock files are files it can open).
      const again = await py({ force_download: true });
      assert.equal(again.code, 0, pyShow(again));
      assertCache("after Python's forced download");
    });

    it("a local dir Python filled at v1.0 is updated to main by hfget, and Python then finds it up to date", async () => {
      const dir = join(cache, "local");
      const first = await py({ revision: "v1.0", local_dir: dir });
      assert.equal(first.code, 0, pyShow(first));
      assert.deepEqual(localDirProblems(dir, v1Files), []);
      const r = await hfget(["--local-dir", dir]);
      assert.equal(r.code, 0, show(r));
      assert.deepEqual(localDirProblems(dir, mainFiles), []);
      hub.clearLog();
      const second = await py({ local_dir: dir });
      assert.equal(second.code, 0, pyShow(second));
      assert.deepEqual(localDirProblems(dir, mainFiles), []);
      const fetched = hub.log.filter(
        (e) => e.method === "GET" && (e.server === "cdn" || e.url.includes("/resolve/")),
      );
      assert.deepEqual(
        fetched.map((e) => e.url),
        [],
        "huggingface_hub took hfget's files and metadata as up to date",
      );
    });

    it("a cache Python filled: hfget fetches a missing blob, --force refetches, then Python's forced download works", async () => {
      const first = await py({});
      assert.equal(first.code, 0, pyShow(first));
      assertCache("after Python");
      rmSync(join(repoDir(), "blobs", weightsSha));
      const r = await hfget([]);
      assert.equal(r.code, 0, show(r));
      assertCache("after hfget fetched the missing blob");
      const forced = await hfget(["--force"]);
      assert.equal(forced.code, 0, show(forced));
      assertCache("after hfget --force");
      const second = await py({ force_download: true });
      assert.equal(second.code, 0, pyShow(second));
      assertCache("after Python's forced download");
    });

    for (const mode of ["cache", "local-dir"] as const) {
      it(`${mode}: hfget and Python download the same repo at the same time`, async () => {
        hub.faults.push({ server: "cdn", times: 100, fault: { type: "throttle", bytesPerSec: 8 * MiB } });
        const dir = join(cache, "local");
        const local = mode === "cache" ? {} : { local_dir: dir };
        const [r, p] = await Promise.all([hfget(mode === "cache" ? [] : ["--local-dir", dir]), py(local)]);
        assert.equal(r.code, 0, show(r));
        assert.equal(p.code, 0, pyShow(p));
        if (mode === "cache") assertCache("after both");
        else assert.deepEqual(localDirProblems(dir, mainFiles), []);
      });
    }
  });
}

describe("what hfget finds in blobs/ was written by someone else", () => {
  it("a blob of another size than listed is fetched again, never reported present", async () => {
    const repo = makeRepo("org/sized", [
      fileFromBuffer("w.bin", randomBytesSeeded(9, 2 * MiB), { lfs: true }),
    ]);
    const hub = await startFakeHub({ repos: [repo] });
    try {
      const cache = tempDir("hfget-interop-");
      const f = repo.commits[0]!.files[0]!;
      const paths = cachePaths(cache, { type: "model", id: "org/sized" });
      mkdirSync(join(paths.repoDir, "blobs"), { recursive: true });
      writeFileSync(paths.blob(f.lfs!.sha256), randomBytesSeeded(9, MiB)); // cut short
      mkdirSync(paths.snapshotDir(repo.commits[0]!.sha), { recursive: true });
      symlinkSync(`../../blobs/${f.lfs!.sha256}`, paths.snapshotFile(repo.commits[0]!.sha, "w.bin"));
      const env = pyEnv(hub, cache);
      const dry = await runCli(["org/sized", "--dry-run", "--json"], { env });
      assert.equal(dry.code, 0, show(dry));
      const plan = JSON.parse(dry.stdout) as { files: { path: string; status: string }[] };
      assert.notEqual(plan.files[0]?.status, "cached", dry.stdout);
      const r = await runCli(["org/sized", "--json"], { env });
      assert.equal(r.code, 0, show(r));
      const out = JSON.parse(r.stdout) as { files: { path: string; status: string }[] };
      assert.notEqual(out.files[0]?.status, "cached", r.stdout);
      assert.equal(sha256File(paths.blob(f.lfs!.sha256)), f.lfs!.sha256);
    } finally {
      await hub.close();
    }
  });
});
