import { localVerdict } from "../cache/local-metadata.js";
import { expectedHash, type RepoFile } from "../hub/types.js";
import type { FileSurvey } from "./survey.js";

/**
 * The plan step (DESIGN §2): a pure function of listing + survey + options. No I/O: the engine
 * re-checks under the lock, because another client may have changed the disk since the survey.
 */
/**
 * `reuse`: an LFS blob this repo lacks is in another repo of the same cache; the commit step hard-links
 * (or copies) and re-hashes it instead of fetching, and fetches after all when it does not verify.
 */
export type PlanAction = "present" | "link" | "reuse" | "resume" | "fetch";

export interface FilePlan {
  readonly path: string;
  readonly action: PlanAction;
  /**
   * Bytes already on disk that this run keeps (whole file for present/link/reuse, resume-state bytes
   * for resume).
   */
  readonly bytesDone: number;
  readonly bytesToFetch: number;
}

export interface PlanOptions {
  readonly force: boolean;
  /** Files below this size keep no resume state (the engine's STATE_MIN_BYTES). */
  readonly resumeMinBytes?: number;
}

/** hfget resumes files of at least 1 MiB (smaller ones keep no state). */
export const RESUME_MIN_BYTES = 1024 * 1024;

/**
 * A local-dir file is present as huggingface_hub decides it (local-metadata.ts `localVerdict`):
 * trusted metadata, or, without usable metadata, an LFS file whose bytes the survey hashed right.
 */
function localPresent(file: RepoFile, s: FileSurvey): boolean {
  if (s.localMtimeMs === undefined) return false;
  const verdict = localVerdict(expectedHash(file), s.localMtimeMs, s.metadata);
  return verdict === "trusted" || (verdict === "hash" && s.localHashOk === true);
}

export function planFile(file: RepoFile, s: FileSurvey | undefined, opts: PlanOptions): FilePlan {
  const fetch: FilePlan = { path: file.path, action: "fetch", bytesDone: 0, bytesToFetch: file.size };
  if (s === undefined) return fetch;
  if (!opts.force) {
    if (s.blobSize !== undefined) {
      // A blob of another size is not the one listed: refetched and replaced, never present.
      if (s.blobSize === file.size) {
        const action = s.linkOk ? "present" : "link";
        return { path: file.path, action, bytesDone: file.size, bytesToFetch: 0 };
      }
    } else if (s.localSize !== undefined && s.localSize === file.size && localPresent(file, s)) {
      return { path: file.path, action: "present", bytesDone: file.size, bytesToFetch: 0 };
    }
    // Before resume: a verified copy on disk costs no network at all.
    if (s.reuseFrom !== undefined && s.reuseFrom.length > 0) {
      return { path: file.path, action: "reuse", bytesDone: file.size, bytesToFetch: 0 };
    }
  }
  const min = opts.resumeMinBytes ?? RESUME_MIN_BYTES;
  // The engine resumes only a preallocated partial file with matching state.
  if (file.size >= min && s.partialSize === file.size && s.resumeDone !== undefined && s.resumeDone > 0) {
    const done = Math.min(s.resumeDone, file.size);
    return { path: file.path, action: "resume", bytesDone: done, bytesToFetch: file.size - done };
  }
  return fetch;
}

export function planFiles(
  files: readonly RepoFile[],
  surveys: ReadonlyMap<string, FileSurvey>,
  opts: PlanOptions,
): FilePlan[] {
  return files.map((f) => planFile(f, surveys.get(f.path), opts));
}
