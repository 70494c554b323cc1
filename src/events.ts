import type { PlanAction } from "./plan/plan.js";
/** Typed events the engine emits; only the CLI turns them into text. */

export type FileStatus = "downloaded" | "cached" | "failed" | "planned";

export type DownloadEvent =
  /** An endpoint did not answer the metadata (revision, listing) and was set aside; `next` is tried. */
  | {
      readonly type: "endpoint-skipped";
      readonly endpoint: string;
      readonly reason: string;
      readonly next?: string;
    }
  | { readonly type: "resolved"; readonly commit: string }
  | { readonly type: "listed"; readonly files: number }
  /** The files selected for this run; the ones already present finish at once as "cached". */
  | { readonly type: "planned"; readonly files: number; readonly bytes: number }
  | {
      readonly type: "file-start";
      readonly path: string;
      readonly size: number;
      readonly resumedBytes: number;
    }
  /** New bytes written for a file (a delta). */
  | { readonly type: "bytes"; readonly path: string; readonly bytes: number }
  /** The in-order prefix written and hashed so far grew to `bytes` (absolute). */
  | { readonly type: "prefix"; readonly path: string; readonly bytes: number }
  | {
      readonly type: "retry";
      readonly path: string;
      /** The endpoint whose request failed (it is asked again, or another is, after `delayMs`). */
      readonly endpoint?: string;
      readonly attempt: number;
      readonly delayMs: number;
      readonly reason: string;
    }
  /** A hub API request (revision, file listing) failed and is tried again after `delayMs`. */
  | {
      readonly type: "api-retry";
      readonly attempt: number;
      readonly delayMs: number;
      readonly reason: string;
    }
  /** The file waits for its lock, held by another process (hfget or huggingface_hub) fetching it. */
  | { readonly type: "lock-wait"; readonly path: string; readonly lock: string }
  | { readonly type: "verify-failed"; readonly path: string; readonly willRetry: boolean }
  /**
   * An endpoint was set aside: `for` "request" (the chunk moved to another endpoint), "a while"
   * (it failed repeatedly: probed again later), or "run" (it sent bad bytes).
   */
  | {
      readonly type: "source-set-aside";
      readonly path: string;
      readonly endpoint: string;
      readonly for: "request" | "a while" | "run";
      readonly reason: string;
    }
  | { readonly type: "file-done"; readonly path: string; readonly size: number; readonly status: FileStatus };

export type EventSink = (event: DownloadEvent) => void;

export interface FileResult {
  readonly path: string;
  readonly size: number;
  readonly status: FileStatus;
  /** Where the file is: snapshot path or local-dir path. */
  readonly location: string;
  /** What the plan step decided before fetching (src/plan/plan.ts). */
  readonly action: PlanAction;
  /** Bytes the plan expected to fetch (0 when present; the rest of a resumed file). */
  readonly bytesToFetch: number;
}

export interface DownloadResult {
  readonly repo: string;
  readonly repoType: string;
  readonly revision: string;
  readonly commit: string;
  /** The snapshot folder, or the --local-dir. What stdout prints. */
  readonly path: string;
  readonly files: readonly FileResult[];
  readonly bytesTotal: number;
  /** Bytes the plan expected to fetch: bytesTotal less what is present or already resumed. */
  readonly bytesToFetch: number;
  /** Bytes fetched from the network in this run. */
  readonly bytesDownloaded: number;
  readonly seconds: number;
  readonly dryRun: boolean;
  /**
   * What each endpoint the engine asked delivered: bytes received from it this run and their
   * average rate over the fetch (bytes / seconds the engine ran); `setAside`: the last reason it
   * was set aside (for a request, a while, or the run). Absent in a dry run and offline.
   */
  readonly endpoints?: readonly EndpointResult[];
}

export interface EndpointResult {
  readonly endpoint: string;
  readonly bytes: number;
  readonly bytesPerSec: number;
  readonly setAside?: string;
}
