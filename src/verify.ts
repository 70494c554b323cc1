import { createHash, type Hash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import type { ExpectedHash } from "./hub/types.js";
import type { RangeSet } from "./util/range-set.js";

/** sha256 of the content, or git's blob sha1: sha1("blob <size>\0" + content). */
export function createContentHash(expected: ExpectedHash, size: number): Hash {
  if (expected.algorithm === "sha256") return createHash("sha256");
  const h = createHash("sha1");
  h.update(`blob ${size}\0`);
  return h;
}

const READ_BLOCK = 1024 * 1024;

/** Hashes a whole file on disk; true when it matches. */
export async function fileMatches(path: string, expected: ExpectedHash, size: number): Promise<boolean> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, "r");
    const st = await fh.stat();
    if (st.size !== size) return false;
    const h = createContentHash(expected, size);
    const buf = Buffer.allocUnsafe(READ_BLOCK);
    for (let at = 0; at < size; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(READ_BLOCK, size - at), at);
      if (bytesRead === 0) return false;
      h.update(buf.subarray(0, bytesRead));
      at += bytesRead;
    }
    return h.digest("hex") === expected.hex;
  } catch {
    return false;
  } finally {
    await fh?.close();
  }
}

/**
 * Hashes a file while it is being downloaded out of order. Bytes that arrive exactly at the hash
 * cursor are hashed from memory; everything else is read back from disk (the page cache) as soon
 * as the cursor reaches it, so by the time the last byte lands little is left to hash.
 */
export class HashPump {
  readonly #fh: FileHandle;
  readonly #size: number;
  readonly #written: RangeSet;
  readonly #hash: Hash;
  #hashed = 0;
  #busy = false;
  #failed: unknown;
  #waiters: (() => void)[] = [];
  #buf: Buffer | undefined;
  readonly #onPrefix: ((bytes: number) => void) | undefined;

  /** `onPrefix` hears the in-order hashed prefix each time it grows (hfget serve streams it). */
  constructor(
    fh: FileHandle,
    size: number,
    expected: ExpectedHash,
    written: RangeSet,
    onPrefix?: (bytes: number) => void,
  ) {
    this.#onPrefix = onPrefix;
    this.#fh = fh;
    this.#size = size;
    this.#written = written;
    this.#hash = createContentHash(expected, size);
  }

  get hashedBytes(): number {
    return this.#hashed;
  }

  /** `buf` was just written at `offset` (and already added to the written set). */
  onWritten(offset: number, buf: Buffer): void {
    if (!this.#busy && offset === this.#hashed) {
      this.#hash.update(buf);
      this.#hashed += buf.length;
      this.#wake();
    }
    this.kick();
  }

  /** Hash whatever contiguous bytes are on disk past the cursor. */
  kick(): void {
    if (this.#busy || this.#failed !== undefined) return;
    if (this.#written.coveredUntil(this.#hashed) <= this.#hashed) return;
    this.#busy = true;
    void this.#catchUp().then(
      () => {
        this.#busy = false;
        this.#wake();
        this.kick();
      },
      (err: unknown) => {
        this.#busy = false;
        this.#failed = err;
        this.#wake();
      },
    );
  }

  async #catchUp(): Promise<void> {
    this.#buf ??= Buffer.allocUnsafe(READ_BLOCK);
    const buf = this.#buf;
    for (let until = this.#written.coveredUntil(this.#hashed); until > this.#hashed; ) {
      const n = Math.min(READ_BLOCK, until - this.#hashed);
      const { bytesRead } = await this.#fh.read(buf, 0, n, this.#hashed);
      if (bytesRead === 0) throw new Error("file shorter than its written ranges");
      this.#hash.update(buf.subarray(0, bytesRead));
      this.#hashed += bytesRead;
      this.#onPrefix?.(this.#hashed);
      if (this.#hashed >= until) until = this.#written.coveredUntil(this.#hashed);
    }
  }

  #wake(): void {
    this.#onPrefix?.(this.#hashed);
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Once every byte is written: the hex digest of the whole file. */
  async digest(): Promise<string> {
    while (this.#hashed < this.#size) {
      if (this.#failed !== undefined) throw this.#failed;
      if (!this.#busy && this.#written.coveredUntil(this.#hashed) <= this.#hashed) {
        throw new Error(`hash cursor stuck at ${this.#hashed} of ${this.#size}: bytes missing`);
      }
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        this.kick();
      });
    }
    if (this.#failed !== undefined) throw this.#failed;
    return this.#hash.digest("hex");
  }
}
