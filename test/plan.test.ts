import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { RepoFile } from "../src/hub/types.js";
import { planFile, planFiles } from "../src/plan/plan.js";
import type { FileSurvey } from "../src/plan/survey.js";
import {
  type FakeHub,
  type FakeRepo,
  fileFromBuffer,
  makeRepo,
  randomBytesSeeded,
  startFakeHub,
} from "./fakehub/index.js";
import { cleanEnv, repoCacheDir, runCli, runInProcess, sha256File, show, tempDir } from "./helpers.js";

const MiB = 1024 * 1024;
const lfsFile: RepoFile = {
  path: "w.bin",
  size: 4 * MiB,
  gitOid: "a".repeat(40),
  lfs: { sha256: "b".repeat(64) },
};
const noForce = { force: false };

describe("plan: pure decisions from listing + survey", () => {
  it("nothing on disk is fetch of the whole file", () => {
    assert.deepEqual(planFile(lfsFile, { path: "w.bin" }, noForce), {
      path: "w.bin",
      action: "fetch",
      bytesDone: 0,
      bytesToFetch: 4 * MiB,
    });
    assert.equal(planFile(lfsFile, undefined, noForce).action, "fetch");
  });
  it("a blob of the listed size with its link is present; without the link, link", () => {
    const s: FileSurvey = { path: "w.bin", blobSize: 4 * MiB, linkOk: true };
    assert.deepEqual(planFile(lfsFile, s, noForce), {
      path: "w.bin",
      action: "present",
      bytesDone: 4 * MiB,
      bytesToFetch: 0,
    });
    assert.equal(planFile(lfsFile, { ...s, linkOk: false }, noForce).action, "link");
    assert.equal(planFile(lfsFile, s, { force: true }).action, "fetch");
  });
  it("a blob of the wrong size is fetch, never present", () => {
    const p = planFile(lfsFile, { path: "w.bin", blobSize: 4 * MiB - 1, linkOk: true }, noForce);
    assert.equal(p.action, "fetch");
    assert.equal(p.bytesToFetch, 4 * MiB);
  });
  it("a local-dir file is present only when its metadata etag matches and mtime <= timestamp + 1 s", () => {
    const ok: FileSurvey = {
      path: "w.bin",
      localSize: 4 * MiB,
      localMtimeMs: 1_000_500,
      metadata: { commit: "c".repeat(40), etag: "b".repeat(64), timestamp: 1000 },
    };
    assert.equal(planFile(lfsFile, ok, noForce).action, "present");
    assert.equal(planFile(lfsFile, { ...ok, localMtimeMs: 1_002_000 }, noForce).action, "fetch");
    assert.equal(
      planFile(lfsFile, { ...ok, metadata: { ...ok.metadata!, etag: "d".repeat(64) } }, noForce).action,
      "fetch",
    );
    assert.equal(planFile(lfsFile, { ...ok, localSize: 4 * MiB - 1 }, noForce).action, "fetch");
    const { metadata: _m, ...noMeta } = ok;
    assert.equal(planFile(lfsFile, noMeta, noForce).action, "fetch");
    // Without usable metadata huggingface_hub hashes an LFS file: the survey's hash decides.
    assert.equal(planFile(lfsFile, { ...noMeta, localHashOk: true }, noForce).action, "present");
    assert.equal(planFile(lfsFile, { ...noMeta, localHashOk: false }, noForce).action, "fetch");
    assert.equal(
      planFile(lfsFile, { ...ok, localMtimeMs: 1_002_000, localHashOk: true }, noForce).action,
      "present",
    );
    // ... but never a small git-sha1 file: it is fetched again, as huggingface_hub does.
    const small: RepoFile = { path: "c.json", size: 10, gitOid: "e".repeat(40) };
    assert.equal(
      planFile(small, { path: "c.json", localSize: 10, localMtimeMs: 1, localHashOk: true }, noForce).action,
      "fetch",
    );
  });
  it("a preallocated partial file with resume state is resume of the rest", () => {
    const s: FileSurvey = { path: "w.bin", partialSize: 4 * MiB, resumeDone: MiB };
    assert.deepEqual(planFile(lfsFile, s, noForce), {
      path: "w.bin",
      action: "resume",
      bytesDone: MiB,
      bytesToFetch: 3 * MiB,
    });
    // no state, a partial of another size, or a file too small to keep state: fetch
    assert.equal(planFile(lfsFile, { path: "w.bin", partialSize: 4 * MiB }, noForce).action, "fetch");
    assert.equal(planFile(lfsFile, { ...s, partialSize: MiB }, noForce).action, "fetch");
    assert.equal(
      planFile({ ...lfsFile, size: 1000 }, { ...s, partialSize: 1000, resumeDone: 10 }, noForce).action,
      "fetch",
    );
    // a wrong-size blob beside a partial: the partial is resumed
    assert.equal(planFile(lfsFile, { ...s, blobSize: 7, linkOk: true }, noForce).action, "resume");
  });
  it("bytesToFetch excludes present and resumed bytes", () => {
    const small: RepoFile = { path: "c.json", size: 10, gitOid: "e".repeat(40) };
    const plans = planFiles(
      [lfsFile, small],
      new Map<string, FileSurvey>([
        ["w.bin", { path: "w.bin", partialSize: 4 * MiB, resumeDone: MiB }],
        ["c.json", { path: "c.json", blobSize: 10, linkOk: true }],
      ]),
      noForce,
    );
    assert.equal(
      plans.reduce((n, p) => n + p.bytesToFetch, 0),
      3 * MiB,
    );
  });
});

interface DryFile {
  path: string;
  status: string;
  action: string;
  bytesToFetch: number;
}
interface DryOut {
  dryRun: boolean;
  bytesTotal: number;
  bytesToFetch: number;
  files: DryFile[];
}

describe("dry-run agrees with the real run", () => {
  let hub: FakeHub;
  const big = randomBytesSeeded(81, 4 * MiB + 77);
  const cfg = Buffer.from('{"a": 1}\n');
  const repo: FakeRepo = makeRepo("org/planned", [
    fileFromBuffer("config.json", cfg),
    fileFromBuffer("sub/model.bin", big, { lfs: true }),
  ]);
  const commit = repo.commits[0]!.sha;
  const bigSha = repo.commits[0]!.files.find((f) => f.path === "sub/model.bin")!.lfs!.sha256;

  before(async () => {
    hub = await startFakeHub({ repos: [repo] });
  });
  after(async () => {
    await hub.close();
  });

  const run = (args: string[]) => runInProcess(["org/planned", "--mirror", hub.url, "--quiet", ...args]);
  const dry = async (args: string[]) => {
    // In-process (main's own exit code): two dozen process starts dominated this suite's time.
    const r = await runInProcess(["org/planned", "--mirror", hub.url, "--dry-run", ...args]);
    assert.equal(r.code, 0, show(r));
    const j = await runInProcess(["org/planned", "--mirror", hub.url, "--dry-run", "--json", ...args]);
    assert.equal(j.code, 0, show(j));
    const out = JSON.parse(j.stdout) as DryOut;
    assert.equal(out.dryRun, true);
    const by = new Map(out.files.map((f) => [f.path, f]));
    return { stderr: r.stderr, out, by };
  };
  const fetched = () =>
    hub.log
      .filter((e) => e.server === "cdn" || e.url.includes("/resolve/"))
      .reduce((n, e) => n + e.bytesSent, 0);

  it("all present: every file says present, nothing to fetch, no 'finished 0/N'", async () => {
    const cache = tempDir();
    assert.equal((await run(["--cache-dir", cache])).code, 0);
    const d = await dry(["--cache-dir", cache]);
    assert.deepEqual(
      [...d.by.values()].map((f) => f.action),
      ["present", "present"],
    );
    assert.equal(d.out.bytesToFetch, 0);
    assert.match(d.stderr, /^present {2}config\.json$/m);
    assert.match(d.stderr, /^present {2}sub\/model\.bin$/m);
    assert.match(d.stderr, /^total: 0 B to fetch/m);
    assert.doesNotMatch(d.stderr, /finished 0\//);
    hub.clearLog();
    assert.equal((await run(["--cache-dir", cache])).code, 0);
    assert.equal(fetched(), 0);
  });

  it("nothing there: fetch lines with sizes, bytesToFetch = bytesTotal", async () => {
    const cache = tempDir();
    const d = await dry(["--cache-dir", cache]);
    assert.deepEqual(
      [...d.by.values()].map((f) => f.action),
      ["fetch", "fetch"],
    );
    assert.equal(d.out.bytesToFetch, cfg.length + big.length);
    assert.equal(d.out.bytesToFetch, d.out.bytesTotal);
    assert.match(d.stderr, /^fetch {2}\S+ \S+ {2}sub\/model\.bin$/m);
  });

  it("a blob present without its snapshot link: link, and the real run fetches nothing", async () => {
    const cache = tempDir();
    assert.equal((await run(["--cache-dir", cache])).code, 0);
    const snap = join(repoCacheDir(cache, "model", "org/planned"), "snapshots", commit);
    rmSync(join(snap, "sub", "model.bin"));
    const d = await dry(["--cache-dir", cache]);
    assert.equal(d.by.get("sub/model.bin")?.action, "link");
    assert.equal(d.by.get("config.json")?.action, "present");
    assert.equal(d.out.bytesToFetch, 0);
    assert.match(d.stderr, /^link {2}sub\/model\.bin$/m);
    hub.clearLog();
    assert.equal((await run(["--cache-dir", cache])).code, 0);
    assert.equal(fetched(), 0);
    assert.equal(sha256File(join(snap, "sub", "model.bin")), bigSha);
  });

  it("a blob of the wrong size: fetch (and ls does not call it cached); the real run replaces it", async () => {
    const cache = tempDir();
    assert.equal((await run(["--cache-dir", cache])).code, 0);
    const blob = join(repoCacheDir(cache, "model", "org/planned"), "blobs", bigSha);
    truncateSync(blob, 1000);
    const d = await dry(["--cache-dir", cache]);
    assert.equal(d.by.get("sub/model.bin")?.action, "fetch");
    assert.equal(d.by.get("sub/model.bin")?.status, "planned");
    assert.equal(d.out.bytesToFetch, big.length);
    const ls = await runCli(["ls", "org/planned", "--mirror", hub.url, "--cache-dir", cache], {
      env: cleanEnv(),
      timeoutMs: 30_000,
    });
    assert.equal(ls.code, 0, show(ls));
    const line = ls.stdout.split("\n").find((l) => l.startsWith("sub/model.bin"));
    assert.ok(line !== undefined && !line.includes("cached"), ls.stdout);
    assert.ok(
      ls.stdout
        .split("\n")
        .find((l) => l.startsWith("config.json"))
        ?.includes("cached"),
      ls.stdout,
    );
    hub.clearLog();
    assert.equal((await run(["--cache-dir", cache])).code, 0);
    assert.equal(sha256File(blob), bigSha);
    assert.ok(fetched() >= big.length);
  });

  it("a local-dir file of the right size but other bytes (stale mtime): fetch, and the real run fixes it", async () => {
    const dir = tempDir();
    assert.equal((await run(["--local-dir", dir])).code, 0);
    const file = join(dir, "sub", "model.bin");
    writeFileSync(file, randomBytesSeeded(82, big.length));
    const later = new Date(Date.now() + 60_000);
    utimesSync(file, later, later);
    const d = await dry(["--local-dir", dir]);
    assert.equal(d.by.get("sub/model.bin")?.action, "fetch");
    assert.equal(d.by.get("config.json")?.action, "present");
    assert.equal(d.out.bytesToFetch, big.length);
    hub.clearLog();
    assert.equal((await run(["--local-dir", dir])).code, 0);
    assert.equal(sha256File(file), bigSha);
    assert.ok(fetched() >= big.length);
  });

  it("a local-dir file of the right size without .metadata: dry-run and the real run agree, as huggingface_hub decides", async () => {
    const dir = tempDir();
    assert.equal((await run(["--local-dir", dir])).code, 0);
    const meta = join(dir, ".cache", "huggingface", "download");
    const file = join(dir, "sub", "model.bin");
    const real = async () => {
      const r = await runCli(["org/planned", "--mirror", hub.url, "--json", "--local-dir", dir], {
        env: cleanEnv(),
        timeoutMs: 60_000,
      });
      assert.equal(r.code, 0, show(r));
      const out = JSON.parse(r.stdout) as DryOut;
      return new Map(out.files.map((f) => [f.path, f.status]));
    };
    // 1. The right bytes, no metadata: the LFS file is hashed and kept (huggingface_hub's
    //    sha_fileobj path); the small git file is fetched again (it is never hashed there).
    rmSync(meta, { recursive: true, force: true });
    const d1 = await dry(["--local-dir", dir]);
    assert.equal(d1.by.get("sub/model.bin")?.action, "present");
    assert.equal(d1.by.get("config.json")?.action, "fetch");
    assert.equal(d1.out.bytesToFetch, cfg.length);
    hub.clearLog();
    const r1 = await real();
    assert.equal(r1.get("sub/model.bin"), "cached");
    assert.equal(r1.get("config.json"), "downloaded");
    assert.ok(fetched() < big.length, `${fetched()} bytes fetched: the model was downloaded again`);
    assert.ok(existsSync(join(meta, "sub", "model.bin.metadata")), "metadata written for the hashed file");
    // 2. Other bytes of the same size, no metadata: fetch in both.
    rmSync(meta, { recursive: true, force: true });
    writeFileSync(file, randomBytesSeeded(83, big.length));
    const d2 = await dry(["--local-dir", dir]);
    assert.equal(d2.by.get("sub/model.bin")?.action, "fetch");
    assert.equal(d2.out.bytesToFetch, cfg.length + big.length);
    hub.clearLog();
    const r2 = await real();
    assert.equal(r2.get("sub/model.bin"), "downloaded");
    assert.equal(sha256File(file), bigSha);
    assert.ok(fetched() >= big.length);
  });

  it("a partial file with resume state: resume with N bytes done, and the real run fetches only the rest", async () => {
    const cache = tempDir();
    const blobs = join(repoCacheDir(cache, "model", "org/planned"), "blobs");
    // First config.json only, so the repo folder exists; then plant a partial of model.bin.
    assert.equal((await run(["--cache-dir", cache, "config.json"])).code, 0);
    const done = MiB;
    const partial = Buffer.alloc(big.length);
    big.copy(partial, 0, 0, done);
    writeFileSync(join(blobs, `${bigSha}.hfget-partial`), partial);
    writeFileSync(
      join(blobs, `${bigSha}.hfget-partial.json`),
      JSON.stringify({ version: 1, size: big.length, hash: `sha256:${bigSha}`, done: [[0, done]] }),
    );
    const d = await dry(["--cache-dir", cache]);
    const f = d.by.get("sub/model.bin");
    assert.equal(f?.action, "resume");
    assert.equal(f?.bytesToFetch, big.length - done);
    assert.equal(d.out.bytesToFetch, big.length - done);
    assert.match(d.stderr, /^resume \S+ \S+ of \S+ \S+ {2}sub\/model\.bin$/m);
    hub.clearLog();
    // One connection: with several, a split range's first request may have handed bytes past the
    // split to the socket before it was cut, and bytesSent counts those.
    assert.equal((await run(["--cache-dir", cache, "--connections", "1"])).code, 0);
    const cdn = hub.log.filter((e) => e.server === "cdn");
    const sent = cdn.reduce((n, e) => n + e.bytesSent, 0);
    assert.equal(sent, big.length - done, JSON.stringify(cdn.map((e) => [e.range, e.bytesSent])));
    assert.ok(
      cdn.every((e) => e.range !== undefined && !e.range.startsWith("bytes=0-")),
      JSON.stringify(cdn),
    );
    assert.equal(sha256File(join(blobs, bigSha)), bigSha);
    assert.equal(readFileSync(join(blobs, bigSha)).length, big.length);
  });

  it("a committed blob beside a stale partial + state of ours: present, no refetch, the partial is removed", async () => {
    const cache = tempDir();
    assert.equal((await run(["--cache-dir", cache])).code, 0);
    const blobs = join(repoCacheDir(cache, "model", "org/planned"), "blobs");
    // As left by an hfget killed while another client committed the blob.
    writeFileSync(join(blobs, `${bigSha}.hfget-partial`), Buffer.alloc(big.length));
    writeFileSync(
      join(blobs, `${bigSha}.hfget-partial.json`),
      JSON.stringify({ version: 1, size: big.length, hash: `sha256:${bigSha}`, done: [[0, MiB]] }),
    );
    const d = await dry(["--cache-dir", cache]);
    assert.equal(d.by.get("sub/model.bin")?.action, "present");
    hub.clearLog();
    assert.equal((await run(["--cache-dir", cache])).code, 0);
    assert.equal(fetched(), 0);
    assert.equal(existsSync(join(blobs, `${bigSha}.hfget-partial`)), false);
    assert.equal(existsSync(join(blobs, `${bigSha}.hfget-partial.json`)), false);
    assert.equal(sha256File(join(blobs, bigSha)), bigSha);
  });
});

describe("plan: reuse of a blob under another repo", () => {
  const from = [`/c/models--x--y/blobs/${"b".repeat(64)}`];
  it("an LFS blob missing here but present elsewhere is reuse (nothing to fetch), before resume", () => {
    assert.deepEqual(planFile(lfsFile, { path: "w.bin", reuseFrom: from }, noForce), {
      path: "w.bin",
      action: "reuse",
      bytesDone: 4 * MiB,
      bytesToFetch: 0,
    });
    const partial: FileSurvey = { path: "w.bin", partialSize: 4 * MiB, resumeDone: MiB, reuseFrom: from };
    assert.equal(planFile(lfsFile, partial, noForce).action, "reuse");
    // a wrong-size blob here is replaced by the good one
    assert.equal(planFile(lfsFile, { ...partial, blobSize: 7, linkOk: true }, noForce).action, "reuse");
  });
  it("present stays present; --force fetches; no candidate is fetch", () => {
    const s: FileSurvey = { path: "w.bin", blobSize: 4 * MiB, linkOk: true, reuseFrom: from };
    assert.equal(planFile(lfsFile, s, noForce).action, "present");
    assert.equal(planFile(lfsFile, { path: "w.bin", reuseFrom: from }, { force: true }).action, "fetch");
    assert.equal(planFile(lfsFile, { path: "w.bin", reuseFrom: [] }, noForce).action, "fetch");
  });
});

describe("survey: one folder listing per folder", () => {
  it("finds files, metadata and partial files by listing, and reports nothing for missing folders", async () => {
    const { survey } = await import("../src/plan/survey.js");
    const { localDirPaths } = await import("../src/cache/paths.js");
    const { mkdirSync } = await import("node:fs");
    const { dirname } = await import("node:path");
    const dir = tempDir();
    const paths = localDirPaths(dir);
    const file = (path: string, size: number): RepoFile => ({ path, size, gitOid: "0".repeat(40) });
    const here = file("a/here.txt", 3);
    const partialOnly = file("a/partial.txt", 5);
    const missing = file("b/c/missing.txt", 4);
    mkdirSync(dirname(paths.file(here.path)), { recursive: true });
    writeFileSync(paths.file(here.path), "abc");
    mkdirSync(dirname(paths.metadata(here.path)), { recursive: true });
    writeFileSync(
      paths.metadata(here.path),
      `${"1".repeat(40)}\n${"0".repeat(40)}\n${Date.now() / 1000 + 10}\n`,
    );
    writeFileSync(paths.incomplete(partialOnly.path), "xy");
    const s = await survey({ kind: "local", paths }, [here, partialOnly, missing]);
    assert.equal(s.get(here.path)?.localSize, 3);
    assert.equal(s.get(here.path)?.metadata?.commit, "1".repeat(40));
    assert.equal(s.get(partialOnly.path)?.localSize, undefined);
    assert.equal(s.get(partialOnly.path)?.partialSize, 2);
    assert.deepEqual(s.get(missing.path), { path: missing.path });
  });
});
