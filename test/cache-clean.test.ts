import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { type FakeHub, fileFromBuffer, makeRepo, pushCommit, randomBytesSeeded } from "./fakehub/index.js";
import { cleanEnv, gitSha1File, repoCacheDir, runCli, show, tempDir, withHub } from "./helpers.js";
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
print(json.dumps([str(w) for w in info.warnings]))
`;

/** scan_cache_dir's warnings in both versions (0.36's one about CACHEDIR.TAG at the root ignored). */
async function assertNoScanWarnings(cache: string): Promise<void> {
  for (const v of HH_VERSIONS) {
    const r = await runPython(v, SCAN_WARNINGS, [cache], { env: cleanEnv() });
    assert.equal(r.code, 0, r.stderr);
    const warnings = (JSON.parse(r.stdout) as string[]).filter((w) => !w.includes("CACHEDIR.TAG"));
    assert.deepEqual(warnings, [], `huggingface_hub ${v}`);
  }
}

/** huggingface_hub (both versions) loads the repo offline from the cache. */
async function assertLoadsOffline(hub: FakeHub, cache: string, repoId: string, revision?: string) {
  for (const v of HH_VERSIONS) {
    const arg = JSON.stringify(revision === undefined ? { repo_id: repoId } : { repo_id: repoId, revision });
    const r = await runPython(v, PY_DOWNLOAD, [arg], { env: { ...pyEnv(hub, cache), HF_HUB_OFFLINE: "1" } });
    assert.equal(r.code, 0, `huggingface_hub ${v} offline: ${r.stderr}`);
  }
}

const shared = randomBytesSeeded(21, 200_000);
const oldWeights = randomBytesSeeded(22, 150_000);
function alpha() {
  const a = makeRepo("org/alpha", [
    fileFromBuffer("config.json", Buffer.from('{"v":1}')),
    fileFromBuffer("model.safetensors", shared, { lfs: true }),
    fileFromBuffer("old.bin", oldWeights, { lfs: true }),
  ]);
  const first = a.commits[0]!.sha;
  pushCommit(a, [
    fileFromBuffer("config.json", Buffer.from('{"v":2}')),
    fileFromBuffer("model.safetensors", shared, { lfs: true }),
  ]);
  a.refs.v1 = first;
  return { a, first };
}
function beta() {
  return makeRepo("org/beta", [fileFromBuffer("w.bin", randomBytesSeeded(23, 50_000), { lfs: true })]);
}

function blobNames(repoDir: string): string[] {
  return readdirSync(join(repoDir, "blobs")).sort();
}

async function hfgetCache(hub: FakeHub) {
  const cache = tempDir("hfget-clean-");
  const env = cleanEnv({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache });
  for (const args of [["org/alpha"], ["org/alpha", "--revision", "v1"], ["org/beta"]]) {
    const r = await runCli([...args, "--quiet"], { env });
    assert.equal(r.code, 0, show(r));
  }
  return { cache, env };
}

/** `hf cache <args>` of huggingface_hub 1.28 (its CLI main), stdin as given. */
const PY_HF_CLI = `
import sys
from huggingface_hub.cli.hf import main
sys.argv = ["hf"] + sys.argv[1:]
main()
`;

describe("hfget cache rm/prune: a declined confirmation", () => {
  it("exits 1 with nothing deleted, as `hf cache rm` 1.28 does (stdin not a terminal: end of input, n, empty line)", async (t) => {
    const { a } = alpha();
    await withHub([a, beta()], {}, async (hub) => {
      const { cache, env } = await hfgetCache(hub);
      const dir = repoCacheDir(cache, "model", "org/beta");
      const before = blobNames(dir);
      for (const input of [undefined, "n\n", "\n", "no\n"]) {
        const opts = input === undefined ? { env } : { env, input };
        const r = await runCli(["cache", "rm", "org/beta"], opts);
        assert.equal(r.code, 1, `input ${JSON.stringify(input)}: ${show(r)}`);
        assert.match(r.stderr, /Proceed with deletion\? \[y\/N\]/);
        assert.match(r.stderr, /aborted: nothing was deleted/);
        assert.doesNotMatch(r.stderr, /internal error/);
        const p = await runCli(["cache", "prune", "--older-than", "0s"], opts);
        assert.equal(p.code, 1, `prune, input ${JSON.stringify(input)}: ${show(p)}`);
      }
      assert.deepEqual(blobNames(dir), before);
      const yes = await runCli(["cache", "rm", "org/beta"], { env, input: "y\n" });
      assert.equal(yes.code, 0, show(yes));
      assert.ok(!existsSync(dir));

      const skip = skipWithoutPython();
      if (skip) {
        t.diagnostic(skip);
        return;
      }
      // The real `hf cache rm` on the same cache, stdin a pipe: "n" and end of input both exit 1.
      for (const input of ["n\n", ""]) {
        const py = spawnPython("1.28", PY_HF_CLI, ["cache", "rm", "model/org/alpha"], {
          env: cleanEnv({ HF_HUB_CACHE: cache }),
        });
        py.child.stdin?.end(input);
        const r = await py.done;
        assert.equal(r.code, 1, `hf cache rm, input ${JSON.stringify(input)}: ${r.stdout}\n${r.stderr}`);
        assert.match(r.stderr, /Aborted!/);
      }
      assert.ok(existsSync(repoCacheDir(cache, "model", "org/alpha")));
    });
  });
});

describe("hfget cache rm", () => {
  it("removes a revision with its refs and only its own blobs; asks, --dry-run; then a repo (hfget cache)", async (t) => {
    const { a, first } = alpha();
    await withHub([a, beta()], {}, async (hub) => {
      const { cache, env } = await hfgetCache(hub);
      const dir = repoCacheDir(cache, "model", "org/alpha");
      const before = blobNames(dir);
      assert.equal(before.length, 4); // two configs, shared weights, old.bin

      // No terminal, no --yes: like `hf cache rm` (click.confirm reads stdin; end of input aborts).
      const asked = await runCli(["cache", "rm", "org/alpha@v1"], { env });
      assert.notEqual(asked.code, 0, show(asked));
      assert.match(asked.stderr, /Proceed with deletion\? \[y\/N\]/);
      assert.match(asked.stderr, /aborted: nothing was deleted/);
      const dry = await runCli(["cache", "rm", "org/alpha@v1", "--dry-run"], { env });
      assert.equal(dry.code, 0, show(dry));
      assert.match(
        dry.stdout,
        /About to delete 1 revision\(s\), 2 unreferenced blob\(s\) totalling 150\.0K\./,
      );
      assert.match(dry.stdout, /Dry run: no files were deleted\./);
      assert.deepEqual(blobNames(dir), before);
      assert.ok(existsSync(join(dir, "snapshots", first)));

      const r = await runCli(["cache", "rm", "org/alpha@v1", "--yes"], { env });
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /Deleted 1 revision\(s\), 2 unreferenced blob\(s\); freed 150\.0K\./);
      assert.ok(!existsSync(join(dir, "snapshots", first)));
      assert.ok(!existsSync(join(dir, "refs", "v1")));
      assert.equal(readFileSync(join(dir, "refs", "main"), "utf8"), a.refs.main);
      const after = blobNames(dir);
      assert.equal(after.length, 2, after.join(" "));
      const main = join(dir, "snapshots", a.refs.main!);
      assert.ok(after.includes(gitSha1File(join(main, "config.json"))));
      assert.equal(readFileSync(join(main, "model.safetensors")).length, shared.length);

      const gone = await runCli(["cache", "rm", "org/beta", "--yes"], { env });
      assert.equal(gone.code, 0, show(gone));
      assert.match(gone.stdout, /Deleted 1 repo\(s\)/);
      assert.ok(!existsSync(repoCacheDir(cache, "model", "org/beta")));
      const missing = await runCli(["cache", "rm", "org/nope", "--yes"], { env });
      assert.equal(missing.code, 0, show(missing));
      assert.match(missing.stderr, /not in the cache: model\/org\/nope/);

      const skip = skipWithoutPython();
      if (skip) {
        t.diagnostic(skip);
        return;
      }
      await assertNoScanWarnings(cache);
      await assertLoadsOffline(hub, cache, "org/alpha");
    });
  });
});

describe("hfget cache prune", () => {
  it("removes the revision a moved branch left detached (huggingface_hub cache), loads offline after", async (t) => {
    const skip = skipWithoutPython();
    if (skip) {
      t.skip(skip);
      return;
    }
    const a = makeRepo("org/alpha", [
      fileFromBuffer("config.json", Buffer.from('{"v":1}')),
      fileFromBuffer("model.safetensors", shared, { lfs: true }),
      fileFromBuffer("old.bin", oldWeights, { lfs: true }),
    ]);
    const first = a.commits[0]!.sha;
    await withHub([a], {}, async (hub) => {
      const cache = tempDir("hfget-clean-py-");
      const env = cleanEnv({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache });
      const dl = async () => {
        const r = await runPython("1.28", PY_DOWNLOAD, [JSON.stringify({ repo_id: "org/alpha" })], {
          env: pyEnv(hub, cache),
        });
        assert.equal(r.code, 0, r.stderr);
      };
      await dl();
      pushCommit(a, [
        fileFromBuffer("config.json", Buffer.from('{"v":2}')),
        fileFromBuffer("model.safetensors", shared, { lfs: true }),
      ]);
      await dl(); // main moves: the first snapshot is now detached
      const dir = repoCacheDir(cache, "model", "org/alpha");
      assert.equal(readdirSync(join(dir, "snapshots")).length, 2);

      const r = await runCli(["cache", "prune", "--yes"], { env });
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /revision {2}model\/org\/alpha@[0-9a-f]{40} \(detached\)/);
      assert.match(r.stdout, /Deleted 1 revision\(s\), 2 unreferenced blob\(s\)/);
      assert.deepEqual(readdirSync(join(dir, "snapshots")), [a.refs.main]);
      assert.ok(!existsSync(join(dir, "snapshots", first)));
      assert.equal(blobNames(dir).length, 2);
      const again = await runCli(["cache", "prune", "--yes"], { env });
      assert.match(again.stdout, /Nothing to delete\./);
      await assertNoScanWarnings(cache);
      await assertLoadsOffline(hub, cache, "org/alpha");
    });
  });

  it("leaves alone a blob whose lock another process holds (prune and rm)", async (t) => {
    const skip = skipWithoutPython();
    if (skip) {
      t.skip(skip);
      return;
    }
    const { a, first } = alpha();
    await withHub([a, beta()], {}, async (hub) => {
      const { cache, env } = await hfgetCache(hub);
      const dir = repoCacheDir(cache, "model", "org/alpha");
      // Detach v1, then hold the lock of old.bin's blob (only v1 uses it).
      rmSync(join(dir, "refs", "v1"));
      const oldId = readdirSync(join(dir, "blobs")).find((n) =>
        readFileSync(join(dir, "blobs", n)).equals(oldWeights),
      )!;
      const lock = join(cache, ".locks", "models--org--alpha", `${oldId}.lock`);
      const holder = spawnPython("1.28", PY_HOLD_LOCK, [lock], { env: cleanEnv() });
      try {
        await holder.waitForOutput("locked");
        const r = await runCli(["cache", "prune", "--yes"], { env });
        assert.equal(r.code, 0, show(r));
        assert.match(r.stderr, new RegExp(`Warning: skipped .*${oldId}: its lock .* is held`));
        assert.ok(!existsSync(join(dir, "snapshots", first)));
        assert.ok(existsSync(join(dir, "blobs", oldId)));
        assert.ok(existsSync(lock), "a held lock file stays");

        const rr = await runCli(["cache", "rm", "org/alpha", "--yes"], { env });
        assert.equal(rr.code, 0, show(rr));
        assert.match(rr.stderr, new RegExp(`Warning: skipped .*${oldId}`));
        assert.deepEqual(blobNames(dir), [oldId]);
        assert.deepEqual(readdirSync(join(dir, "snapshots")), []);
        await assertNoScanWarnings(cache);
      } finally {
        holder.send("");
        await holder.done;
      }
      // Released: prune now takes the blob, the empty lock file and the repo's leftovers.
      const r = await runCli(["cache", "prune", "--yes"], { env });
      assert.equal(r.code, 0, show(r));
      assert.ok(!existsSync(join(dir, "blobs", oldId)));
      assert.ok(!existsSync(lock));
      await assertNoScanWarnings(cache);
    });
  });

  it("removes day-old partial files and resume state, .incomplete files, unheld empty locks; --older-than repos", async () => {
    const { a } = alpha();
    await withHub([a, beta()], {}, async (hub) => {
      const { cache, env } = await hfgetCache(hub);
      const dir = repoCacheDir(cache, "model", "org/alpha");
      const blobs = join(dir, "blobs");
      const id = "a".repeat(64);
      const old = Date.now() / 1000 - 2 * 86400;
      const stale = [
        `${id}.hfget-partial`,
        `${id}.hfget-partial.json`,
        `${id}.hfget-partial.json.log`,
        `${"b".repeat(64)}.1234abcd.incomplete`,
      ];
      for (const n of stale) {
        writeFileSync(join(blobs, n), "x".repeat(1000));
        utimesSync(join(blobs, n), old, old);
      }
      const fresh = `${"c".repeat(64)}.hfget-partial`;
      writeFileSync(join(blobs, fresh), "y".repeat(10));
      const emptyLock = join(cache, ".locks", "models--org--alpha", `${id}.lock`);
      writeFileSync(emptyLock, "");
      const kept = blobNames(dir).filter((n) => !n.includes("."));

      const dry = await runCli(["cache", "prune", "--dry-run"], { env });
      assert.equal(dry.code, 0, show(dry));
      assert.match(dry.stdout, /4 partial file\(s\)/);
      assert.ok(existsSync(join(blobs, stale[0]!)));
      const r = await runCli(["cache", "prune", "--yes"], { env });
      assert.equal(r.code, 0, show(r));
      for (const n of stale) assert.ok(!existsSync(join(blobs, n)), n);
      assert.ok(existsSync(join(blobs, fresh)), "a partial file younger than a day stays");
      assert.ok(!existsSync(emptyLock));
      // Nothing referenced went: both revisions of alpha have refs (main, v1).
      assert.deepEqual(
        blobNames(dir).filter((n) => !n.includes(".")),
        kept,
      );

      // beta not accessed for 3 days; alpha just now.
      const betaDir = repoCacheDir(cache, "model", "org/beta");
      for (const n of blobNames(betaDir)) utimesSync(join(betaDir, "blobs", n), old - 86400, old - 86400);
      const bad = await runCli(["cache", "prune", "--older-than", "soon", "--yes"], { env });
      assert.equal(bad.code, 2, show(bad));
      const o = await runCli(["cache", "prune", "--older-than", "2d", "--yes"], { env });
      assert.equal(o.code, 0, show(o));
      assert.match(o.stdout, /1 repo\(s\)/);
      assert.ok(!existsSync(betaDir));
      assert.ok(existsSync(join(dir, "snapshots", a.refs.main!)));
    });
  });
});

describe("hfget cache dedupe", () => {
  it("hard-links the same sha256 blob under two repos after verifying both; saves what it reports", async () => {
    const same = randomBytesSeeded(31, 120_000);
    const r1 = makeRepo("org/one", [fileFromBuffer("w.safetensors", same, { lfs: true })]);
    const r2 = makeRepo("org/two", [
      fileFromBuffer("model.safetensors", same, { lfs: true }),
      fileFromBuffer("other.bin", randomBytesSeeded(32, 1000), { lfs: true }),
    ]);
    await withHub([r1, r2], {}, async (hub) => {
      const cache = tempDir("hfget-dedupe-");
      const env = cleanEnv({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache });
      // --force for the second: a plain download would hard-link org/one's blob (reuse), leaving
      // nothing to deduplicate; copies made by other tools (or older hfget) are what dedupe is for.
      for (const args of [["org/one"], ["org/two", "--force"]]) {
        const r = await runCli([...args, "--quiet"], { env });
        assert.equal(r.code, 0, show(r));
      }
      const id = readdirSync(join(repoCacheDir(cache, "model", "org/one"), "blobs"))[0]!;
      const b1 = join(repoCacheDir(cache, "model", "org/one"), "blobs", id);
      const b2 = join(repoCacheDir(cache, "model", "org/two"), "blobs", id);
      assert.notEqual(statSync(b1).ino, statSync(b2).ino);
      const dry = await runCli(["cache", "dedupe", "--dry-run"], { env });
      assert.equal(dry.code, 0, show(dry));
      assert.match(dry.stdout, /would save 120\.0K \(120000 bytes\) in 1 link/);
      assert.notEqual(statSync(b1).ino, statSync(b2).ino);

      // A flipped byte in one copy: not linked, reported.
      const bad = Buffer.from(same);
      bad[5]! ^= 1;
      writeFileSync(b2, bad);
      const refused = await runCli(["cache", "dedupe"], { env });
      assert.equal(refused.code, 0, show(refused));
      assert.match(refused.stderr, /not linked: .* does not hash to its name/);
      assert.notEqual(statSync(b1).ino, statSync(b2).ino);
      writeFileSync(b2, same);

      const r = await runCli(["cache", "dedupe"], { env });
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /Saved 120\.0K \(120000 bytes\) in 1 link\(s\)/);
      assert.equal(statSync(b1).ino, statSync(b2).ino);
      assert.equal(statSync(b1).nlink, 2);
      const v = await runCli(["cache", "verify", "--quiet"], { env });
      assert.equal(v.code, 0, show(v));
      const again = await runCli(["cache", "dedupe"], { env });
      assert.match(again.stdout, /Saved 0\.0 \(0 bytes\) in 0 link\(s\)/);
    });
  });
});
