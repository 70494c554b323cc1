// The project's fake hub, run inside the bench process, serving the API and resolve endpoints for one
// bench repo. LFS files redirect to nginx (`${cdnBaseUrl}/${sha256}`); regular files are served by the
// hub itself. Latency is added by the hub to every request.
import {
  type FakeFile,
  type FakeRepo,
  fileFromDisk,
  makeCommitSha,
  startFakeHub,
} from "../test/fakehub/index.js";
import type { Dataset } from "./data.js";
import { onCleanup } from "./procs.js";
import { log, mapLimit } from "./util.js";

export interface BenchRepoRef {
  type: "model" | "dataset";
  id: string;
}

export interface BenchHub {
  url: string;
  commit: string;
  /** Requests the hub has seen so far (to count them per run). */
  requestCount(): number;
  close(): Promise<void>;
}

export async function startBenchHub(
  repo: BenchRepoRef,
  dataset: Dataset,
  opts: { latencyMs: number; cdnBaseUrl: string; pageSize?: number | undefined },
): Promise<BenchHub> {
  const files: FakeFile[] = await mapLimit(dataset.files, 32, (f) => {
    if (f.lfs) return fileFromDisk(f.path, f.abs, { lfs: true, sha256: f.sha256, size: f.size });
    return fileFromDisk(
      f.path,
      f.abs,
      f.gitSha1 !== undefined
        ? { lfs: false, size: f.size, gitOid: f.gitSha1 }
        : { lfs: false, size: f.size },
    );
  });
  const commit = makeCommitSha(`bench/${repo.type}/${repo.id}/${dataset.spec.name}`);
  const fake: FakeRepo = {
    type: repo.type,
    id: repo.id,
    commits: [{ sha: commit, files }],
    refs: { main: commit },
  };
  const hub = await startFakeHub({
    repos: [fake],
    latencyMs: opts.latencyMs,
    cdnBaseUrl: opts.cdnBaseUrl,
    ...(opts.pageSize !== undefined ? { pageSize: opts.pageSize } : {}),
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    unregister();
    await hub.close();
  };
  const unregister = onCleanup(close);
  log(
    `fake hub on ${hub.url} (${repo.type} ${repo.id}, ${files.length} files, latency ${opts.latencyMs} ms, ${opts.pageSize ?? 1000} per listing page)`,
  );
  return { url: hub.url, commit, requestCount: () => hub.log.length, close };
}
