import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadState, type ResumeState, StateWriter } from "../src/state.js";
import { tempDir } from "./helpers.js";

const id = { size: 1000, hash: "sha256:abc" };

function state(done: [number, number][]): ResumeState {
  return { version: 1, size: 1000, hash: "sha256:abc", etag: '"e1"', done };
}

describe("resume state", () => {
  it("round-trips, and discards a state of another size, hash, version or with bad ranges", async () => {
    const dir = tempDir();
    const path = join(dir, "x.hfget-partial.json");
    let done: [number, number][] = [[0, 100]];
    const w = new StateWriter(path, () => state(done));
    await w.flush();
    assert.deepEqual((await loadState(path, id))?.done, [[0, 100]]);
    assert.equal((await loadState(path, id))?.etag, '"e1"');
    assert.equal(await loadState(path, { size: 999, hash: id.hash }), undefined);
    assert.equal(await loadState(path, { size: 1000, hash: "sha256:def" }), undefined);
    done = [[0, 2000]];
    await w.flush();
    assert.equal(await loadState(path, id), undefined, "a range past the size");
    writeFileSync(path, JSON.stringify({ ...state([[0, 10]]), version: 2 }));
    assert.equal(await loadState(path, id), undefined, "another version");
    writeFileSync(path, "{not json");
    assert.equal(await loadState(path, id), undefined);
    await w.close();
  });

  it("writes at once past the unsaved-bytes bound, otherwise after the interval", async () => {
    const dir = tempDir();
    const path = join(dir, "s.json");
    let writes = 0;
    const w = new StateWriter(
      path,
      () => {
        writes++;
        return state([[0, writes]]);
      },
      60_000,
      1000,
    );
    // The first write comes at once (nothing was saved yet); the interval counts from it.
    w.touch(10);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(writes, 1, "first touch: written");
    w.touch(10);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(writes, 1, "10 more bytes within a 60 s interval: not yet");
    w.touch(2000);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(writes, 2, "past 1000 unsaved bytes: written at once");
    assert.ok(existsSync(path) && !existsSync(`${path}.tmp`));
    // Many flushes while one is queued collapse into it.
    const all = [w.flush(), w.flush(), w.flush()];
    await Promise.all(all);
    assert.ok(writes <= 4, `${writes} writes`);
    assert.deepEqual(JSON.parse(readFileSync(path, "utf8")).done, [[0, writes]]);
    await w.close();
    w.touch(5000);
    await new Promise((r) => setTimeout(r, 20));
    const after = writes;
    assert.equal(writes, after, "closed writers do not write");
  });
});
