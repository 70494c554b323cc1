import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { journalPath, loadState, type ResumeState, removeState, StateWriter } from "../src/state.js";
import { ROOT, tempDir } from "./helpers.js";

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
      { minIntervalMs: 60_000, maxUnsavedBytes: 1000 },
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

  it("journals each write: a state whose JSON save is far off still resumes every written range", async () => {
    const dir = tempDir();
    const path = join(dir, "j.hfget-partial.json");
    const written: [number, number][] = [];
    const w = new StateWriter(path, () => state(written), { journal: true, minIntervalMs: 60_000 });
    await w.flush();
    const json = JSON.parse(readFileSync(path, "utf8")) as { log?: string; done: unknown };
    assert.match(json.log ?? "", /^[0-9a-f]{16}$/, "the JSON names its journal");
    assert.deepEqual(json.done, []);
    // The JSON is not saved again within the interval; the journal has every range at once.
    w.wrote(0, 100);
    w.wrote(500, 600);
    w.wrote(100, 200);
    assert.deepEqual(JSON.parse(readFileSync(path, "utf8")).done, [], "the JSON lags");
    const st = await loadState(path, id);
    assert.deepEqual(st?.done, [
      [0, 200],
      [500, 600],
    ]);
    assert.equal(st?.log, json.log);
    // A torn last record (killed inside its write) is left out, the rest kept.
    await w.close();
    appendFileSync(journalPath(path), Buffer.alloc(7));
    assert.deepEqual((await loadState(path, id))?.done, [
      [0, 200],
      [500, 600],
    ]);
    // Continuing the journal: the torn tail is cut, new records follow the old ones.
    const w2 = new StateWriter(path, () => state([]), { journal: json.log!, minIntervalMs: 60_000 });
    w2.wrote(700, 800);
    assert.deepEqual((await loadState(path, id))?.done, [
      [0, 200],
      [500, 600],
      [700, 800],
    ]);
    await w2.close();
    await removeState(path);
    assert.equal(existsSync(journalPath(path)), false, "removed with the state");
  });

  it("ignores a journal the JSON does not name, and one with a bad record; an old state still resumes", async () => {
    const dir = tempDir();
    const path = join(dir, "k.hfget-partial.json");
    const w = new StateWriter(path, () => state([[0, 10]]), { journal: true, minIntervalMs: 60_000 });
    await w.flush();
    w.wrote(10, 900);
    await w.close();
    const json = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
    assert.deepEqual((await loadState(path, id))?.done, [[0, 900]]);
    // An older hfget rewrites the JSON without the token (or a state from before journals): JSON only.
    const { log: _log, ...old } = json;
    writeFileSync(path, JSON.stringify(old));
    assert.deepEqual((await loadState(path, id))?.done, [[0, 10]]);
    assert.equal((await loadState(path, id))?.log, undefined);
    // Another token: ignored.
    writeFileSync(path, JSON.stringify({ ...old, log: "0123456789abcdef" }));
    assert.deepEqual((await loadState(path, id))?.done, [[0, 10]]);
    // A record past the size: the whole journal is ignored.
    writeFileSync(path, JSON.stringify(json));
    const bad = Buffer.alloc(16);
    bad.writeDoubleLE(0, 0);
    bad.writeDoubleLE(5000, 8);
    appendFileSync(journalPath(path), bad);
    assert.deepEqual((await loadState(path, id))?.done, [[0, 10]]);
    // The JSON an older hfget reads is a plain version-1 state.
    assert.equal(json.version, 1);
    assert.deepEqual(json.done, [[0, 10]]);
  });

  it("reset() drops the journal's records; past its bound the journal is folded into the JSON", async () => {
    const dir = tempDir();
    const path = join(dir, "r.hfget-partial.json");
    let done: [number, number][] = [];
    const w = new StateWriter(path, () => state(done), { journal: true, minIntervalMs: 60_000 });
    await w.flush();
    w.wrote(0, 300);
    done = [[0, 300]];
    // The written set shrinks (a suspect source's bytes are fetched again).
    done = [[0, 100]];
    w.reset();
    await w.flush();
    assert.deepEqual((await loadState(path, id))?.done, [[0, 100]]);
    w.wrote(100, 150);
    assert.deepEqual((await loadState(path, id))?.done, [[0, 150]]);
    await w.close();

    // 5000 one-byte writes: the journal is emptied once past 4096 records, nothing is lost.
    const big = { size: 10_000, hash: id.hash };
    const all: [number, number][] = [];
    const w2 = new StateWriter(
      path,
      () => ({ ...state([]), size: 10_000, done: all.length ? [[0, all.length]] : [] }),
      {
        journal: true,
        minIntervalMs: 60_000,
        maxUnsavedBytes: 1 << 30,
      },
    );
    await w2.flush();
    for (let i = 0; i < 5000; i++) {
      w2.wrote(i, i + 1);
      all.push([i, i + 1]);
    }
    await w2.flush();
    assert.ok(
      statSync(journalPath(path)).size < 4096 * 16,
      `journal ${statSync(journalPath(path)).size} bytes`,
    );
    assert.deepEqual((await loadState(path, big))?.done, [[0, 5000]]);
    await w2.close();
  });

  it("kill -9 right after writes loses none of them (a child writing through StateWriter)", async () => {
    const dir = tempDir();
    const path = join(dir, "kill.hfget-partial.json");
    const mod = pathToFileURL(join(ROOT, "dist", "src", "state.js")).href;
    // The child saves the JSON once, journals 1000 writes of 1 KiB without another JSON save,
    // says so, and waits to be killed.
    const script = `
      const { StateWriter } = await import(${JSON.stringify(mod)});
      const done = [];
      const w = new StateWriter(${JSON.stringify(path)}, () => ({ version: 1, size: 1024000, hash: "sha256:abc", etag: undefined, done }), { journal: true, minIntervalMs: 600000, maxUnsavedBytes: 1 << 30 });
      await w.flush();
      for (let i = 0; i < 1000; i++) w.wrote(i * 1024, (i + 1) * 1024);
      process.stdout.write("ready");
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<NodeJS.Signals | null>((res) => child.once("exit", (_c, sig) => res(sig)));
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error("child never ready")), 10_000);
      child.stdout.on("data", (d: Buffer) => {
        if (d.toString().includes("ready")) {
          clearTimeout(t);
          res();
        }
      });
    });
    child.kill("SIGKILL");
    assert.equal(await exited, "SIGKILL");
    assert.deepEqual(JSON.parse(readFileSync(path, "utf8")).done, [], "the JSON was saved before any write");
    assert.deepEqual((await loadState(path, { size: 1024000, hash: "sha256:abc" }))?.done, [[0, 1024000]]);
    // A journal cut mid-record by the kill keeps all whole records.
    truncateSync(journalPath(path), 16 + 999 * 16 + 5);
    assert.deepEqual((await loadState(path, { size: 1024000, hash: "sha256:abc" }))?.done, [[0, 999 * 1024]]);
  });
});
