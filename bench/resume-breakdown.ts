// Where the resume scenario's bytes fetched twice come from, for hfget: after the kill (outside the
// timed part) the partial file and its resume state are compared with the generated source file.
//   recorded      bytes the state file names as written (a rerun trusts them)
//   unrecorded    bytes correct on disk in the state's gaps (written, not yet saved in the state)
//   unwritten     what the CDN delivered to the killed run minus both (in hfget's write blocks, its
//                 socket buffers or undici's stream when the kill came)
// The rerun's extra is what it fetched beyond the gaps the state left.
import { open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { journalPath, readJournal } from "../src/state.js";

export interface PartialCheck {
  /** Bytes the resume state records (its JSON and its journal, as a rerun trusts them). */
  recordedBytes: number;
  /** Of them, bytes only the journal records. */
  journalOnlyBytes: number;
  /** Bytes in the state's gaps that are on disk and equal to the source (4 KiB blocks). */
  unrecordedOnDiskBytes: number;
  /** The state file's ranges (how fragmented the record is). */
  ranges: number;
}

async function findFiles(dir: string, suffix: string, out: string[] = []): Promise<string[]> {
  let entries: import("node:fs").Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await findFiles(p, suffix, out);
    else if (e.name.endsWith(suffix)) out.push(p);
  }
  return out;
}

const BLOCK = 4096;
const READ = 4 * 1024 * 1024;

function merge(rs: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [a, b] of [...rs].sort((x, y) => x[0] - y[0])) {
    const last = out[out.length - 1];
    if (last !== undefined && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** Gaps of `done` within [0, size), sorted and merged. */
function gaps(done: [number, number][], size: number): [number, number][] {
  const sorted = [...done].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  let at = 0;
  for (const [s, e] of sorted) {
    if (s > at) out.push([at, s]);
    at = Math.max(at, e);
  }
  if (at < size) out.push([at, size]);
  return out;
}

/**
 * Compares hfget's partial file under `outDir` with `source` (the generated file). Undefined when no
 * partial file and state are found (another tool, or hfget had not started writing).
 */
export async function checkPartial(
  outDir: string,
  source: string,
  size: number,
): Promise<PartialCheck | undefined> {
  const states = await findFiles(outDir, ".hfget-partial.json");
  const partials = await findFiles(outDir, ".hfget-partial");
  if (states.length !== 1 || partials.length !== 1) return undefined;
  let json: [number, number][];
  let log: string | undefined;
  try {
    const raw = JSON.parse(await readFile(states[0]!, "utf8")) as { done?: [number, number][]; log?: string };
    json = Array.isArray(raw.done) ? raw.done : [];
    log = typeof raw.log === "string" ? raw.log : undefined;
  } catch {
    json = [];
  }
  const logged = log === undefined ? undefined : readJournal(journalPath(states[0]!), log, size);
  const done = merge([...json, ...(logged ?? []).map(([a, b]): [number, number] => [a, b])]);
  const bytes = (rs: [number, number][]) => rs.reduce((a, [s, e]) => a + (e - s), 0);
  const recordedBytes = bytes(done);
  const a = await open(partials[0]!, "r");
  const b = await open(source, "r");
  let unrecorded = 0;
  try {
    const bufA = Buffer.allocUnsafe(READ);
    const bufB = Buffer.allocUnsafe(READ);
    for (const [gs, ge] of gaps(done, size)) {
      // Whole 4 KiB blocks inside the gap only: the edges are at most a block each.
      let pos = Math.ceil(gs / BLOCK) * BLOCK;
      const end = Math.floor(ge / BLOCK) * BLOCK;
      while (pos < end) {
        const n = Math.min(READ, end - pos);
        const ra = await a.read(bufA, 0, n, pos);
        const rb = await b.read(bufB, 0, n, pos);
        const m = Math.min(ra.bytesRead, rb.bytesRead);
        for (let off = 0; off + BLOCK <= m; off += BLOCK) {
          if (bufA.compare(bufB, off, off + BLOCK, off, off + BLOCK) === 0) unrecorded += BLOCK;
        }
        if (m < n) break;
        pos += n;
      }
    }
  } finally {
    await a.close();
    await b.close();
  }
  return {
    recordedBytes,
    journalOnlyBytes: recordedBytes - bytes(merge(json)),
    unrecordedOnDiskBytes: unrecorded,
    ranges: done.length,
  };
}
