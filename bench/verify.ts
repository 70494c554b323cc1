// Checks a tool's output after the timed run: every expected file present with the expected sha256.
// Extra files (other than the tool's known bookkeeping) are reported too.
import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { Dataset } from "./data.js";
import { listFilesRecursive, MIB, mapLimit, sha256File, sha256SmallFile } from "./util.js";

export interface VerifyResult {
  ok: boolean;
  checked: number;
  /** Missing files, wrong sizes, wrong hashes (at most 20 listed). */
  problems: string[];
  problemCount: number;
  /** Files in the output that are not in the repo (at most 20 listed). */
  extras: string[];
  extraCount: number;
}

export async function verifyOutput(
  ds: Dataset,
  root: string,
  listRoot: string,
  isBookkeeping: (rel: string) => boolean,
): Promise<VerifyResult> {
  const problems: string[] = [];
  let problemCount = 0;
  const note = (msg: string) => {
    problemCount++;
    if (problems.length < 20) problems.push(msg);
  };
  await mapLimit(ds.files, ds.files.length > 1 ? 16 : 1, async (f) => {
    const abs = join(root, f.path);
    let size: number;
    try {
      size = (await stat(abs)).size;
    } catch {
      note(`${f.path}: missing`);
      return;
    }
    if (size !== f.size) {
      note(`${f.path}: size ${size}, expected ${f.size}`);
      return;
    }
    const got = f.size > 4 * MIB ? await sha256File(abs) : await sha256SmallFile(abs);
    if (got !== f.sha256) note(`${f.path}: sha256 ${got}, expected ${f.sha256}`);
  });

  // Extras are looked for under the directory the tool was given (listRoot); expected files are under root.
  const expected = new Set(ds.files.map((f) => join(root, f.path)));
  const extras: string[] = [];
  let extraCount = 0;
  for (const rel of await listFilesRecursive(listRoot)) {
    if (expected.has(join(listRoot, rel)) || isBookkeeping(rel)) continue;
    extraCount++;
    if (extras.length < 20) extras.push(rel);
  }
  return { ok: problemCount === 0, checked: ds.files.length, problems, problemCount, extras, extraCount };
}
