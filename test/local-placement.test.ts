import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, utimesSync, writeFileSync } from "node:fs";
import { test } from "node:test";
import { localDirPlacement, SafeDirs } from "../src/cache/commit.js";
import { localDirPaths } from "../src/cache/paths.js";
import type { RepoFile } from "../src/hub/types.js";
import { tempDir } from "./helpers.js";

const COMMIT = "c".repeat(40);

/**
 * A local dir whose `model.bin` has the listed size but other bytes: only a hash tells them apart.
 * `right` is what the listing's sha256 describes.
 */
function wrongSizedFile() {
  const root = tempDir();
  const paths = localDirPaths(root);
  const right = Buffer.alloc(4096, 7);
  const sha256 = createHash("sha256").update(right).digest("hex");
  const file: RepoFile = { path: "model.bin", size: right.length, gitOid: "0".repeat(40), lfs: { sha256 } };
  writeFileSync(paths.file(file.path), Buffer.alloc(4096, 8));
  return { root, paths, right, file };
}

test("local dir: a file the survey hashed right is not hashed again under the lock while unchanged", async () => {
  // Other bytes on disk: a `true` here means no hash was taken.
  const { root, paths, file } = wrongSizedFile();
  const st = lstatSync(paths.file(file.path));
  const hinted = localDirPlacement(paths, COMMIT, file, new SafeDirs(root), {
    size: st.size,
    mtimeMs: st.mtimeMs,
  });
  assert.equal(await hinted.isPresent(), true);
  assert.ok(existsSync(paths.metadata(file.path)), "the metadata is written as after a hash");

  // Touched since the survey: hashed again, and these bytes are wrong.
  const later = new Date(st.mtimeMs + 5000);
  utimesSync(paths.file(file.path), later, later);
  const stale = localDirPlacement(paths, COMMIT, file, new SafeDirs(root), {
    size: st.size,
    mtimeMs: st.mtimeMs,
  });
  assert.equal(await stale.isPresent(), false);
});

test("local dir: without the survey's hash the file is hashed under the lock", async () => {
  const { root, paths, right, file } = wrongSizedFile();
  assert.equal(await localDirPlacement(paths, COMMIT, file, new SafeDirs(root)).isPresent(), false);
  writeFileSync(paths.file(file.path), right);
  assert.equal(await localDirPlacement(paths, COMMIT, file, new SafeDirs(root)).isPresent(), true);
});
