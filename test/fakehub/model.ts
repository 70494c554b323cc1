// Repository model of the fake hub: files with real hashes, commits, refs.
import { createCipheriv, createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { finished } from "node:stream/promises";

export type RepoType = "model" | "dataset" | "space";

export interface FakeFile {
  /** Path inside the repo, "/"-separated: "sub/dir/file.bin". */
  path: string;
  /** Real content size in bytes. */
  size: number;
  /** Git blob sha1 of what git stores: for LFS files the pointer text, else the content. */
  gitOid: string;
  /** Present => LFS file, served by a 302 to the CDN. */
  lfs?: { sha256: string; pointerSize: number };
  /** Content bytes [start, endExclusive). */
  read(start: number, endExclusive: number): NodeJS.ReadableStream;
}

export interface FakeCommit {
  /** 40 lowercase hex. */
  sha: string;
  files: FakeFile[];
  /** ISO date used for lastModified (optional; a fixed date otherwise). */
  date?: string;
}

export interface FakeRepo {
  type: RepoType;
  /** "org/name" or "name". */
  id: string;
  /** Downloads (resolve) need the test token. Metadata and listing stay public, like the real hub. */
  gated?: boolean;
  /** Behaves like not-found to anyone without the test token. */
  private?: boolean;
  commits: FakeCommit[];
  /** "main" -> sha, "v1.0" -> sha, "refs/pr/1" -> sha. */
  refs: Record<string, string>;
}

export const TEST_TOKEN = "hf_testtoken_SECRET_0123456789";

const CHUNK = 64 * 1024;

export function sha1Hex(data: Buffer | string): string {
  return createHash("sha1").update(data).digest("hex");
}

export function sha256Hex(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** git blob sha1: sha1("blob <size>\0" + bytes). */
export function gitBlobSha1(content: Buffer): string {
  return createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex");
}

export function lfsPointer(sha256: string, size: number): string {
  return `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${size}\n`;
}

/** Deterministic 40-hex commit sha. */
export function makeCommitSha(seed: string): string {
  return sha1Hex(`fakehub-commit:${seed}`);
}

function seededCipher(seed: number) {
  const key = createHash("sha256").update(`fakehub-seed:${seed}`).digest();
  return createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
}

/** Deterministic, incompressible bytes (AES-256-CTR keystream keyed by the seed). */
export function randomBytesSeeded(seed: number, size: number): Buffer {
  return seededCipher(seed).update(Buffer.alloc(size));
}

/**
 * Writes `size` seeded bytes to `absPath` without holding them in memory (for multi-GiB fixtures).
 * The bytes equal randomBytesSeeded(seed, size). Returns the sha256 so fileFromDisk need not re-read.
 */
export async function writeSeededFile(
  absPath: string,
  seed: number,
  size: number,
): Promise<{ sha256: string; size: number }> {
  const cipher = seededCipher(seed);
  const hash = createHash("sha256");
  const out = createWriteStream(absPath);
  const zeros = Buffer.alloc(1024 * 1024);
  let left = size;
  try {
    while (left > 0) {
      const n = Math.min(left, zeros.length);
      const chunk = cipher.update(n === zeros.length ? zeros : zeros.subarray(0, n));
      hash.update(chunk);
      left -= n;
      if (!out.write(chunk)) {
        await new Promise<void>((resolve, reject) => {
          const onDrain = () => {
            out.off("error", onError);
            resolve();
          };
          const onError = (err: Error) => {
            out.off("drain", onDrain);
            reject(err);
          };
          out.once("drain", onDrain);
          out.once("error", onError);
        });
      }
    }
    out.end();
    await finished(out);
  } catch (err) {
    out.destroy();
    throw err;
  }
  return { sha256: hash.digest("hex"), size };
}

function* sliceChunks(buf: Buffer): Generator<Buffer> {
  for (let off = 0; off < buf.length; off += CHUNK)
    yield buf.subarray(off, Math.min(buf.length, off + CHUNK));
}

function checkRange(path: string, size: number, start: number, endExclusive: number): void {
  if (!(Number.isInteger(start) && Number.isInteger(endExclusive)) || start < 0 || endExclusive > size) {
    throw new RangeError(`fakehub: bad read range [${start}, ${endExclusive}) of ${path} (size ${size})`);
  }
}

export function fileFromBuffer(path: string, content: Buffer, opts?: { lfs?: boolean }): FakeFile {
  const size = content.length;
  const read = (start: number, endExclusive: number): NodeJS.ReadableStream => {
    checkRange(path, size, start, Math.max(start, endExclusive));
    return Readable.from(sliceChunks(content.subarray(start, Math.max(start, endExclusive))));
  };
  if (opts?.lfs === true) {
    const sha256 = sha256Hex(content);
    const pointer = Buffer.from(lfsPointer(sha256, size));
    return { path, size, gitOid: gitBlobSha1(pointer), lfs: { sha256, pointerSize: pointer.length }, read };
  }
  return { path, size, gitOid: gitBlobSha1(content), read };
}

/**
 * A file whose content lives on disk, read in ranges with fs.createReadStream (never buffered whole).
 * Missing hashes are computed by streaming the file once. `gitOid` may be given for regular files
 * to skip the sha1 pass.
 */
export async function fileFromDisk(
  path: string,
  absPath: string,
  opts: { lfs: boolean; sha256?: string; size?: number; gitOid?: string },
): Promise<FakeFile> {
  const size = opts.size ?? (await stat(absPath)).size;
  const read = (start: number, endExclusive: number): NodeJS.ReadableStream => {
    checkRange(path, size, start, Math.max(start, endExclusive));
    if (endExclusive <= start) return Readable.from([]);
    return createReadStream(absPath, { start, end: endExclusive - 1, highWaterMark: 256 * 1024 });
  };
  if (opts.lfs) {
    let sha256 = opts.sha256;
    if (sha256 === undefined) {
      const hash = createHash("sha256");
      for await (const chunk of createReadStream(absPath, { highWaterMark: 1024 * 1024 })) {
        hash.update(chunk as Buffer);
      }
      sha256 = hash.digest("hex");
    }
    const pointer = Buffer.from(lfsPointer(sha256, size));
    return { path, size, gitOid: gitBlobSha1(pointer), lfs: { sha256, pointerSize: pointer.length }, read };
  }
  let gitOid = opts.gitOid;
  if (gitOid === undefined) {
    const hash = createHash("sha1").update(`blob ${size}\0`);
    for await (const chunk of createReadStream(absPath, { highWaterMark: 1024 * 1024 })) {
      hash.update(chunk as Buffer);
    }
    gitOid = hash.digest("hex");
  }
  return { path, size, gitOid, read };
}

/** A repo with one commit (sha from makeCommitSha(`${type}/${id}/0`)) that "main" points at. */
export function makeRepo(
  id: string,
  files: FakeFile[],
  opts?: { type?: RepoType; gated?: boolean; private?: boolean; refs?: Record<string, string> },
): FakeRepo {
  const type = opts?.type ?? "model";
  const sha = makeCommitSha(`${type}/${id}/0`);
  const repo: FakeRepo = { type, id, commits: [{ sha, files }], refs: { main: sha, ...opts?.refs } };
  if (opts?.gated !== undefined) repo.gated = opts.gated;
  if (opts?.private !== undefined) repo.private = opts.private;
  return repo;
}

/** Adds a commit to `repo` and points `ref` (default "main") at it. Returns the new sha. */
export function pushCommit(repo: FakeRepo, files: FakeFile[], ref = "main"): string {
  const sha = makeCommitSha(`${repo.type}/${repo.id}/${repo.commits.length}`);
  repo.commits.push({ sha, files });
  repo.refs[ref] = sha;
  return sha;
}
