import { closeSync, constants, fchmodSync, fstatSync, type Stats } from "node:fs";
import { rm, rmdir } from "node:fs/promises";
import { constants as os } from "node:os";
import { dirname } from "node:path";
import koffi from "koffi";
import { HfgetError } from "../errors.js";
import { closeFd, openFd } from "../util/fd.js";
import { diskError } from "../util/io-error.js";
import { makeDirs } from "./dirs.js";

/**
 * The lock huggingface_hub takes: an exclusive BSD `flock(2)` on a regular file that is never
 * deleted, `<cache>/.locks/<repo folder>/<blob id>.lock` or
 * `<local-dir>/.cache/huggingface/download/<path>.lock` (filelock's UnixFileLock, which
 * huggingface_hub's WeakFileLock wraps). Taking the same lock on the same file makes hfget and
 * Python wait for each other. It must be flock, not fcntl record locks: on Linux the two kinds do
 * not see each other. Node has no flock, so it is called from libc through koffi (prebuilt FFI).
 * The kernel drops the lock when its holder dies (even kill -9), so there is nothing to take over.
 */
export type Release = () => Promise<void>;

// Same values on Linux, macOS and the BSDs (<sys/file.h>).
const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
/** What a non-blocking flock says when someone else holds the lock (EACCES on some filesystems). */
const CONTENDED = new Set([os.errno.EWOULDBLOCK, os.errno.EAGAIN, os.errno.EACCES]);
const LOCK_FLAGS = constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW;
const LOCK_MODE = 0o664; // huggingface_hub's: group members sharing a cache can wait on it too

type Flock = (fd: number, operation: number) => number;
let flockFn: Flock | undefined;

function flock(fd: number, operation: number): number {
  if (flockFn === undefined) {
    if (process.platform === "win32") {
      throw new HfgetError("DISK", "file locks are not supported on Windows yet", {
        hint: "run hfget on Linux or macOS",
      });
    }
    // dlopen(NULL): the process itself, whose libc (or libSystem) has flock.
    flockFn = koffi.load(null).func("int flock(int fd, int operation)") as Flock;
  }
  return flockFn(fd, operation);
}

/** A raw errno from flock(2) (no exception to wrap) as the DISK error naming the lock file. */
function lockError(path: string, code: string): unknown {
  return diskError(Object.assign(new Error(code), { code }), path, "cannot lock");
}

function errnoName(n: number): string {
  return Object.entries(os.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;
}

/**
 * Opens (creating) the lock file without following a symlink at its name. A raw descriptor, not a
 * FileHandle: one lock per file of a 3000-file download, and the lighter calls are measurably cheaper.
 */
async function openLockFile(lockPath: string): Promise<number> {
  const flags = LOCK_FLAGS;
  try {
    return await openFd(lockPath, flags, LOCK_MODE);
  } catch (err) {
    const code = (err as { code?: string }).code ?? "";
    if (code === "EACCES") {
      // Another user's lock file in a shared cache: a read-only descriptor can hold a flock too.
      try {
        return await openFd(lockPath, constants.O_RDONLY | constants.O_NOFOLLOW);
      } catch (err2) {
        throw diskError(err2, lockPath, "cannot lock");
      }
    }
    if (code === "EISDIR") {
      // hfget before 0.2 locked with an (empty) folder here, plus a `.owner` file beside it;
      // both clients need a file at this name. Remove only an empty folder.
      await rm(`${lockPath}.owner`, { force: true }).catch(() => undefined);
      try {
        await rmdir(lockPath);
        return await openFd(lockPath, flags, LOCK_MODE);
      } catch (err2) {
        throw diskError(err2, lockPath, "cannot lock");
      }
    }
    throw diskError(err, lockPath, "cannot lock");
  }
}

/**
 * Takes the exclusive lock without waiting: the release function, or undefined when another
 * process (hfget or huggingface_hub) holds it. The lock file stays (never delete it: a waiter
 * holding the old inode would no longer exclude a newcomer on a new one).
 */
export async function tryLock(lockPath: string): Promise<Release | undefined> {
  // The folder is made only when the first open says it is missing: a download of thousands of
  // small files takes one lock per file, and this saves a stat of the folder per lock. Any other
  // failure is left to openLockFile, which opens again and handles or names it.
  let fd: number | undefined;
  try {
    fd = await openFd(lockPath, LOCK_FLAGS, LOCK_MODE);
  } catch (err) {
    // Not Node's recursive mkdir: it spins where mkdir(2) answers ENOENT (/proc); DISK on failure.
    if ((err as { code?: string }).code === "ENOENT") await makeDirs(dirname(lockPath));
  }
  fd ??= await openLockFile(lockPath);
  // On the open descriptor, fstat, fchmod and close are made synchronously (flock already is): each
  // is a ~2 us syscall that touches no path, while each async call cost a thread-pool round trip of
  // ~10 us of CPU (20k fstat calls, 32 in flight, on this 2-core machine) and its promise; a
  // 3000-file download takes 3000 locks.
  const drop = () => {
    try {
      closeSync(fd);
    } catch {
      // EBADF/EIO on close: the descriptor is gone either way
    }
  };
  let rc: number;
  try {
    rc = flock(fd, LOCK_EX | LOCK_NB);
  } catch (err) {
    drop();
    throw err;
  }
  if (rc !== 0) {
    const errno = koffi.errno();
    drop();
    if (CONTENDED.has(errno)) return undefined;
    throw lockError(lockPath, errnoName(errno));
  }
  let st: Stats;
  try {
    st = fstatSync(fd);
  } catch (err) {
    drop();
    throw diskError(err, lockPath, "cannot lock");
  }
  // filelock drops a lock on a file that was unlinked meanwhile (it no longer excludes anyone).
  if (st.nlink === 0) {
    drop();
    return undefined;
  }
  // As filelock does (the umask took group write off a new file); not ours: leave it. Skipped when
  // the mode is already right (a rerun over the same cache).
  if ((st.mode & 0o777) !== LOCK_MODE) {
    try {
      fchmodSync(fd, LOCK_MODE);
    } catch {
      // another user's lock file
    }
  }
  let released = false;
  // No LOCK_UN first: closing the only descriptor of the open file description drops the flock,
  // and the release resolves only once the close is done.
  return async () => {
    if (released) return;
    released = true;
    drop();
  };
}

/**
 * Whether some process holds the lock at `lockPath` (this one included, through another tryLock).
 * A missing lock file is not held. Takes a shared lock for an instant, so it never blocks a holder.
 */
export async function isLocked(lockPath: string): Promise<boolean> {
  let fd: number;
  try {
    fd = await openFd(lockPath, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as { code?: string }).code ?? "";
    if (code === "ENOENT") return false;
    throw diskError(err, lockPath, "cannot lock");
  }
  try {
    if (flock(fd, LOCK_SH | LOCK_NB) === 0) {
      flock(fd, LOCK_UN);
      return false;
    }
    const errno = koffi.errno();
    if (CONTENDED.has(errno)) return true;
    throw lockError(lockPath, errnoName(errno));
  } finally {
    await closeFd(fd);
  }
}
