import { HfgetError } from "../errors.js";

/** A Node errno error (ENOENT, EACCES, ENOSPC, ...), as fs and net calls throw them. */
export function isErrnoError(err: unknown): err is NodeJS.ErrnoException {
  const code: unknown = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code);
}

/**
 * The disk side of the I/O boundary: an errno error becomes DISK naming `path`; an HfgetError and
 * anything else (a bug: it must surface as "internal error", never as a disk problem) pass unchanged.
 */
export function diskErrorAt(err: unknown, path: string): unknown {
  if (err instanceof HfgetError || !isErrnoError(err)) return err;
  const code = err.code ?? "";
  return new HfgetError("DISK", `cannot write ${path}: ${code}`, {
    hint:
      code === "ENOSPC" || code === "EDQUOT"
        ? "free some space, then rerun"
        : "check the permissions and space of the target folder",
    cause: err,
  });
}

/** Runs `fn`, turning its errno errors into DISK errors naming `path`. */
export async function atPath<T>(path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw diskErrorAt(err, path);
  }
}
