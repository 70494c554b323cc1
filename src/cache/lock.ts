import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import lockfile from "proper-lockfile";

/**
 * One lock per blob, so two hfget processes on one cache never write the same `.incomplete` file.
 * proper-lockfile (mkdir-based, refreshed mtime, stale after 20 s) survives kill -9 of the holder:
 * a dead holder's lock goes stale and is taken over. Not the flock huggingface_hub's filelock uses.
 */
export type Release = () => Promise<void>;

export const LOCK_STALE_MS = 20_000;

/** The release function, or undefined when another live process holds the lock. */
export async function tryLock(lockPath: string): Promise<Release | undefined> {
  await mkdir(dirname(lockPath), { recursive: true });
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
    return async () => {
      await release().catch(() => undefined);
    };
  } catch (err) {
    if ((err as { code?: string }).code === "ELOCKED") return undefined;
    throw err;
  }
}
