// The benchmark's repos, generated once into bench/work/data and reused while the manifest's sizes match.
// Bytes come from an AES-256-CTR keystream keyed by the dataset name: incompressible, and the same on
// every machine. Hashes are real (computed while writing).
//
//   bench/work/data/blobs/<sha256>            big LFS files, named by hash so nginx serves them as is
//   bench/work/data/<name>/files/<path>       the small regular files of a many-files dataset
//   bench/work/data/<name>.json               the manifest: spec + every file's path, size, sha256
import { createCipheriv, createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { exists, fmtBytes, log, MIB, mapLimit, WORK_DIR } from "./util.js";

export const DATA_DIR = join(WORK_DIR, "data");
export const BLOBS_DIR = join(DATA_DIR, "blobs");
const MANIFEST_VERSION = 1;

export type DatasetSpec =
  | { kind: "big"; name: string; size: number; path: string }
  | { kind: "many"; name: string; count: number; minSize: number; maxSize: number };

export interface DataFile {
  /** Path inside the repo. */
  path: string;
  size: number;
  sha256: string;
  /** Absolute path of the bytes on disk. */
  abs: string;
  /** Big files are LFS (redirected to nginx); small ones are regular files served by the hub. */
  lfs: boolean;
  /** git blob sha1 of a regular file (saves the fake hub a pass over the bytes). */
  gitSha1?: string;
}

export interface Dataset {
  spec: DatasetSpec;
  files: DataFile[];
  totalBytes: number;
}

interface Manifest {
  version: number;
  spec: DatasetSpec;
  files: { path: string; size: number; sha256: string; rel: string; lfs: boolean; gitSha1?: string }[];
}

/** Deterministic incompressible bytes: an AES-256-CTR keystream keyed by `seed`. */
class Keystream {
  private readonly cipher;
  constructor(seed: string) {
    const key = createHash("sha256").update(`hfget-bench:${seed}`).digest();
    this.cipher = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  }
  next(n: number): Buffer {
    return this.cipher.update(Buffer.alloc(n));
  }
}

function manyFilePath(i: number): string {
  // 10 x 10 folders of 30 files for 3000: nested like a sharded dataset.
  const group = Math.floor(i / 300);
  const shard = Math.floor(i / 30) % 10;
  return `data/part-${String(group).padStart(2, "0")}/shard-${String(shard).padStart(2, "0")}/sample-${String(i).padStart(5, "0")}.bin`;
}

async function generateBig(spec: Extract<DatasetSpec, { kind: "big" }>): Promise<Manifest> {
  await mkdir(BLOBS_DIR, { recursive: true });
  const tmp = join(BLOBS_DIR, `.gen-${spec.name}.tmp`);
  const stream = new Keystream(spec.name);
  const hash = createHash("sha256");
  const fh = await open(tmp, "w");
  try {
    const block = 4 * MIB;
    for (let done = 0; done < spec.size; ) {
      const n = Math.min(block, spec.size - done);
      const buf = stream.next(n);
      hash.update(buf);
      await fh.write(buf, 0, n);
      done += n;
    }
  } finally {
    await fh.close();
  }
  const sha256 = hash.digest("hex");
  await rename(tmp, join(BLOBS_DIR, sha256));
  return {
    version: MANIFEST_VERSION,
    spec,
    files: [{ path: spec.path, size: spec.size, sha256, rel: join("blobs", sha256), lfs: true }],
  };
}

async function generateMany(spec: Extract<DatasetSpec, { kind: "many" }>): Promise<Manifest> {
  const root = join(DATA_DIR, spec.name);
  await rm(root, { recursive: true, force: true });
  const stream = new Keystream(spec.name);
  const files: Manifest["files"] = [];
  const span = spec.maxSize - spec.minSize + 1;
  for (let i = 0; i < spec.count; i++) {
    // Size from the keystream too, so the whole dataset follows from its name.
    const size = spec.minSize + (stream.next(4).readUInt32BE(0) % span);
    const content = stream.next(size);
    const path = manyFilePath(i);
    const rel = join(spec.name, "files", path);
    const abs = join(DATA_DIR, rel);
    await mkdir(dirname(abs), { recursive: true });
    await writeFile(abs, content);
    files.push({
      path,
      size,
      sha256: createHash("sha256").update(content).digest("hex"),
      rel,
      lfs: false,
      gitSha1: createHash("sha1").update(`blob ${size}\0`).update(content).digest("hex"),
    });
  }
  return { version: MANIFEST_VERSION, spec, files };
}

async function manifestStillValid(m: Manifest, spec: DatasetSpec): Promise<boolean> {
  if (m.version !== MANIFEST_VERSION || JSON.stringify(m.spec) !== JSON.stringify(spec)) return false;
  const ok = await mapLimit(m.files, 32, async (f) => {
    try {
      return (await stat(join(DATA_DIR, f.rel))).size === f.size;
    } catch {
      return false;
    }
  });
  return ok.every(Boolean);
}

/** Returns the dataset, generating it first unless a manifest with matching sizes is already there. */
export async function ensureDataset(spec: DatasetSpec): Promise<Dataset> {
  await mkdir(DATA_DIR, { recursive: true });
  const manifestPath = join(DATA_DIR, `${spec.name}.json`);
  let manifest: Manifest | undefined;
  if (await exists(manifestPath)) {
    try {
      const m = JSON.parse(await readFile(manifestPath, "utf8")) as Manifest;
      if (await manifestStillValid(m, spec)) manifest = m;
    } catch {
      manifest = undefined;
    }
  }
  if (manifest === undefined) {
    const t0 = performance.now();
    manifest = spec.kind === "big" ? await generateBig(spec) : await generateMany(spec);
    await writeFile(manifestPath, `${JSON.stringify(manifest, null, 1)}\n`);
    const total = manifest.files.reduce((a, f) => a + f.size, 0);
    log(
      `generated ${spec.name}: ${manifest.files.length} files, ${fmtBytes(total)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  } else {
    log(`reusing ${spec.name} from ${DATA_DIR}`);
  }
  const files = manifest.files.map((f): DataFile => {
    const file: DataFile = {
      path: f.path,
      size: f.size,
      sha256: f.sha256,
      abs: join(DATA_DIR, f.rel),
      lfs: f.lfs,
    };
    if (f.gitSha1 !== undefined) file.gitSha1 = f.gitSha1;
    return file;
  });
  return { spec, files, totalBytes: files.reduce((a, f) => a + f.size, 0) };
}

/** Reads every file once so that no tool pays for a cold page cache. */
export async function warmPageCache(ds: Dataset): Promise<void> {
  await mapLimit(ds.files, 16, async (f) => {
    const s = createReadStream(f.abs, { highWaterMark: 4 * MIB });
    for await (const _ of s) {
      // discard
    }
  });
}
