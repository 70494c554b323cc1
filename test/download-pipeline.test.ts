// The listing pipeline (issue 12): with a paged listing, the first page's files are fetched while
// later pages are still being listed. In-process runs against fake hubs with small pages and latency.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readAhead } from "../src/download-run.js";
import {
  type FakeHub,
  type RequestLogEntry as FakeLogEntry,
  fileFromBuffer,
  makeRepo,
  randomBytesSeeded,
  startFakeHub,
} from "./fakehub/index.js";
import { cacheProblems, cleanEnv, repoCacheDir, runInProcess, show, tempDir } from "./helpers.js";

const N = 60;
const PAGE = 8; // 8 pages of files (the fake hub also lists the folders: a few more pages)
const files = Array.from({ length: N }, (_, i) =>
  fileFromBuffer(`d${i % 4}/f${String(i).padStart(3, "0")}.txt`, randomBytesSeeded(500 + i, 200 + 37 * i)),
);
const repo = makeRepo("org/paged", files);
const commit = repo.commits[0]!.sha;
const totalBytes = files.reduce((n, f) => n + f.size, 0);

interface JsonOut {
  commit: string;
  bytesTotal: number;
  bytesDownloaded: number;
  files: { path: string; status: string }[];
}

const isTree = (e: FakeLogEntry) => e.server === "hub" && e.url.includes("/tree/");
const isResolve = (e: FakeLogEntry) => e.url.includes("/resolve/");

describe("download pipeline: files start while the listing is still paged", () => {
  let hub: FakeHub;
  let mirror: FakeHub;
  before(async () => {
    hub = await startFakeHub({ repos: [repo], pageSize: PAGE, latencyMs: 25 });
    mirror = await startFakeHub({ repos: [repo], pageSize: PAGE, latencyMs: 5 });
  });
  after(async () => {
    await hub.close();
    await mirror.close();
  });
  const run = (args: string[]) => runInProcess(["org/paged", "--json", "--quiet", ...args], cleanEnv());

  const landed = (cache: string): string[] =>
    cacheProblems(repoCacheDir(cache, "model", "org/paged"), commit, files);

  it("the first file's resolve reaches the hub before the last listing page is asked; all land, totals right", async () => {
    hub.clearLog();
    hub.faults.length = 0;
    const cache = tempDir();
    const r = await run(["--mirror", hub.url, "--cache-dir", cache, "--connections", "4"]);
    assert.equal(r.code, 0, show(r));
    const log = [...hub.log];
    const pages = log.filter(isTree);
    assert.ok(pages.length >= Math.ceil(N / PAGE), `only ${pages.length} listing pages`);
    const firstResolve = log.findIndex(isResolve);
    const lastPage = log.lastIndexOf(pages.at(-1)!);
    assert.ok(firstResolve >= 0, "no resolve request");
    assert.ok(
      firstResolve < lastPage,
      `first resolve at #${firstResolve}, last listing page at #${lastPage}:\n${log.map((e) => e.url).join("\n")}`,
    );
    assert.deepEqual(landed(cache), []);
    const out = JSON.parse(r.stdout) as JsonOut;
    assert.equal(out.commit, commit);
    assert.equal(out.files.length, N);
    assert.equal(out.bytesTotal, totalBytes);
    assert.equal(out.bytesDownloaded, totalBytes);
    assert.ok(out.files.every((f) => f.status === "downloaded"));
    // The whole listing was recorded (huggingface_hub's offline mode reads it).
    const tree = join(repoCacheDir(cache, "model", "org/paged"), "trees", `${commit}.json`);
    assert.ok(existsSync(tree), "no trees/<commit>.json");
    const listed = JSON.parse(readFileSync(tree, "utf8")) as { files: Record<string, unknown> };
    assert.deepEqual(Object.keys(listed.files).sort(), files.map((f) => f.path).sort());
    assert.ok(existsSync(join(cache, "CACHEDIR.TAG")));
    // One resolve per file: nothing fetched twice.
    assert.equal(log.filter(isResolve).length, N);
  });

  it("--include matching nothing still exits 3 after the whole listing, nothing fetched", async () => {
    hub.clearLog();
    const cache = tempDir();
    const r = await run(["--mirror", hub.url, "--cache-dir", cache, "--include", "*.nothing"]);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stderr, /matches --include \*\.nothing \(60 files listed\)/);
    assert.equal(hub.log.filter(isResolve).length, 0);
    assert.ok(hub.log.filter(isTree).length >= Math.ceil(N / PAGE));
  });

  it("--include per page: only the matching files, from every page", async () => {
    const cache = tempDir();
    const r = await run(["--mirror", hub.url, "--cache-dir", cache, "--include", "d1/*"]);
    assert.equal(r.code, 0, show(r));
    const out = JSON.parse(r.stdout) as JsonOut;
    const want = files.filter((f) => f.path.startsWith("d1/"));
    assert.deepEqual(out.files.map((f) => f.path).sort(), want.map((f) => f.path).sort());
    assert.equal(
      out.bytesTotal,
      want.reduce((n, f) => n + f.size, 0),
    );
    assert.deepEqual(cacheProblems(repoCacheDir(cache, "model", "org/paged"), commit, want), []);
    // Not the whole repo: no trees/<commit>.json claiming it is complete.
    assert.ok(!existsSync(join(repoCacheDir(cache, "model", "org/paged"), "trees", `${commit}.json`)));
  });

  it("a listing page answering 503 once is retried; the run completes", async () => {
    hub.clearLog();
    hub.faults.length = 0;
    hub.faults.push({
      server: "hub",
      pathIncludes: "cursor=",
      times: 1,
      fault: { type: "status", status: 503 },
    });
    const cache = tempDir();
    const r = await run(["--mirror", hub.url, "--cache-dir", cache]);
    hub.faults.length = 0;
    assert.equal(r.code, 0, show(r));
    assert.ok(
      hub.log.some((e) => isTree(e) && e.status === 503),
      "the fault did not fire",
    );
    assert.deepEqual(landed(cache), []);
  });

  it("one endpoint: its listing dying mid-way stops the run (exit 6), nothing claimed complete", async () => {
    hub.clearLog();
    hub.faults.length = 0;
    // Every page after the first fails.
    hub.faults.push({
      server: "hub",
      pathIncludes: `cursor=`,
      times: 1_000,
      fault: { type: "status", status: 500 },
    });
    const cache = tempDir();
    const r = await run(["--mirror", hub.url, "--cache-dir", cache, "--retries", "1"]);
    hub.faults.length = 0;
    assert.equal(r.code, 6, show(r));
    assert.match(r.stderr, /500/);
    const snap = repoCacheDir(cache, "model", "org/paged");
    assert.ok(!existsSync(join(snap, "trees", `${commit}.json`)), "a broken listing recorded as whole");
    // The first page's files may have been fetched; each one there is whole and right.
    const there = files.filter((f) => existsSync(join(snap, "snapshots", commit, ...f.path.split("/"))));
    assert.deepEqual(cacheProblems(snap, commit, there), []);
    assert.ok(there.length < N);
  });

  it("two endpoints: the pinned one dies mid-listing; the rest is listed from the other at the pinned commit", async () => {
    hub.clearLog();
    mirror.clearLog();
    hub.faults.length = 0;
    hub.faults.push({
      server: "hub",
      pathIncludes: "cursor=",
      times: 1_000,
      fault: { type: "status", status: 500 },
    });
    const cache = tempDir();
    const r = await runInProcess(
      ["org/paged", "--json", "--mirror", `${hub.url},${mirror.url}`, "--cache-dir", cache, "--retries", "1"],
      cleanEnv(),
    );
    hub.faults.length = 0;
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(landed(cache), []);
    const out = JSON.parse(r.stdout) as JsonOut;
    assert.equal(out.commit, commit);
    assert.equal(out.files.length, N);
    assert.equal(out.bytesTotal, totalBytes);
    // The other endpoint was asked for the listing at the pinned commit, not for a revision.
    const asked = mirror.log.filter(isTree);
    assert.ok(asked.length > 0, "the other endpoint was not asked for the listing");
    assert.ok(
      asked.every((e) => e.url.includes(`/tree/${commit}`)),
      asked.map((e) => e.url).join("\n"),
    );
    assert.ok(!mirror.log.some((e) => e.url.includes("/revision/")));
  });
});

describe("readAhead: the listing is read while the pages before are planned", () => {
  async function* source(n: number, failAfter?: number): AsyncGenerator<number> {
    for (let i = 0; i < n; i++) {
      if (i === failAfter) throw new Error("page failed");
      await new Promise((r) => setTimeout(r, 5));
      yield i;
    }
  }

  it("a slow consumer gets what arrived meanwhile as one batch, all of it, in order", async () => {
    const batches: number[][] = [];
    for await (const b of readAhead(source(12))) {
      batches.push(b);
      await new Promise((r) => setTimeout(r, 40)); // planning a batch is slower than a page
    }
    assert.deepEqual(batches.flat(), [...Array(12).keys()]);
    assert.ok(batches.length < 12, `no batching: ${JSON.stringify(batches)}`);
  });

  it("a source that fails: the items before it, then its error", async () => {
    const got: number[] = [];
    await assert.rejects(async () => {
      for await (const b of readAhead(source(10, 4))) got.push(...b);
    }, /page failed/);
    assert.deepEqual(got, [0, 1, 2, 3]);
  });
});
