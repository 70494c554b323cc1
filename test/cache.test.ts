import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileFromBuffer, makeRepo, pushCommit, randomBytesSeeded } from "./fakehub/index.js";
import { cleanEnv, ROOT, repoCacheDir, runCli, show, tempDir, withHub } from "./helpers.js";

// ../shared beside the repo; a git worktree under wt/ finds it one level further up.
const HF_PYTHON =
  [
    join(ROOT, "..", "shared", "tools", "hf-python"),
    join(ROOT, "..", "..", "shared", "tools", "hf-python"),
  ].find((p) => existsSync(p)) ?? join(ROOT, "..", "shared", "tools", "hf-python");
const haveHfPython = existsSync(HF_PYTHON);
function skipWithoutPython(): string | false {
  if (haveHfPython) return false;
  if (process.env.CI === "true") throw new Error(`CI=true but ${HF_PYTHON} is missing`);
  return `huggingface_hub interop skipped: ${HF_PYTHON} not found (clone ../shared to run it)`;
}

function hfPython(version: "1.28" | "0.36", code: string, env: Record<string, string | undefined>) {
  const r = spawnSync(HF_PYTHON, ["--hh", version, "-c", code], {
    env: { ...env, HF_HUB_DISABLE_PROGRESS_BARS: "1" } as NodeJS.ProcessEnv,
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const SCAN = `
import json, sys
from huggingface_hub import scan_cache_dir
info = scan_cache_dir(sys.argv[1] if len(sys.argv) > 1 else None)
print(json.dumps({
  "size": info.size_on_disk,
  "warnings": [str(w) for w in info.warnings],
  "repos": sorted([{"id": r.repo_id, "type": r.repo_type, "size": r.size_on_disk, "nb_files": r.nb_files,
    "revisions": sorted([{"commit": v.commit_hash, "size": v.size_on_disk, "refs": sorted(v.refs)} for v in r.revisions], key=lambda v: v["commit"])}
    for r in info.repos], key=lambda r: r["id"]),
}))
`;

function scanWith(version: "1.28" | "0.36", cache: string) {
  const r = hfPython(version, `import sys; sys.argv=["x", ${JSON.stringify(cache)}]\n${SCAN}`, cleanEnv());
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as {
    size: number;
    warnings: string[];
    repos: {
      id: string;
      size: number;
      nb_files: number;
      revisions: { commit: string; size: number; refs: string[] }[];
    }[];
  };
}

// Two repos; repo A has two commits sharing one LFS blob (counted once), repo B shares nothing.
const shared = randomBytesSeeded(7, 300_000);
function repos() {
  const a = makeRepo("org/alpha", [
    fileFromBuffer("config.json", Buffer.from('{"a":1}')),
    fileFromBuffer("model.safetensors", shared, { lfs: true }),
  ]);
  const first = a.commits[0]!.sha;
  pushCommit(a, [
    fileFromBuffer("config.json", Buffer.from('{"a":2}')),
    fileFromBuffer("model.safetensors", shared, { lfs: true }),
  ]);
  a.refs.v1 = first;
  const b = makeRepo("org/beta", [
    fileFromBuffer("weights.bin", randomBytesSeeded(8, 200_000), { lfs: true }),
    fileFromBuffer("sub/readme.md", Buffer.from("hello")),
  ]);
  return [a, b];
}

async function filledCache(hubUrl: string) {
  const cache = tempDir("hfget-cache-");
  const env = cleanEnv({ HF_ENDPOINT: hubUrl, HF_HUB_CACHE: cache });
  for (const args of [["org/alpha"], ["org/alpha", "--revision", "v1"], ["org/beta"]]) {
    const r = await runCli([...args, "--quiet"], { env });
    assert.equal(r.code, 0, show(r));
  }
  return { cache, env };
}

describe("hfget cache ls", () => {
  it("agrees with scan_cache_dir (1.28 and 0.36): shared blobs once, revisions, refs", async (t) => {
    const skip = skipWithoutPython();
    await withHub(repos(), {}, async (hub) => {
      const { cache, env } = await filledCache(hub.url);
      const r = await runCli(["cache", "ls", "--json"], { env });
      assert.equal(r.code, 0, show(r));
      const rows = JSON.parse(r.stdout) as { id: string; repo_id: string; size: string; refs: string[] }[];
      assert.deepEqual(
        rows.map((x) => [x.id, x.refs]),
        [
          ["model/org/alpha", ["main", "v1"]],
          ["model/org/beta", ["main"]],
        ],
      );
      const revs = await runCli(["cache", "ls", "--revisions", "--json"], { env });
      const revRows = JSON.parse(revs.stdout) as { revision: string; size: string }[];
      assert.equal(revRows.length, 3, revs.stdout);
      const human = await runCli(["cache", "ls"], { env });
      assert.match(human.stdout, /^ID\s+SIZE LAST_ACCESSED\s+LAST_MODIFIED\s+REFS\s*\n-+ -+/);
      assert.match(
        human.stdout,
        /\nFound 2 repo\(s\) for a total of 3 revision\(s\) and [\d.]+K on disk\.\n$/,
      );
      if (skip) {
        t.diagnostic(skip);
        return;
      }
      // Byte for byte what `hf cache ls` (1.28) prints, human and JSON. Blob times 3 days back, so
      // "N seconds ago" cannot differ between the two runs on a loaded machine.
      const past = Date.now() / 1000 - 3 * 86400;
      for (const id of ["org/alpha", "org/beta"]) {
        const blobs = join(repoCacheDir(cache, "model", id), "blobs");
        for (const n of readdirSync(blobs)) utimesSync(join(blobs, n), past, past);
      }
      for (const args of [[], ["--revisions"], ["--format", "json"], ["--revisions", "--format", "json"]]) {
        const hf = hfPython(
          "1.28",
          `import sys; from huggingface_hub.cli.hf import main; sys.argv=["hf","cache","ls","--cache-dir",${JSON.stringify(cache)},*${JSON.stringify(args)}]; main()`,
          cleanEnv(),
        );
        assert.equal(hf.code, 0, hf.stderr);
        const ours = await runCli(
          [
            "cache",
            "ls",
            ...args.map((a) => (a === "--format" ? "" : a === "json" ? "--json" : a)).filter(Boolean),
          ],
          { env },
        );
        assert.equal(
          ours.stdout,
          hf.stdout.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g"), ""),
          `hf cache ls ${args.join(" ")}`,
        );
      }
      // The library's numbers (bytes, not the rounded strings) against huggingface_hub's.
      const { scanCache } = await import("../src/cache/scan.js");
      const mine = await scanCache(cache);
      for (const v of ["1.28", "0.36"] as const) {
        const py = scanWith(v, cache);
        assert.equal(mine.sizeOnDisk, py.size, `total size vs ${v}`);
        const own = mine.repos
          .map((x) => ({
            id: x.id,
            size: x.sizeOnDisk,
            nb_files: x.nbFiles,
            revisions: x.revisions
              .map((y) => ({ commit: y.commit, size: y.sizeOnDisk, refs: [...y.refs] }))
              .sort((a, b) => (a.commit < b.commit ? -1 : 1)),
          }))
          .sort((a, b) => (a.id < b.id ? -1 : 1));
        assert.deepEqual(
          own,
          py.repos.map((x) => ({ id: x.id, size: x.size, nb_files: x.nb_files, revisions: x.revisions })),
          `vs ${v}`,
        );
        // 1.28 skips CACHEDIR.TAG (it writes one itself); 0.36 reports it as "not a directory".
        const warnings = py.warnings.filter((w) => !(v === "0.36" && w.includes("CACHEDIR.TAG")));
        assert.deepEqual(warnings, [], `scan warnings with ${v}`);
      }
      // The shared LFS blob is counted once for alpha: its size < the sum of its two revisions.
      const alpha = mine.repos.find((x) => x.id === "org/alpha")!;
      assert.ok(alpha.sizeOnDisk < alpha.revisions.reduce((n, x) => n + x.sizeOnDisk, 0));
    });
  });
});

describe("hfget cache verify", () => {
  it("finds a flipped byte (exit 5), --fix quarantines it, a rerun refetches, then exit 0", async () => {
    await withHub(repos(), {}, async (hub) => {
      const { cache, env } = await filledCache(hub.url);
      const ok = await runCli(["cache", "verify"], { env });
      assert.equal(ok.code, 0, show(ok));
      assert.match(ok.stderr, /checked 5 blob\(s\)/);
      const blobs = join(repoCacheDir(cache, "model", "org/beta"), "blobs");
      const lfsBlob = readdirSync(blobs).find((n) => n.length === 64)!;
      const bytes = readFileSync(join(blobs, lfsBlob));
      bytes[1234] = bytes[1234]! ^ 1;
      writeFileSync(join(blobs, lfsBlob), bytes);
      writeFileSync(join(blobs, "junk"), "x");
      const bad = await runCli(["cache", "verify"], { env });
      assert.equal(bad.code, 5, show(bad));
      assert.match(
        bad.stdout,
        new RegExp(`^corrupt: models--org--beta/blobs/${lfsBlob}: sha256 is [0-9a-f]{64}$`, "m"),
      );
      assert.match(bad.stdout, /^stray: models--org--beta\/blobs\/junk: /m);
      // Scoped to the other repo: nothing wrong there.
      const alpha = await runCli(["cache", "verify", "org/alpha", "--revision", "v1"], { env });
      assert.equal(alpha.code, 0, show(alpha));
      rmSync(join(blobs, "junk"));
      const fix = await runCli(["cache", "verify", "org/beta", "--fix"], { env });
      assert.equal(fix.code, 5, show(fix));
      assert.match(fix.stdout, /moved to \.hfget-quarantine\/models--org--beta\//);
      assert.equal(existsSync(join(blobs, lfsBlob)), false);
      const again = await runCli(["org/beta", "--quiet"], { env });
      assert.equal(again.code, 0, show(again));
      const clean = await runCli(["cache", "verify"], { env });
      assert.equal(clean.code, 0, show(clean));
    });
  });
});

describe("cache verify: hashing in worker threads", () => {
  it("finds the same problems, in the same order, on 2 threads as on the main thread", async () => {
    const { verifyCache } = await import("../src/cache/verify-cache.js");
    const { createHash } = await import("node:crypto");
    const { mkdirSync } = await import("node:fs");
    const cache = tempDir("hfget-verify-threads-");
    const corrupt: string[] = [];
    let total = 0;
    for (const repo of ["models--org--a", "models--org--b", "datasets--org--c"]) {
      const blobs = join(cache, repo, "blobs");
      mkdirSync(blobs, { recursive: true });
      for (let i = 0; i < 6; i++) {
        const bytes = randomBytesSeeded(500 + i + repo.length, 20_000 + i * 70_001);
        const git = i % 3 === 2;
        const name = git
          ? createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex")
          : createHash("sha256").update(bytes).digest("hex");
        if (i % 2 === 1) {
          bytes[bytes.length - 1]! ^= 1;
          corrupt.push(`${repo}/blobs/${name}`);
        }
        writeFileSync(join(blobs, name), bytes);
        total += bytes.length;
      }
    }
    // toHash order: folders as listed (sorted), then blob names sorted
    const expected = [...corrupt].sort((x, y) => {
      const [fx, fy] = [x.split("/")[0]!, y.split("/")[0]!];
      return fx === fy ? (x < y ? -1 : 1) : fx < fy ? -1 : 1;
    });
    for (const threads of [0, 2]) {
      const seen: string[] = [];
      let bytes = 0;
      const r = await verifyCache(cache, {
        threads,
        onEvent: (e) => {
          if (e.type === "verify-problem") seen.push(e.problem.path);
          else if (e.type === "verify-bytes") bytes += e.bytes;
        },
      });
      assert.equal(r.blobs, 18, `threads ${threads}`);
      assert.equal(r.bytes, total);
      assert.equal(bytes, total, `progress counts every byte (threads ${threads})`);
      assert.deepEqual(
        r.problems.map((p) => p.path),
        expected,
        `threads ${threads}`,
      );
      assert.deepEqual(seen, expected, `events in the same order (threads ${threads})`);
      assert.ok(r.problems.every((p) => p.kind === "corrupt"));
    }
  });
});

describe("offline (HF_HUB_OFFLINE=1)", () => {
  it("answers like huggingface_hub 1.28: missing named file, incomplete snapshot per trees/, complete ones", async (t) => {
    const skip = skipWithoutPython();
    await withHub(repos(), {}, async (hub) => {
      const { cache, env } = await filledCache(hub.url);
      const repoDir = repoCacheDir(cache, "model", "org/beta");
      const off = { ...env, HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://127.0.0.1:9" };
      assert.equal(existsSync(join(cache, "CACHEDIR.TAG")), true);
      const commit = readFileSync(join(repoDir, "refs", "main"), "utf8");
      const tree = JSON.parse(readFileSync(join(repoDir, "trees", `${commit}.json`), "utf8"));
      assert.equal(tree.format_version, 1);
      assert.deepEqual(Object.keys(tree.files).sort(), ["sub/readme.md", "weights.bin"]);

      const full = await runCli(["org/beta", "--quiet"], { env: off });
      assert.equal(full.code, 0, show(full));
      assert.equal(full.stdout.trim(), join(repoDir, "snapshots", commit));
      const named = await runCli(["org/beta", "nope.txt"], { env: off });
      assert.equal(named.code, 3, show(named));
      assert.match(named.stderr, /nope\.txt/);
      const ls = await runCli(["ls", "org/beta"], { env: off });
      assert.equal(ls.code, 0, show(ls));
      assert.match(ls.stdout, /weights\.bin .* LFS {2}cached/);

      rmSync(join(repoDir, "snapshots", commit, "sub", "readme.md"));
      const part = await runCli(["org/beta"], { env: off });
      assert.equal(part.code, 3, show(part));
      assert.match(part.stderr, /incomplete.*1 file\(s\) missing \(sub\/readme\.md\)/);
      const partInc = await runCli(["org/beta", "--include", "*.bin", "--quiet"], { env: off });
      assert.equal(partInc.code, 0, show(partInc));
      if (skip) {
        t.diagnostic(skip);
        return;
      }
      const py = (code: string) =>
        hfPython("1.28", `from huggingface_hub import snapshot_download\n${code}`, {
          ...off,
          HF_HUB_CACHE: cache,
        });
      const pyPart = py(`snapshot_download("org/beta")`);
      assert.notEqual(pyPart.code, 0, "huggingface_hub 1.28 also refuses the incomplete snapshot");
      assert.match(pyPart.stderr, /IncompleteSnapshotError|incomplete/);
      const pyInc = py(`print(snapshot_download("org/beta", allow_patterns=["*.bin"]))`);
      assert.equal(pyInc.code, 0, pyInc.stderr);
      assert.equal(pyInc.stdout.trim(), partInc.stdout.trim());
    });
  });

  it("--local-dir offline: a complete dir is accepted, an incomplete one names what is missing", async () => {
    await withHub(repos(), {}, async (hub) => {
      const local = tempDir("hfget-local-");
      const env = cleanEnv({ HF_ENDPOINT: hub.url });
      const r = await runCli(["org/beta", "--local-dir", local, "--quiet"], { env });
      assert.equal(r.code, 0, show(r));
      const off = { ...env, HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://127.0.0.1:9" };
      const ok = await runCli(["org/beta", "--local-dir", local, "--quiet"], { env: off });
      assert.equal(ok.code, 0, show(ok));
      assert.equal(ok.stdout.trim(), local);
      rmSync(join(local, "weights.bin"));
      const bad = await runCli(["org/beta", "--local-dir", local], { env: off });
      assert.equal(bad.code, 3, show(bad));
      assert.match(bad.stderr, /weights\.bin/);
    });
  });
});
