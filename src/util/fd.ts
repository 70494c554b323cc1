import fs from "node:fs";
import { promisify } from "node:util";

/**
 * Raw-descriptor file calls (numbers, not `FileHandle`s) for the few files of a small download
 * that are opened, touched once and closed: the lock file and huggingface_hub's metadata file.
 * Measured here, open+fstat+close through `fs/promises` costs ~1.3-1.6x the CPU of the same calls
 * on a descriptor (each FileHandle is an object with a finalizer and its own promise plumbing),
 * and a 3000-file dataset makes ~6 such calls per file. The caller closes what it opens.
 */
export const openFd: (path: string, flags: number, mode?: number) => Promise<number> = promisify(fs.open);
export const closeFd: (fd: number) => Promise<void> = promisify(fs.close);
