import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { scanCacheDir } from "@huggingface/hub";
import {
  type FakeHub,
  type FakeRepo,
  fileFromBuffer,
  makeRepo,
  pushCommit,
  randomBytesSeeded,
  startFakeHub,
  TEST_TOKEN,
} from "./fakehub/index.js";
import {
  BIN,
  cacheProblems,
  cleanEnv,
  readState,
  repoCacheDir,
  runCli,
  sha256File,
  tempDir,
  waitFor,
} from "./helpers.js";

const MiB = 1024 * 1024;

/** Every path under `dir`, relative, with a trailing "/" on folders and " -> target" on links. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const rel = relative(dir, p);
      if (e.isSymbolicLink()) out.push(`${rel} -> ${readFileSync(p) && ""}`.replace(/ -> $/, ""));
      else if (e.isDirectory()) {
        out.push(`${rel}/`);
        walk(p);
      } else out.push(rel);
    }
  };
  walk(dir);
  return out.sort();
}

/** [start, endExclusive] of a `bytes=a-b` header. */
function parseRangeHeader(h: string | undefined, size: number): [number, number] {
  if (!h) return [0, size];
  const m = /bytes=(\d+)-(\d*)/.exec(h);
  assert.ok(m, `range header ${h}`);
  return [Number(m[1]), m[2] === "" ? size : Number(m[2]) + 1];
}

describe("hfget <repo>: download into the cache", () => {
  let hub: FakeHub;
  const big1 = randomBytesSeeded(11, 64 * MiB + 123);
  const big2 = randomBytesSeeded(12, 64 * MiB + 4567);
  const repo: FakeRepo = makeRepo("org/model", [
    fileFromBuffer(".gitattributes", Buffer.from("*.safetensors filter=lfs\n")),
    fileFromBuffer("config.json", Buffer.from('{"hidden":64}\n')),
    fileFromBuffer("tokenizer/vocab.txt", Buffer.from("a\nb\nc\n")),
    fileFromBuffer("tokenizer/deep/merges.txt", Buffer.from("a b\n")),
    fileFromBuffer("model-00001.safetensors", big1, { lfs: true }),
    fileFromBuffer("shards/model-00002.safetensors", big2, { lfs: true }),
  ]);
  const commit = repo.refs.main!;
  const prCommit = pushCommit(repo, [fileFromBuffer("pr.txt", Buffer.from("from a PR\n"))], "refs/pr/1");
  const throttled = makeRepo("org/slow", [
    fileFromBuffer("big.bin", randomBytesSeeded(21, 12 * MiB), { lfs: true }),
  ]);
  const gated = makeRepo(
    "org/gated",
    [fileFromBuffer("w.bin", randomBytesSeeded(31, 3 * MiB), { lfs: true })],
    {
      gated: true,
    },
  );

  before(async () => {
    hub = await startFakeHub({ repos: [repo, throttled, gated] });
  });
  after(async () => {
    await hub.close();
  });

  it("writes the exact huggingface_hub cache tree, every hash right", async () => {
    const cache = tempDir();
    hub.clearLog();
    const r = await runCli(["org/model", "--mirror", hub.url, "--cache-dir", cache], {
      env: cleanEnv(),
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.stderr);
    const repoDir = repoCacheDir(cache, "model", "org/model");
    assert.equal(r.stdout, `${join(repoDir, "snapshots", commit)}\n`, "stdout is only the snapshot path");
    const files = repo.commits[0]!.files;
    assert.deepEqual(cacheProblems(repoDir, commit, files), []);
    assert.equal(readFileSync(join(repoDir, "refs", "main"), "utf8"), commit, "ref without trailing newline");
    const ids = files.map((f) => f.lfs?.sha256 ?? f.gitOid).sort();
    assert.deepEqual(
      tree(repoDir),
      [
        "blobs/",
        ...ids.map((id) => `blobs/${id}`),
        "refs/",
        "refs/main",
        "snapshots/",
        `snapshots/${commit}/`,
        `snapshots/${commit}/.gitattributes`,
        `snapshots/${commit}/config.json`,
        `snapshots/${commit}/model-00001.safetensors`,
        `snapshots/${commit}/shards/`,
        `snapshots/${commit}/shards/model-00002.safetensors`,
        `snapshots/${commit}/tokenizer/`,
        `snapshots/${commit}/tokenizer/deep/`,
        `snapshots/${commit}/tokenizer/deep/merges.txt`,
        `snapshots/${commit}/tokenizer/vocab.txt`,
        // the whole repo was downloaded: its file list, for huggingface_hub's offline mode
        "trees/",
        `trees/${commit}.json`,
      ].sort(),
    );
    // LFS bytes come from the CDN in ranges; the token-less hub answered resolve once per file.
    const cdn = hub.log.filter((e) => e.server === "cdn");
    assert.ok(cdn.length >= 8, `64 MiB files in 16 MiB chunks: ${cdn.length} CDN requests`);
    assert.ok(cdn.every((e) => e.range !== undefined));
    const resolves = hub.log.filter((e) => e.server === "hub" && e.url.includes("/resolve/"));
    assert.equal(resolves.length, files.length, "one resolve per file");
    assert.ok(
      hub.log.every((e) => e.status < 400),
      "no failed request",
    );

    // A real client reads the cache.
    const info = await scanCacheDir(cache);
    const cached = info.repos.find((x) => x.id.name === "org/model");
    assert.ok(cached, JSON.stringify(info.warnings.map((w) => w.message)));
    const rev = cached.revisions.find((x) => x.commitOid === commit);
    assert.ok(rev);
    assert.deepEqual(rev.refs, ["main"]);
    // huggingface.js's scanSnapshotDir skips sub-folders (it does not recurse), so it can only
    // report the top-level files; cacheProblems above checked the nested ones link for link.
    assert.deepEqual(
      rev.files.map((f) => [relative(rev.path, f.path), f.blob.size]).sort(),
      files
        .filter((f) => !f.path.includes("/"))
        .map((f) => [f.path, f.size])
        .sort(),
    );
    assert.equal(rev.files.length, 3);

    // A second run fetches nothing and still prints the path.
    hub.clearLog();
    const again = await runCli(["org/model", "--mirror", hub.url, "--cache-dir", cache, "--json"], {
      env: cleanEnv(),
      timeoutMs: 30_000,
    });
    assert.equal(again.code, 0, again.stderr);
    const summary = JSON.parse(again.stdout) as { files: { status: string }[]; bytesDownloaded: number };
    assert.ok(summary.files.every((f) => f.status === "cached"));
    assert.equal(summary.bytesDownloaded, 0);
    assert.equal(hub.log.filter((e) => e.url.includes("/resolve/") || e.server === "cdn").length, 0);
  });

  it("writes nested refs for refs/pr/N", async () => {
    const cache = tempDir();
    const r = await runCli(
      ["org/model", "pr.txt", "--revision", "refs/pr/1", "--mirror", hub.url, "--cache-dir", cache],
      {
        env: cleanEnv(),
        timeoutMs: 30_000,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    const repoDir = repoCacheDir(cache, "model", "org/model");
    assert.equal(readFileSync(join(repoDir, "refs", "refs", "pr", "1"), "utf8"), prCommit);
    assert.deepEqual(cacheProblems(repoDir, prCommit, repo.commits[1]!.files), []);
  });

  it("downloads only the named files, or what --include/--exclude select", async () => {
    const cache = tempDir();
    const r = await runCli(
      [
        "org/model",
        "config.json",
        "tokenizer/vocab.txt",
        "--mirror",
        hub.url,
        "--cache-dir",
        cache,
        "--json",
      ],
      { env: cleanEnv(), timeoutMs: 30_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    const paths = (JSON.parse(r.stdout) as { files: { path: string }[] }).files.map((f) => f.path).sort();
    assert.deepEqual(paths, ["config.json", "tokenizer/vocab.txt"]);
    const g = await runCli(
      [
        "org/model",
        "--include",
        "*.txt",
        "--exclude",
        "*deep*",
        "--mirror",
        hub.url,
        "--cache-dir",
        cache,
        "--json",
      ],
      { env: cleanEnv(), timeoutMs: 30_000 },
    );
    assert.equal(g.code, 0, g.stderr);
    const gp = (JSON.parse(g.stdout) as { files: { path: string }[] }).files.map((f) => f.path).sort();
    assert.deepEqual(gp, ["tokenizer/vocab.txt"]);
  });

  it("--dry-run lists the plan and writes nothing", async () => {
    const cache = tempDir();
    const r = await runCli(["org/model", "--dry-run", "--json", "--mirror", hub.url, "--cache-dir", cache], {
      env: cleanEnv(),
      timeoutMs: 30_000,
    });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { dryRun: boolean; files: { status: string }[] };
    assert.equal(out.dryRun, true);
    assert.equal(out.files.length, 6);
    assert.ok(out.files.every((f) => f.status === "planned"));
    assert.deepEqual(readdirSync(cache), []);
  });

  it("--local-dir writes plain files and huggingface_hub's metadata", async () => {
    const dir = tempDir();
    const r = await runCli(["org/model", "--local-dir", dir, "--mirror", hub.url, "--quiet"], {
      env: cleanEnv(),
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${dir}\n`);
    assert.equal(r.stderr, "", "--quiet prints nothing on success");
    for (const f of repo.commits[0]!.files) {
      const p = join(dir, ...f.path.split("/"));
      assert.ok(statSync(p).isFile(), f.path);
      assert.equal(statSync(p).size, f.size);
      const meta = readFileSync(
        join(dir, ".cache", "huggingface", "download", `${f.path}.metadata`),
        "utf8",
      ).split("\n");
      assert.equal(meta[0], commit);
      assert.equal(meta[1], f.lfs?.sha256 ?? f.gitOid);
      assert.ok(Number(meta[2]) * 1000 >= statSync(p).mtimeMs - 1000, "timestamp not older than the file");
    }
    assert.equal(sha256File(join(dir, "model-00001.safetensors")), repo.commits[0]!.files[4]!.lfs!.sha256);
    const leftovers = tree(join(dir, ".cache")).filter(
      (p) => p.includes("incomplete") || p.includes("hfget-partial") || p.endsWith(".lock/"),
    );
    assert.deepEqual(leftovers, []);
    hub.clearLog();
    const again = await runCli(["org/model", "--local-dir", dir, "--mirror", hub.url, "--quiet"], {
      env: cleanEnv(),
      timeoutMs: 30_000,
    });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(hub.log.filter((e) => e.server === "cdn" || e.url.includes("/resolve/")).length, 0);
  });

  it("prints sparse plain lines when stderr is not a terminal", async () => {
    const cache = tempDir();
    const r = await runCli(["org/model", "--mirror", hub.url, "--cache-dir", cache], {
      env: cleanEnv(),
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.trimEnd().split("\n");
    // resolved + planned + one per file + at most a few periodic lines + the final line
    assert.ok(lines.length <= 6 + 3 + 4, `too chatty for CI logs:\n${r.stderr}`);
    assert.ok(
      lines.every((l) => l.startsWith("hfget: ")),
      r.stderr,
    );
    // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for escape codes is the point
    assert.ok(!/[\r\u001b]/.test(r.stderr), "no carriage returns or escape codes");
    assert.equal(lines.filter((l) => l.startsWith("hfget: done ")).length, 6);
    assert.match(lines.at(-1)!, /finished 6\/6 files/);
  });

  it("needs the token for a gated repo, and never sends it to the CDN", async () => {
    const cache = tempDir();
    const denied = await runCli(["org/gated", "--mirror", hub.url, "--cache-dir", cache], {
      env: cleanEnv(),
      timeoutMs: 30_000,
    });
    assert.equal(denied.code, 4);
    assert.match(denied.stderr, /gated/);
    assert.ok(
      !existsSync(join(repoCacheDir(cache, "model", "org/gated"), "snapshots", gated.refs.main!, "w.bin")),
    );
    hub.clearLog();
    const ok = await runCli(["org/gated", "--mirror", hub.url, "--cache-dir", cache, "--chunk-size", "1M"], {
      env: cleanEnv({ HF_TOKEN: TEST_TOKEN }),
      timeoutMs: 30_000,
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(hub.log.some((e) => e.server === "hub" && e.authorization === "token"));
    const cdn = hub.log.filter((e) => e.server === "cdn");
    assert.ok(cdn.length >= 3);
    assert.ok(
      cdn.every((e) => e.authorization === "none"),
      "no Authorization to the CDN origin",
    );
    assert.ok(!ok.stdout.includes(TEST_TOKEN) && !ok.stderr.includes(TEST_TOKEN));
  });

  it("resumes after SIGKILL without fetching a finished range again", async () => {
    const cache = tempDir();
    const file = throttled.commits[0]!.files[0]!;
    const sha = file.lfs!.sha256;
    const statePath = join(repoCacheDir(cache, "model", "org/slow"), "blobs", `${sha}.hfget-partial.json`);
    // 4 connections x 1 MB/s: the 12 MiB file takes ~3 s; kill it once the state shows >= 40%.
    hub.faults.push({ server: "cdn", fault: { type: "throttle", bytesPerSec: 1_000_000 } });
    let done: [number, number][] = [];
    const first = await runCli(
      ["org/slow", "--mirror", hub.url, "--cache-dir", cache, "--connections", "4", "--chunk-size", "1M"],
      {
        env: cleanEnv(),
        timeoutMs: 30_000,
        onSpawn: (child) => {
          void waitFor(
            () => {
              try {
                const st = JSON.parse(readFileSync(statePath, "utf8")) as { done: [number, number][] };
                const bytes = st.done.reduce((n, [s, e]) => n + e - s, 0);
                if (bytes >= 0.4 * file.size) {
                  child.kill("SIGKILL");
                  return true;
                }
              } catch {
                // not written yet
              }
              return false;
            },
            20_000,
            "resume state at 40%",
          ).catch(() => child.kill("SIGKILL"));
        },
      },
    );
    hub.faults.length = 0;
    assert.equal(first.signal, "SIGKILL", `first run should have been killed: ${first.stderr}`);
    // What the rerun trusts: the JSON and its journal.
    done = readState(statePath)?.done ?? [];
    const doneBytes = done.reduce((n, [s, e]) => n + e - s, 0);
    assert.ok(doneBytes > 0 && doneBytes < file.size, `state records ${doneBytes} bytes`);

    hub.clearLog();
    const second = await runCli(
      ["org/slow", "--mirror", hub.url, "--cache-dir", cache, "--chunk-size", "1M"],
      {
        env: cleanEnv(),
        timeoutMs: 30_000,
      },
    );
    assert.equal(second.code, 0, second.stderr);
    const fetched = hub.log
      .filter((e) => e.server === "cdn")
      .map((e) => parseRangeHeader(e.range, file.size));
    assert.ok(fetched.length > 0);
    for (const [s, e] of fetched) {
      for (const [ds, de] of done) {
        assert.ok(e <= ds || s >= de, `range ${s}-${e} overlaps finished ${ds}-${de}`);
      }
    }
    const refetched = fetched.reduce((n, [s, e]) => n + e - s, 0);
    assert.ok(
      refetched <= file.size - doneBytes,
      `refetched ${refetched} > missing ${file.size - doneBytes}`,
    );
    const repoDir = repoCacheDir(cache, "model", "org/slow");
    assert.deepEqual(cacheProblems(repoDir, throttled.refs.main!, [file]), []);
    assert.ok(!existsSync(statePath), "state removed after commit");
  });
  it("stops on SIGTERM with exit 130, keeps the resume state, and a rerun completes", async () => {
    const cache = tempDir();
    const file = throttled.commits[0]!.files[0]!;
    const blobs = join(repoCacheDir(cache, "model", "org/slow"), "blobs");
    const statePath = join(blobs, `${file.lfs!.sha256}.hfget-partial.json`);
    hub.faults.push({ server: "cdn", fault: { type: "throttle", bytesPerSec: 1_000_000 } });
    const r = await runCli(
      ["org/slow", "--mirror", hub.url, "--cache-dir", cache, "--connections", "4", "--chunk-size", "1M"],
      {
        env: cleanEnv(),
        timeoutMs: 30_000,
        onSpawn: (child) => {
          void waitFor(() => existsSync(statePath), 20_000, "resume state")
            .then(() => new Promise((res) => setTimeout(res, 300)))
            .finally(() => child.kill("SIGTERM"));
        },
      },
    );
    hub.faults.length = 0;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /interrupted.*rerun/);
    assert.equal(r.stdout, "");
    const st = JSON.parse(readFileSync(statePath, "utf8")) as { done: [number, number][] };
    assert.ok(st.done.length > 0, "state flushed on the way out");
    assert.ok(!existsSync(join(blobs, file.lfs!.sha256)), "nothing committed");
    const again = await runCli(["org/slow", "--mirror", hub.url, "--cache-dir", cache], {
      env: cleanEnv(),
      timeoutMs: 30_000,
    });
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(
      cacheProblems(repoCacheDir(cache, "model", "org/slow"), throttled.refs.main!, [file]),
      [],
    );
  });

  it("throws away a file whose hash is wrong and fetches it once more", async () => {
    const cache = tempDir();
    hub.faults.push({ server: "cdn", times: 1, fault: { type: "corrupt" } });
    const r = await runCli(["org/gated", "--mirror", hub.url, "--cache-dir", cache, "--token", TEST_TOKEN], {
      env: cleanEnv(),
      timeoutMs: 30_000,
    });
    hub.faults.length = 0;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /hash mismatch, downloading it again/);
    assert.deepEqual(
      cacheProblems(repoCacheDir(cache, "model", "org/gated"), gated.refs.main!, gated.commits[0]!.files),
      [],
    );
  });

  it("draws progress bars on a terminal", async () => {
    const cache = tempDir();
    // `script` (util-linux) gives the process a pseudo-terminal. Spawned asynchronously: the fake
    // hub lives in this process and must keep answering.
    const cmd = `${process.execPath} ${BIN} org/model --mirror ${hub.url} --cache-dir ${cache}`;
    const child = spawn("script", ["-qfec", cmd, "/dev/null"], {
      env: cleanEnv({ FORCE_COLOR: "0", TERM: "xterm" }) as NodeJS.ProcessEnv,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const code = await new Promise<number | null>((res) => child.on("close", res));
    clearTimeout(timer);
    assert.equal(code, 0, out);
    assert.match(out, /█/, "a bar was drawn");
    assert.match(out, /total \d\/6 files/, "the overall bar counts files");
    // The bars are cleared at the end; the summary line that replaces them says the run completed.
    assert.match(out, /finished 6\/6 files \(0 already present\), 134 MB in /, "and ends with the summary");
    assert.match(out, /snapshots\//, "the path is printed too");
  });
});

describe("a blob already under another repo of the cache is reused, not fetched", () => {
  const weights = randomBytesSeeded(111, 3 * MiB + 5);
  const one = makeRepo("org/one", [
    fileFromBuffer("config.json", Buffer.from('{"one":1}')),
    fileFromBuffer("w.safetensors", weights, { lfs: true }),
  ]);
  const two = makeRepo("org/two", [
    fileFromBuffer("config.json", Buffer.from('{"two":2}')),
    fileFromBuffer("w.safetensors", weights, { lfs: true }),
  ]);
  const sha = one.commits[0]!.files.find((f) => f.path === "w.safetensors")!.lfs!.sha256;
  let hub: FakeHub;
  before(async () => {
    hub = await startFakeHub({ repos: [one, two] });
  });
  after(async () => {
    await hub.close();
  });
  /** Body bytes of the weights sent by either server (the CDN URL names the sha256). */
  const weightBytes = () =>
    hub.log
      .filter((e) => e.url.includes(sha) || e.url.includes("w.safetensors"))
      .reduce((n, e) => n + e.bytesSent, 0);
  const get = (repo: string, cache: string, extra: string[] = []) =>
    runCli([repo, "--mirror", hub.url, "--cache-dir", cache, "--quiet", "--json", ...extra], {
      env: cleanEnv(),
    });

  it("the second repo hard-links the verified blob: dry-run says reuse, 0 bytes of it from the hub", async () => {
    const cache = tempDir();
    const r1 = await get("org/one", cache);
    assert.equal(r1.code, 0, r1.stderr);
    hub.clearLog();
    const dry = await runCli(["org/two", "--mirror", hub.url, "--cache-dir", cache, "--dry-run"], {
      env: cleanEnv(),
    });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stderr, /^reuse {2}w\.safetensors$/m);
    assert.match(dry.stderr, /1 reuse/);
    const r2 = await get("org/two", cache);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(weightBytes(), 0, "no byte of the weights from the hub or the CDN");
    const out = JSON.parse(r2.stdout) as { bytesToFetch: number; files: { path: string; action: string }[] };
    assert.equal(out.files.find((f) => f.path === "w.safetensors")?.action, "reuse");
    assert.equal(out.bytesToFetch, Buffer.from('{"two":2}').length);
    const d1 = repoCacheDir(cache, "model", "org/one");
    const d2 = repoCacheDir(cache, "model", "org/two");
    assert.deepEqual(cacheProblems(d2, two.commits[0]!.sha, two.commits[0]!.files), []);
    assert.deepEqual(cacheProblems(d1, one.commits[0]!.sha, one.commits[0]!.files), []);
    const b1 = statSync(join(d1, "blobs", sha));
    const b2 = statSync(join(d2, "blobs", sha));
    assert.equal(b1.ino, b2.ino, "one inode: a hard link");
    assert.equal(sha256File(join(d2, "snapshots", two.commits[0]!.sha, "w.safetensors")), sha);
    assert.deepEqual(
      readdirSync(join(d2, "blobs")).filter((n) => n.includes(".")),
      [],
      "no temp file left",
    );
  });

  it("a candidate that does not hash to its name is not reused: fetched, and left where it was", async () => {
    const cache = tempDir();
    const r1 = await get("org/one", cache);
    assert.equal(r1.code, 0, r1.stderr);
    const d1 = repoCacheDir(cache, "model", "org/one");
    const bad = Buffer.from(weights);
    bad[1000]! ^= 0x01;
    writeFileSync(join(d1, "blobs", sha), bad); // same size, wrong bytes
    hub.clearLog();
    const r2 = await get("org/two", cache);
    assert.equal(r2.code, 0, r2.stderr);
    assert.ok(weightBytes() >= weights.length, `the weights were fetched (${weightBytes()} bytes)`);
    const d2 = repoCacheDir(cache, "model", "org/two");
    assert.deepEqual(cacheProblems(d2, two.commits[0]!.sha, two.commits[0]!.files), []);
    assert.notEqual(statSync(join(d1, "blobs", sha)).ino, statSync(join(d2, "blobs", sha)).ino);
    assert.equal(readFileSync(join(d1, "blobs", sha))[1000], bad[1000], "the bad copy is not touched");
  });
});
