import type { Config } from "./config.js";
import { HfgetError } from "./errors.js";
import type { ApiRevisionInfo } from "./hub/api-types.js";
import type { HubClient } from "./hub/client.js";
import { header } from "./hub/http.js";
import { listFiles } from "./hub/list-files.js";
import { type EndpointRefusal, noEndpointAnswered, reasonOf, resolveUrls } from "./hub/metadata.js";
import type { RepoFile } from "./hub/types.js";
import { repoLabel } from "./repo.js";
import type { Session } from "./session.js";

/**
 * What one endpoint is, as `hfget mirrors` sees it:
 * - `ok`: it has the commit the download would pin (the first answering endpoint's);
 * - `lagging` / `ahead`: it answers another commit for the revision, older / newer by its date
 *   (`differs` when a date is missing);
 * - `missing`: it answers, but has no such repo or revision;
 * - `refused`: 401/403 (gated, or the token is not accepted there);
 * - `down`: no answer (connection error, timeout, 5xx, 429);
 * - `error`: an answer that is not a hub's.
 */
export type MirrorStatus = "ok" | "lagging" | "ahead" | "differs" | "missing" | "refused" | "down" | "error";

export interface MirrorRead {
  /** The file read (the repo's largest at the pinned commit). */
  readonly path: string;
  readonly bytes: number;
  readonly seconds: number;
  readonly bytesPerSec: number;
  /** The origin whose answer carried the bytes (a CDN, or another host the endpoint redirected to). */
  readonly servedBy: string;
}

export interface MirrorProbe {
  readonly endpoint: string;
  readonly status: MirrorStatus;
  /** The commit it has for the revision, if it answered one. */
  readonly commit: string | undefined;
  readonly lastModified: string | undefined;
  /** Round trip of the revision API request, milliseconds (connection setup included). */
  readonly latencyMs: number | undefined;
  /** A ranged read of the largest file at the pinned commit; absent when not tried or failed. */
  readonly read: MirrorRead | undefined;
  /** What went wrong, when something did (revision, or the read). */
  readonly error: string | undefined;
}

export interface MirrorsResult {
  readonly repo: Config["repo"];
  readonly revision: string;
  /** The commit a download would pin: the first endpoint (in preference order) that answered. */
  readonly commit: string | undefined;
  /** Sorted fastest first; endpoints that did not answer last. */
  readonly endpoints: readonly MirrorProbe[];
}

export interface MirrorsOptions {
  readonly signal?: AbortSignal | undefined;
  /** Bytes read per endpoint for the throughput (default 8 MiB). */
  readonly readBytes?: number;
  /** Longest read per endpoint, milliseconds (default 5 s): the rate so far counts. */
  readonly readMs?: number;
  readonly now?: () => number;
}

const DEFAULT_READ_BYTES = 8 * 1024 * 1024;
const DEFAULT_READ_MS = 5000;

function statusOf(err: HfgetError): MirrorStatus {
  switch (err.code) {
    case "REPO_NOT_FOUND":
    case "REVISION_NOT_FOUND":
    case "ENTRY_NOT_FOUND":
      return "missing";
    case "GATED":
    case "UNAUTHORIZED":
      return "refused";
    case "PROTOCOL":
      return "error";
    default:
      return "down";
  }
}

interface Answer {
  readonly hub: HubClient;
  readonly commit?: string;
  readonly lastModified?: string;
  readonly latencyMs?: number;
  readonly error?: HfgetError;
}

/** One revision request, no retries: a mirror's first answer is what it is. */
async function askRevision(
  hub: HubClient,
  config: Config,
  signal: AbortSignal | undefined,
  now: () => number,
): Promise<Answer> {
  const what = `${repoLabel(config.repo)}@${config.revision}`;
  const once = hub.with({ retry: { ...hub.retry, retries: 0 } });
  const url = `${once.apiRepoUrl(config.repo)}/revision/${encodeURIComponent(config.revision)}`;
  const t0 = now();
  try {
    const { data } = await once.getJson(url, once.errorContext(what, "REVISION_NOT_FOUND"), signal);
    const latencyMs = now() - t0;
    const info = data as (ApiRevisionInfo & { lastModified?: unknown }) | null;
    const sha = info?.sha;
    if (typeof sha !== "string" || !/^[0-9a-f]{40}$/.test(sha)) {
      throw new HfgetError("PROTOCOL", `${what}: the revision answer has no commit sha`);
    }
    return {
      hub,
      commit: sha,
      latencyMs,
      ...(typeof info?.lastModified === "string" ? { lastModified: info.lastModified } : {}),
    };
  } catch (err) {
    if (signal?.aborted || !(err instanceof HfgetError)) throw err;
    // A prompt "not found" is an answer too: its latency is the round trip.
    return { hub, error: err, ...(statusOf(err) === "missing" ? { latencyMs: now() - t0 } : {}) };
  }
}

/** A ranged read of up to `maxBytes` of `url`, cut at `maxMs`; the rate of what arrived counts. */
async function timedRead(
  hub: HubClient,
  url: string,
  file: RepoFile,
  maxBytes: number,
  maxMs: number,
  signal: AbortSignal | undefined,
  now: () => number,
): Promise<MirrorRead> {
  const want = Math.min(file.size, maxBytes);
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  const timer = setTimeout(() => controller.abort(new Error("read time is up")), maxMs);
  const t0 = now();
  let bytes = 0;
  try {
    const res = await hub.http.request(url, {
      signal: controller.signal,
      headers: { range: `bytes=0-${want - 1}` },
    });
    const servedBy = new URL(res.url).origin;
    if (res.status !== 206 && res.status !== 200) {
      res.body.destroy();
      const code = header(res.headers, "x-error-code");
      throw new HfgetError(
        "PROTOCOL",
        res.status === 404
          ? `no ${file.path} at the pinned commit (404${code ? ` ${code}` : ""})`
          : `the read of ${file.path} answered ${res.status}`,
      );
    }
    try {
      for await (const chunk of res.body) {
        bytes += (chunk as Buffer).length;
        if (bytes >= want) break;
      }
    } catch (err) {
      // The time limit cuts the read: what arrived until then gives the rate.
      if (signal?.aborted || bytes === 0) throw err;
    } finally {
      res.body.destroy();
    }
    const seconds = Math.max(1e-3, (now() - t0) / 1000);
    return { path: file.path, bytes, seconds, bytesPerSec: bytes / seconds, servedBy };
  } catch (err) {
    if (signal?.aborted) throw signal.reason ?? err;
    if (err instanceof HfgetError) throw err;
    throw new HfgetError(
      "NETWORK",
      `the read of ${file.path} failed: ${(err as Error).message ?? String(err)}`,
    );
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * For each endpoint: whether it answers, the commit it has for the revision, the API latency,
 * and the throughput of a ranged read of the repo's largest file at the pinned commit (reads one
 * endpoint after another, so they do not share the link). Throws only when no endpoint answers.
 */
export async function probeMirrors(
  config: Config,
  session: Session,
  opts: MirrorsOptions = {},
): Promise<MirrorsResult> {
  const now = opts.now ?? (() => performance.now());
  const { signal } = opts;
  const answers = await Promise.all(session.hubs.map((hub) => askRevision(hub, config, signal, now)));
  const lead = answers.find((a) => a.commit !== undefined);
  if (lead === undefined) {
    const refusals: EndpointRefusal[] = answers.map((a) => ({ endpoint: a.hub.endpoint, error: a.error! }));
    throw noEndpointAnswered(`${repoLabel(config.repo)}@${config.revision}`, refusals);
  }
  const commit = lead.commit!;
  let largest: RepoFile | undefined;
  let listError: string | undefined;
  try {
    for await (const f of listFiles(lead.hub, config.repo, commit, { signal })) {
      if (largest === undefined || f.size > largest.size) largest = f;
    }
  } catch (err) {
    if (signal?.aborted || !(err instanceof HfgetError)) throw err;
    listError = `listing failed: ${err.message}`;
  }
  const what = `${repoLabel(config.repo)}@${config.revision}`;
  const probes: MirrorProbe[] = [];
  for (const a of answers) {
    let status: MirrorStatus;
    if (a.error !== undefined) status = statusOf(a.error);
    else if (a.commit === commit) status = "ok";
    else {
      const mine = Date.parse(a.lastModified ?? "");
      const leadTime = Date.parse(lead.lastModified ?? "");
      status =
        Number.isNaN(mine) || Number.isNaN(leadTime) || mine === leadTime
          ? "differs"
          : mine < leadTime
            ? "lagging"
            : "ahead";
    }
    let read: MirrorRead | undefined;
    let error = a.error === undefined ? undefined : reasonOf(a.error, what);
    if (a.commit !== undefined && largest !== undefined && largest.size > 0) {
      const url = resolveUrls([a.hub.endpoint], config.repo, commit, largest.path)[0]!.url;
      try {
        read = await timedRead(
          a.hub,
          url,
          largest,
          opts.readBytes ?? DEFAULT_READ_BYTES,
          opts.readMs ?? DEFAULT_READ_MS,
          signal,
          now,
        );
      } catch (err) {
        if (signal?.aborted || !(err instanceof HfgetError)) throw err;
        error = err.message;
      }
    } else if (a.commit !== undefined && listError !== undefined) {
      error = listError;
    }
    probes.push({
      endpoint: a.hub.endpoint,
      status,
      commit: a.commit,
      lastModified: a.lastModified,
      latencyMs: a.latencyMs === undefined ? undefined : Math.round(a.latencyMs * 10) / 10,
      read,
      error,
    });
  }
  const answered = (p: MirrorProbe) => (p.commit !== undefined ? 0 : 1);
  probes.sort(
    (x, y) =>
      answered(x) - answered(y) ||
      (y.read?.bytesPerSec ?? -1) - (x.read?.bytesPerSec ?? -1) ||
      (x.latencyMs ?? Number.POSITIVE_INFINITY) - (y.latencyMs ?? Number.POSITIVE_INFINITY),
  );
  return { repo: config.repo, revision: config.revision, commit, endpoints: probes };
}
