import { readFile, rm, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname } from "node:path";
import lockfile from "proper-lockfile";
import { makeDirs } from "./dirs.js";

/**
 * One lock per blob, so two hfget processes on one cache never write the same `.incomplete` file.
 * proper-lockfile (mkdir-based, mtime refreshed while held, stale after 20 s) does the locking.
 * Beside it, `<lock>.owner` names the holder's host and pid: a lock whose holder on this host is
 * gone (kill -9) is taken over at once, so a rerun does not wait for staleness.
 * Not the flock huggingface_hub's filelock uses.
 */
export type Release = () => Promise<void>;

export const LOCK_STALE_MS = 20_000;

interface Owner {
  host: string;
  pid: number;
}

const HOST = hostname();
/** Lock folders made by this process: one mkdir -p per folder, not per file. */
const madeDirs = new Set<string>();

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as { code?: string }).code === "EPERM";
  }
}

async function holderIsGone(lockPath: string): Promise<boolean> {
  try {
    const owner = JSON.parse(await readFile(`${lockPath}.owner`, "utf8")) as Partial<Owner>;
    return (
      owner.host === HOST && typeof owner.pid === "number" && owner.pid !== process.pid && !isAlive(owner.pid)
    );
  } catch {
    return false; // no owner file: leave it to staleness
  }
}

async function lockOnce(lockPath: string): Promise<Release | undefined> {
  try {
    const release = await lockfile.lock(lockPath, {
      lockfilePath: lockPath,
      realpath: false,
      stale: LOCK_STALE_MS,
      update: LOCK_STALE_MS / 4,
      retries: 0,
      // If our lock was taken over (we stalled for longer than `stale`), keep going: every write
      // into the cache is an atomic rename of verified bytes, so the worst case is work done twice.
      onCompromised: () => undefined,
    });
    const owner: Owner = { host: HOST, pid: process.pid };
    await writeFile(`${lockPath}.owner`, JSON.stringify(owner)).catch(() => undefined);
    return async () => {
      await rm(`${lockPath}.owner`, { force: true }).catch(() => undefined);
      await release().catch(() => undefined);
    };
  } catch (err) {
    if ((err as { code?: string }).code === "ELOCKED") return undefined;
    throw err;
  }
}

/** The release function, or undefined when another live process holds the lock. */
export async function tryLock(lockPath: string): Promise<Release | undefined> {
  const dir = dirname(lockPath);
  if (!madeDirs.has(dir)) {
    await makeDirs(dir);
    madeDirs.add(dir);
  }
  const release = await lockOnce(lockPath);
  if (release !== undefined) return release;
  if (!(await holderIsGone(lockPath))) return undefined;
  await rm(lockPath, { recursive: true, force: true });
  await rm(`${lockPath}.owner`, { force: true });
  return lockOnce(lockPath);
}
