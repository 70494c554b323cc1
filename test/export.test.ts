import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import * as tar from "tar-stream";
import { type FakeHub, fileFromBuffer, makeRepo, randomBytesSeeded } from "./fakehub/index.js";
import {
  BIN,
  cacheProblems,
  cleanEnv,
  gitSha1File,
  repoCacheDir,
  runCli,
  sha256File,
  show,
  tempDir,
  walk,
  withHub,
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

const SCAN_WARNINGS = `
import json, sys
from huggingface_hub import scan_cache_dir
info = scan_cache_dir(sys.argv[1])
print(json.dumps({"warnings": [str(w) for w in info.warnings], "repos": [r.repo_id for r in info.repos]}))
`;

/** scan_cache_dir in both versions: no warnings (0.36's about CACHEDIR.TAG ignored), the repo listed. */
async function assertScanClean(cache: string, repoId: string): Promise<void> {
  for (const v of HH_VERSIONS) {
    const r = await runPython(v, SCAN_WARNINGS, [cache], { env: cleanEnv() });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { warnings: string[]; repos: string[] };
    assert.deepEqual(
      out.warnings.filter((w) => !w.includes("CACHEDIR.TAG")),
      [],
      `huggingface_hub ${v}`,
    );
    assert.deepEqual(out.repos, [repoId], `huggingface_hub ${v}`);
  }
}

/** Both versions load the snapshot (and `file`, if given) offline (HF_HUB_OFFLINE=1). */
async function assertLoadsOffline(hub: FakeHub, cache: string, repoId: string, file?: string): Promise<void> {
  const env = { ...pyEnv(hub, cache), HF_HUB_OFFLINE: "1" };
  const args =
    file === undefined ? [{ repo_id: repoId }] : [{ repo_id: repoId }, { repo_id: repoId, filename: file }];
  for (const v of HH_VERSIONS) {
    for (const arg of args) {
      const r = await runPython(v, PY_DOWNLOAD, [JSON.stringify(arg)], { env });
      assert.equal(r.code, 0, `huggingface_hub ${v} offline ${JSON.stringify(arg)}: ${r.stderr}`);
      assert.match(r.stdout, /RESULT /);
    }
  }
}

const weights = randomBytesSeeded(31, 300_000);
const extra = randomBytesSeeded(32, 40_000);
function repo() {
  return makeRepo("org/snap", [
    fileFromBuffer("config.json", Buffer.from('{"a":1}')),
    fileFromBuffer("model.safetensors", weights, { lfs: true }),
    fileFromBuffer("sub/extra.bin", extra, { lfs: true }),
    fileFromBuffer("sub/same.json", Buffer.from('{"a":1}')),
  ]);
}

async function hfgetDownload(hub: FakeHub, cache: string): Promise<void> {
  const r = await runCli(["org/snap", "--quiet", "--cache-dir", cache], {
    env: cleanEnv({ HF_ENDPOINT: hub.url }),
  });
  assert.equal(r.code, 0, show(r));
}

/** Runs hfget with no hub at all (export/import are offline). */
function hf(args: string[]) {
  return runCli(args, { env: cleanEnv({ HF_ENDPOINT: "http://127.0.0.1:9" }) });
}

function assertNothingCommitted(cache: string): void {
  const dir = repoCacheDir(cache, "model", "org/snap");
  assert.ok(!existsSync(dir), `${dir} is left: ${existsSync(dir) ? walk(dir).join(", ") : ""}`);
}

describe("hfget export / import", { skip: skipWithoutPython() }, () => {
  it("round-trips an hfget download into a fresh cache that huggingface_hub 1.28 and 0.36 load offline", async () => {
    const r0 = repo();
    await withHub([r0], {}, async (hub) => {
      const src = tempDir("hfget-exp-src-");
      await hfgetDownload(hub, src);
      const archive = join(tempDir("hfget-exp-tar-"), "snap.tar");
      const ex = await hf(["export", "org/snap", "--cache-dir", src, "--to", archive]);
      assert.equal(ex.code, 0, show(ex));
      assert.match(ex.stderr, /Exported org\/snap@[0-9a-f]{40}: 4 files, 3 blobs/);
      const dst = tempDir("hfget-exp-dst-");
      const im = await hf(["import", archive, "--cache-dir", dst]);
      assert.equal(im.code, 0, show(im));
      assert.match(im.stderr, /Imported org\/snap@[0-9a-f]{40}: 4 files, 3 blobs, .* verified, refs: main/);
      const commit = r0.commits[0]!.sha;
      const dir = repoCacheDir(dst, "model", "org/snap");
      assert.deepEqual(cacheProblems(dir, commit, r0.commits[0]!.files), []);
      assert.equal(readFileSync(join(dir, "refs", "main"), "utf8"), commit);
      assert.ok(existsSync(join(dir, "trees", `${commit}.json`)), "trees/<commit>.json written");
      assert.deepEqual(
        JSON.parse(readFileSync(join(dir, "trees", `${commit}.json`), "utf8")),
        JSON.parse(
          readFileSync(join(repoCacheDir(src, "model", "org/snap"), "trees", `${commit}.json`), "utf8"),
        ),
      );
      assert.ok(existsSync(join(dst, "CACHEDIR.TAG")));
      await hub.close();
      await assertLoadsOffline(hub, dst, "org/snap", "sub/extra.bin");
      await assertScanClean(dst, "org/snap");
      // Importing again: every blob is verified again, none rewritten.
      const again = await hf(["import", archive, "--cache-dir", dst]);
      assert.equal(again.code, 0, show(again));
      assert.match(again.stderr, /\(3 already there\)/);
    });
  });

  it("exports caches written by huggingface_hub 1.28 and 0.36, and imports them", async () => {
    const r0 = repo();
    await withHub([r0], {}, async (hub) => {
      for (const v of HH_VERSIONS) {
        const src = tempDir("hfget-exp-py-");
        const d = await runPython(v, PY_DOWNLOAD, [JSON.stringify({ repo_id: "org/snap" })], {
          env: pyEnv(hub, src),
        });
        assert.equal(d.code, 0, d.stderr);
        const archive = join(tempDir("hfget-exp-tar-"), "snap.tar");
        const ex = await hf(["export", "org/snap", "--cache-dir", src, "--to", archive, "--json"]);
        assert.equal(ex.code, 0, show(ex));
        const res = JSON.parse(ex.stdout) as { files: number; complete: boolean };
        assert.equal(res.files, 4, `from ${v}`);
        // 1.28 writes trees/<commit>.json (the export is then complete); 0.36 does not.
        assert.equal(res.complete, v === "1.28", `from ${v}`);
        const dst = tempDir("hfget-exp-dst-");
        const im = await hf(["import", archive, "--cache-dir", dst]);
        assert.equal(im.code, 0, show(im));
        assert.deepEqual(
          cacheProblems(repoCacheDir(dst, "model", "org/snap"), r0.commits[0]!.sha, r0.commits[0]!.files),
          [],
        );
        await assertLoadsOffline(hub, dst, "org/snap");
        await assertScanClean(dst, "org/snap");
      }
    });
  });
  it("import waits for a blob lock huggingface_hub holds, and commits that blob only after it is released", async () => {
    const r0 = repo();
    await withHub([r0], {}, async (hub) => {
      const src = tempDir("hfget-exp-src-");
      await hfgetDownload(hub, src);
      const archive = join(tempDir("hfget-exp-tar-"), "snap.tar");
      const ex = await hf(["export", "org/snap", "--cache-dir", src, "--to", archive]);
      assert.equal(ex.code, 0, show(ex));
      const dst = tempDir("hfget-exp-dst-");
      const first = r0.commits[0]!.files.find((f) => f.path === "config.json")!.gitOid;
      const lock = join(dst, ".locks", "models--org--snap", `${first}.lock`);
      const holder = spawnPython("1.28", PY_HOLD_LOCK, [lock], { env: cleanEnv() });
      try {
        await holder.waitForOutput("locked");
        let waiting!: () => void;
        const sawWait = new Promise<void>((resolve) => {
          waiting = resolve;
        });
        const run = runCli(["import", archive, "--cache-dir", dst], {
          env: cleanEnv(),
          onStderr: (d) => {
            if (d.includes("another process holds it")) waiting();
          },
        });
        await sawWait;
        const dir = repoCacheDir(dst, "model", "org/snap");
        assert.ok(!existsSync(join(dir, "blobs", first)), "the locked blob is not committed while held");
        assert.ok(!existsSync(join(dir, "snapshots")), "no snapshot before every blob is in");
        holder.send("go");
        const r = await run;
        assert.equal(r.code, 0, show(r));
        assert.deepEqual(cacheProblems(dir, r0.commits[0]!.sha, r0.commits[0]!.files), []);
      } finally {
        holder.send("go");
        await holder.done;
      }
    });
  });
});

describe("hfget export / import (hfget only)", () => {
  it("streams through a real shell pipe: export --to - | import -", async () => {
    const r0 = repo();
    await withHub([r0], {}, async (hub) => {
      const src = tempDir("hfget-exp-src-");
      await hfgetDownload(hub, src);
      const dst = tempDir("hfget-exp-dst-");
      const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
      const node = q(process.execPath);
      const cmd = `set -o pipefail; ${node} ${q(BIN)} export org/snap --cache-dir ${q(src)} --to - | ${node} ${q(BIN)} import - --cache-dir ${q(dst)}`;
      const r = spawnSync("bash", ["-c", cmd], { env: cleanEnv(), encoding: "utf8", timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /Exported org\/snap@.* -> stdout/);
      assert.match(r.stderr, /Imported org\/snap@/);
      assert.deepEqual(
        cacheProblems(repoCacheDir(dst, "model", "org/snap"), r0.commits[0]!.sha, r0.commits[0]!.files),
        [],
      );
    });
  });

  it("refuses a tampered, a truncated and a hostile archive (exit 5) and commits nothing", async () => {
    const r0 = repo();
    await withHub([r0], {}, async (hub) => {
      const src = tempDir("hfget-exp-src-");
      await hfgetDownload(hub, src);
      const work = tempDir("hfget-exp-bad-");
      const archive = join(work, "snap.tar");
      const ex = await hf(["export", "org/snap", "--cache-dir", src, "--to", archive]);
      assert.equal(ex.code, 0, show(ex));
      const good = readFileSync(archive);

      // One flipped byte inside the largest blob's data.
      const at = good.indexOf(weights.subarray(1000, 1064));
      assert.ok(at > 0, "the blob's bytes are in the tar as they are");
      const flipped = Buffer.from(good);
      flipped[at + 10]! ^= 0x01;
      writeFileSync(join(work, "flipped.tar"), flipped);
      // Cut in the middle of the archive.
      writeFileSync(join(work, "cut.tar"), good.subarray(0, Math.floor(good.length / 2)));
      // Cut at an entry boundary: the tar parser sees a clean end, the manifest's list does not.
      writeFileSync(join(work, "short.tar"), good.subarray(0, at - 1000 - 512));

      const cases: [string, RegExp][] = [
        ["flipped.tar", /model\.safetensors\) does not match its sha256 hash/],
        ["cut.tar", /truncated/],
        ["short.tar", /truncated: 2 of its 3 blobs are missing/],
      ];
      for (const [name, message] of cases) {
        const dst = tempDir("hfget-exp-dst-");
        const r = await hf(["import", join(work, name), "--cache-dir", dst]);
        assert.equal(r.code, 5, `${name}: ${show(r)}`);
        assert.match(r.stderr, message, name);
        assert.equal(r.stderr.trim().split("\n").length, 1, `${name}: one error line`);
        assert.ok(!existsSync(repoCacheDir(dst, "model", "org/snap")), `${name}: the repo folder is gone`);
        assert.deepEqual(readdirSync(dst), [], `${name}: nothing in the cache`);
      }

      // Hostile archives: built with tar-stream, a valid manifest plus something that must not land.
      const manifest = JSON.parse(
        readFileSync(archive)
          .subarray(512, 512 + 100_000)
          .toString("utf8")
          .split("\0")[0]!,
      );
      const blob = manifest.files.find((f: { path: string }) => f.path === "config.json").blob as string;
      const content = Buffer.from('{"a":1}');
      const hostile: [string, (p: tar.Pack) => void, unknown, RegExp][] = [
        [
          "symlink entry",
          (p) => p.entry({ name: `blobs/${blob}`, type: "symlink", linkname: "/etc/passwd" }),
          manifest,
          /is a symlink, not a regular file/,
        ],
        [
          "hardlink entry",
          (p) => p.entry({ name: `blobs/${blob}`, type: "link", linkname: "../../../etc/passwd" }),
          manifest,
          /is a link, not a regular file/,
        ],
        ["dot-dot entry", (p) => p.entry({ name: "../evil", size: 4 }, "evil"), manifest, /unexpected entry/],
        [
          "absolute entry",
          (p) => p.entry({ name: "/tmp/evil", size: 4 }, "evil"),
          manifest,
          /unexpected entry/,
        ],
        [
          "dot-dot path in the manifest",
          (p) => p.entry({ name: `blobs/${blob}`, size: content.length }, content),
          {
            ...manifest,
            files: [{ path: "../../outside.json", size: content.length, blob, algorithm: "git-sha1" }],
            complete: false,
          },
          /unsafe file path "\.\.\/\.\.\/outside\.json"/,
        ],
        [
          "absolute ref in the manifest",
          (p) => p.entry({ name: `blobs/${blob}`, size: content.length }, content),
          { ...manifest, refs: ["/etc/x"] },
          /unsafe ref name/,
        ],
      ];
      for (const [what, add, m, message] of hostile) {
        const p = tar.pack();
        const chunks: Buffer[] = [];
        const done = new Promise<void>((resolve) => {
          p.on("data", (c: unknown) => chunks.push(c as Buffer));
          p.on("end", () => resolve());
        });
        const json = JSON.stringify(m);
        p.entry({ name: "hfget-export.json", size: Buffer.byteLength(json) }, json);
        add(p);
        p.finalize();
        await done;
        const file = join(work, "hostile.tar");
        writeFileSync(file, Buffer.concat(chunks));
        const dst = join(tempDir("hfget-exp-h-"), "cache");
        const r = await hf(["import", file, "--cache-dir", dst]);
        assert.equal(r.code, 5, `${what}: ${show(r)}`);
        assert.match(r.stderr, message, what);
        assertNothingCommitted(dst);
        assert.ok(!existsSync(join(dst, "..", "outside.json")), what);
      }
    });
  });

  it("export re-hashes blobs: a flipped byte in the cache stops it (exit 5) and leaves no archive", async () => {
    const r0 = repo();
    await withHub([r0], {}, async (hub) => {
      const src = tempDir("hfget-exp-src-");
      await hfgetDownload(hub, src);
      const f = r0.commits[0]!.files.find((x) => x.path === "model.safetensors")!;
      const blob = join(repoCacheDir(src, "model", "org/snap"), "blobs", f.lfs!.sha256);
      const bytes = readFileSync(blob);
      bytes[1234]! ^= 0x80;
      writeFileSync(blob, bytes);
      const archive = join(tempDir("hfget-exp-tar-"), "snap.tar");
      const r = await hf(["export", "org/snap", "--cache-dir", src, "--to", archive]);
      assert.equal(r.code, 5, show(r));
      assert.match(r.stderr, new RegExp(`cache blob ${f.lfs!.sha256} does not match its hash`));
      assert.ok(!existsSync(archive), "no archive");
      assert.deepEqual(readdirSync(join(archive, "..")), [], "no temp file left either");
    });
  });

  it("refuses an incomplete snapshot unless --include/--exclude narrow it; --local-dir gives plain verified files", async () => {
    const r0 = repo();
    await withHub([r0], {}, async (hub) => {
      const src = tempDir("hfget-exp-src-");
      await hfgetDownload(hub, src);
      const commit = r0.commits[0]!.sha;
      rmSync(join(repoCacheDir(src, "model", "org/snap"), "snapshots", commit, "sub", "extra.bin"));
      const archive = join(tempDir("hfget-exp-tar-"), "snap.tar");
      const refused = await hf(["export", "org/snap", "--cache-dir", src, "--to", archive]);
      assert.equal(refused.code, 3, show(refused));
      assert.match(
        refused.stderr,
        /incomplete in the cache: 1 of its 4 files are missing \(sub\/extra\.bin\)/,
      );
      assert.ok(!existsSync(archive), "no archive left behind");
      const ex = await hf([
        "export",
        "org/snap",
        "--cache-dir",
        src,
        "--exclude",
        "sub/extra.bin",
        "--to",
        archive,
      ]);
      assert.equal(ex.code, 0, show(ex));
      assert.match(ex.stderr, /3 files, 2 blobs, .* \(part of the snapshot\)/);

      const local = tempDir("hfget-exp-local-");
      const im = await hf(["import", archive, "--local-dir", local]);
      assert.equal(im.code, 0, show(im));
      for (const f of r0.commits[0]!.files) {
        const p = join(local, ...f.path.split("/"));
        if (f.path === "sub/extra.bin") {
          assert.ok(!existsSync(p));
          continue;
        }
        assert.ok(lstatSync(p).isFile(), `${f.path} is a plain file`);
        assert.equal(f.lfs ? sha256File(p) : gitSha1File(p), f.lfs ? f.lfs.sha256 : f.gitOid, f.path);
        assert.ok(existsSync(join(local, ".cache", "huggingface", "download", `${f.path}.metadata`)), f.path);
      }
      assert.deepEqual(
        walk(join(local, ".cache", "huggingface", "download")).filter((p) => p.includes("hfget-partial")),
        [],
      );
      // A partial export writes no trees/ on import (its offline mode must not take it as complete).
      assert.ok(!existsSync(join(local, ".cache", "huggingface", "trees")));
    });
  });
});
