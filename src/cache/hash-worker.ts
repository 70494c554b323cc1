import { parentPort } from "node:worker_threads";
import { type BlobAlgorithm, hashBlob } from "./hash-blob.js";

/**
 * A verify worker thread (hash-pool.ts starts it): hashes one blob per request, reading it itself,
 * so the hashing runs on its own core instead of queueing on the main thread's. Progress goes back
 * as byte counts per read.
 */
export interface HashRequest {
  readonly id: number;
  readonly path: string;
  readonly algorithm: BlobAlgorithm;
}

export type HashReply =
  | { readonly id: number; readonly type: "bytes"; readonly bytes: number }
  | { readonly id: number; readonly type: "done"; readonly digest: string }
  | { readonly id: number; readonly type: "error"; readonly message: string };

const port = parentPort;
if (port !== null) {
  port.on("message", (req: HashRequest) => {
    const post = (r: HashReply) => port.postMessage(r);
    hashBlob(req.path, req.algorithm, (bytes) => post({ id: req.id, type: "bytes", bytes })).then(
      (digest) => post({ id: req.id, type: "done", digest }),
      (err: unknown) => post({ id: req.id, type: "error", message: (err as Error).message ?? String(err) }),
    );
  });
}
