import { HfgetError } from "../errors.js";

/** A Node errno error (ENOENT, EACCES, ENOSPC, ...), as fs and net calls throw them. */
export function isErrnoError(err: unknown): err is NodeJS.ErrnoException {
  const code: unknown = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code);
}

const REASONS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ENOTDIR: "a part of the path is a file, not a folder",
  EEXIST: "it is a file, not a folder",
  EISDIR: "a folder is in the way",
  ENOENT: "the file system does not allow creating it",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
};

/**
 * The disk side of the I/O boundary, the one place an errno error becomes DISK (exit 7): one line
 * naming `path` and the reason. An HfgetError and anything else (a bug: it must surface as
 * "internal error", never as a disk problem) pass unchanged. `what` says what was being done.
 */
export function diskError(err: unknown, path: string, what = "cannot write"): unknown {
  if (err instanceof HfgetError || !isErrnoError(err)) return err;
  const code = err.code ?? "";
  const reason = REASONS[code];
  return new HfgetError("DISK", `${what} ${path}: ${reason === undefined ? code : `${reason} (${code})`}`, {
    hint:
      code === "ENOSPC" || code === "EDQUOT"
        ? "free some space, then rerun"
        : "choose a folder you can write to (--local-dir / --cache-dir / HF_HOME)",
    cause: err,
  });
}

/** Runs `fn`, turning its errno errors into DISK errors naming `path` (others pass unchanged). */
export async function atPath<T>(path: string, fn: () => Promise<T>, what?: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw diskError(err, path, what);
  }
}
