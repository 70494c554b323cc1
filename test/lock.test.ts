import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { lstatSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { isLocked, tryLock } from "../src/cache/lock.js";
import { ROOT, tempDir } from "./helpers.js";

/** Another Node process that takes the lock with tryLock, prints "locked", and sleeps until killed. */
function holder(lock: string): { stop: () => Promise<void>; locked: Promise<void> } {
  const mod = pathToFileURL(join(ROOT, "dist", "src", "cache", "lock.js")).href;
  const code = `const { tryLock } = await import(${JSON.stringify(mod)});
    const r = await tryLock(${JSON.stringify(lock)});
    console.log(r ? "locked" : "busy");
    setTimeout(() => {}, 30000);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  const locked = new Promise<void>((resolve, reject) => {
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      if (out.includes("locked")) resolve();
      if (out.includes("busy")) reject(new Error("holder found the lock busy"));
    });
    child.on("exit", () => reject(new Error(`holder exited: ${out}`)));
  });
  const exited = new Promise((r) => child.on("exit", r));
  return {
    locked,
    stop: async () => {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

describe("blob locks (flock on a regular file)", () => {
  it("excludes a second holder, frees on release, and leaves the lock file a regular file", async () => {
    const lock = join(tempDir(), ".locks", "repo", "blob.lock");
    assert.equal(await isLocked(lock), false, "no lock file: not held");
    const release = await tryLock(lock);
    assert.ok(release);
    assert.equal(await tryLock(lock), undefined, "a second open file description is refused");
    assert.equal(await isLocked(lock), true);
    await release();
    await release(); // twice is harmless
    assert.equal(await isLocked(lock), false);
    const again = await tryLock(lock);
    assert.ok(again);
    await again();
    assert.ok(lstatSync(lock).isFile(), "the lock file stays, as filelock's does");
  });

  it("another process's lock is seen; the kernel frees it when that process is killed (-9)", async () => {
    const lock = join(tempDir(), "blob.lock");
    const h = holder(lock);
    try {
      await h.locked;
      assert.equal(await tryLock(lock), undefined);
      assert.equal(await isLocked(lock), true);
    } finally {
      await h.stop();
    }
    const taken = await tryLock(lock);
    assert.ok(taken, "a killed holder's lock is free at once");
    await taken();
  });

  it("replaces the empty lock folder an older hfget left, never a folder with content", async () => {
    const dir = tempDir();
    const old = join(dir, "old.lock");
    mkdirSync(old);
    writeFileSync(`${old}.owner`, JSON.stringify({ host: "h", pid: 1 }));
    const r = await tryLock(old);
    assert.ok(r);
    await r();
    assert.ok(lstatSync(old).isFile());
    const full = join(dir, "full.lock");
    mkdirSync(full);
    writeFileSync(join(full, "keep"), "x");
    await assert.rejects(tryLock(full), (e: Error & { code?: string }) => {
      assert.equal(e.code, "DISK");
      assert.match(e.message, /full\.lock/);
      return true;
    });
    assert.ok(lstatSync(join(full, "keep")).isFile());
  });
});
