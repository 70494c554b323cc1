// Builds an Engine directly over fake hubs (library level, no CLI): FileWork with one source per hub.
import { existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { cachePlacement, SafeDirs } from "../src/cache/commit.js";
import { cachePaths } from "../src/cache/paths.js";
import { buildConfig, type Config } from "../src/config.js";
import type { DownloadEvent } from "../src/events.js";
import { Engine, type FileOutcome, type FileWork } from "../src/fetch/engine.js";
import { SourcePool } from "../src/fetch/sources.js";
import type { RepoFile } from "../src/hub/types.js";
import { openSession } from "../src/session.js";
import type { Sleep } from "../src/util/retry.js";
import type { FakeFile, FakeRepo } from "./fakehub/index.js";
import { sha256File } from "./helpers.js";

export const noSleep: Sleep = async (_ms, signal) => {
  if (signal?.aborted) throw signal.reason;
};

export function repoFile(f: FakeFile): RepoFile {
  return f.lfs
    ? { path: f.path, size: f.size, gitOid: f.gitOid, lfs: { sha256: f.lfs.sha256 } }
    : { path: f.path, size: f.size, gitOid: f.gitOid };
}

export interface EngineRun {
  readonly outcomes?: Map<string, FileOutcome>;
  readonly error?: unknown;
  readonly events: DownloadEvent[];
  readonly pool: SourcePool;
  readonly config: Config;
  /** The committed blob of a file (by its content hash), or undefined. */
  sha256Of(f: FakeFile): string | undefined;
}

export interface EngineRunOptions {
  readonly cacheDir: string;
  /** Endpoint base URLs, in order of preference. */
  readonly endpoints: readonly string[];
  readonly connections?: number;
  readonly chunkSize?: string;
  readonly retries?: number;
  readonly timeout?: number;
  /** Files at least this big are hashed on the hash thread (0: every file). */
  readonly hashThreadMinBytes?: number;
  readonly signal?: AbortSignal;
  readonly onEvent?: (e: DownloadEvent, works: readonly FileWork[]) => void;
  readonly sleep?: Sleep;
  /** The run's source pool (a new one when absent). */
  readonly pool?: SourcePool;
  /** Runs once the works are built, before run(). */
  readonly before?: (works: readonly FileWork[]) => Promise<void> | void;
  /**
   * Feeds the works itself while run() runs: the engine starts with none and `more`, and `feed`
   * must add() them and end() it.
   */
  readonly feed?: (engine: Engine, works: readonly FileWork[]) => Promise<void>;
}

/** Runs the engine over `files` of `repo` (first commit), every file with a source on each endpoint. */
export async function runEngine(
  repo: FakeRepo,
  files: readonly FakeFile[],
  o: EngineRunOptions,
): Promise<EngineRun> {
  const commit = repo.commits[0]!.sha;
  const config = buildConfig(
    {
      repoId: repo.id,
      mirror: o.endpoints[0]!,
      cacheDir: o.cacheDir,
      connections: o.connections ?? 4,
      chunkSize: o.chunkSize ?? "1M",
      retries: o.retries ?? 2,
      ...(o.timeout === undefined ? {} : { timeout: o.timeout }),
    },
    {},
  );
  const session = openSession(config, { sleep: o.sleep ?? noSleep });
  const cache = cachePaths(config.cacheDir, config.repo);
  mkdirSync(cache.repoDir, { recursive: true });
  const dirs = new SafeDirs(cache.repoDir);
  const works: FileWork[] = files.map((f) => {
    const file = repoFile(f);
    const placement = cachePlacement(cache, commit, file, dirs);
    mkdirSync(dirname(placement.lock), { recursive: true });
    const path = f.path.split("/").map(encodeURIComponent).join("/");
    return {
      file,
      sources: o.endpoints.map((endpoint) => ({
        endpoint,
        url: `${endpoint}/${repo.id}/resolve/${commit}/${path}`,
      })),
      placement,
      force: false,
    };
  });
  await o.before?.(works);
  const events: DownloadEvent[] = [];
  const pool = o.pool ?? new SourcePool();
  const engine = new Engine(
    {
      http: session.hub.http,
      options:
        o.hashThreadMinBytes === undefined ? config : { ...config, hashThreadMinBytes: o.hashThreadMinBytes },
      retry: session.hub.retry,
      signal: o.signal ?? new AbortController().signal,
      sleep: o.sleep ?? noSleep,
      emit: (e) => {
        events.push(e);
        o.onEvent?.(e, works);
      },
      pool,
    },
    o.feed === undefined ? works : [],
    { more: o.feed !== undefined },
  );
  const sha256Of = (f: FakeFile): string | undefined => {
    const blob = cache.blob(f.lfs ? f.lfs.sha256 : f.gitOid);
    return existsSync(blob) ? sha256File(blob) : undefined;
  };
  try {
    const running = engine.run();
    if (o.feed !== undefined) await o.feed(engine, works);
    const outcomes = await running;
    return { outcomes, events, pool, config, sha256Of };
  } catch (error) {
    return { error, events, pool, config, sha256Of };
  } finally {
    await session.close();
  }
}

/** Endpoints named by source-set-aside events. */
export function setAside(run: EngineRun, kind?: "request" | "a while" | "run"): Set<string> {
  const out = new Set<string>();
  for (const e of run.events)
    if (e.type === "source-set-aside" && (kind === undefined || e.for === kind)) out.add(e.endpoint);
  return out;
}
