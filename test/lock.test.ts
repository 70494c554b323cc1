import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { tryLock } from "../src/cache/lock.js";
import { tempDir } from "./helpers.js";

/** A pid that surely exists (a sleeping child), or that surely does not (after it exited). */
async function childPid(exitFirst: boolean): Promise<{ pid: number; stop: () => void }> {
  const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 10000)"], { stdio: "ignore" });
  const pid = child.pid!;
  if (exitFirst) {
    child.kill("SIGKILL");
    await new Promise((r) => child.on("exit", r));
  }
  return { pid, stop: () => child.kill("SIGKILL") };
}

describe("blob locks", () => {
  it("excludes a second holder and frees on release", async () => {
    const lock = join(tempDir(), ".locks", "repo", "blob.lock");
    const release = await tryLock(lock);
    assert.ok(release);
    assert.equal(await tryLock(lock), undefined);
    await release();
    const again = await tryLock(lock);
    assert.ok(again);
    await again();
    assert.ok(!existsSync(lock) && !existsSync(`${lock}.owner`));
  });

  it("takes over at once from a holder that was killed, not from a live one", async () => {
    const dir = tempDir();
    const lock = join(dir, "blob.lock");
    const release = await tryLock(lock);
    assert.ok(release);
    const live = await childPid(false);
    try {
      writeFileSync(`${lock}.owner`, JSON.stringify({ host: hostname(), pid: live.pid }));
      assert.equal(await tryLock(lock), undefined, "live holder keeps the lock");
      writeFileSync(
        `${lock}.owner`,
        JSON.stringify({ host: "another-host", pid: (await childPid(true)).pid }),
      );
      assert.equal(await tryLock(lock), undefined, "a holder on another host is left to staleness");
      const dead = await childPid(true);
      writeFileSync(`${lock}.owner`, JSON.stringify({ host: hostname(), pid: dead.pid }));
      const taken = await tryLock(lock);
      assert.ok(taken, "dead holder's lock is taken over");
      await taken();
    } finally {
      live.stop();
    }
  });
});
