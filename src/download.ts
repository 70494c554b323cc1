import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { makeDirs } from "./cache/dirs.js";
import { cachePaths } from "./cache/paths.js";
import type { Config } from "./config.js";
import type { DownloadResult, EventSink } from "./events.js";
import {
  ListingMovedError,
  type ListingStream,
  openListing,
  type RevisionChoice,
  resolveChoices,
} from "./hub/metadata.js";
import type { Session } from "./session.js";
import { atPath } from "./util/io-error.js";
import type { Sleep } from "./util/retry.js";

export interface DownloadOptions {
  readonly signal?: AbortSignal;
  readonly onEvent?: EventSink;
  readonly sleep?: Sleep;
}

/**
 * A pasted URL's `<rev>/<path>` tail, split as the hub means it: the longest revision that exists
 * wins (`tree/release/1.x` is the branch `release/1.x` if there is one, else the folder `1.x` of
 * `release`). A single way to split costs nothing extra.
 */
export async function resolveUrlRevision(
  hub: Session["hub"],
  config: Config,
  signal: AbortSignal,
): Promise<{ commit: string; revision: string; path: string }> {
  return resolveChoices(hub, config.repo, revisionChoices(config), signal);
}

/** The readings of the revision to try, in order: a pasted URL's splits, else --revision. */
export function revisionChoices(config: Config): readonly RevisionChoice[] {
  return config.urlTarget?.choices ?? [{ revision: config.revision, path: "" }];
}

/** How long the metadata requests get to reach the wire before the rest of the run loads. */
const LOAD_REST_AFTER_MS = 5;

/**
 * The whole download: revision -> listing -> plan -> fetch -> verify -> commit. Emits events,
 * returns a summary, never prints. Per-file failures are in the result; run-wide ones throw.
 */
export async function download(
  config: Config,
  session: Session,
  opts: DownloadOptions = {},
): Promise<DownloadResult> {
  const started = Date.now();
  const emit: EventSink = opts.onEvent ?? (() => undefined);
  const signal = opts.signal ?? new AbortController().signal;
  if (config.offline) return (await import("./offline.js")).offlineSnapshot(config);
  // Fail on an unwritable target before any network work: one DISK line naming the path.
  if (!config.dryRun) {
    const target = config.localDir ?? cachePaths(config.cacheDir, config.repo).repoDir;
    await makeDirs(target);
    // An existing folder on a read-only mount or without write permission: said now, not after
    // the listing (access(2) answers EROFS/EACCES as a write would).
    await atPath(target, () => access(target, constants.W_OK), "cannot write to");
  }
  // Revision -> commit and the listing's first page from the first endpoint that answers: the
  // commit is pinned before any byte. The other pages stream while the first files are fetched.
  // The first page is asked for beside the revision (a round trip sooner, see openSpeculating).
  const listing = startListing(config, session, signal, emit, true);
  // The rest of the run (plan, engine, cache) loads while the metadata requests are out: its
  // modules cost tens of ms of start-up that would otherwise come before the first request.
  let fetchAll: typeof import("./download-run.js").fetchAll;
  try {
    // First a few ms for the requests to go out: in the CLI's CommonJS bundle an import() is one
    // synchronous run of the modules' code (~20 ms), which started at once held undici's connect
    // and the requests' writes back by that long (setImmediate was not enough).
    await new Promise((resolve) => setTimeout(resolve, LOAD_REST_AFTER_MS));
    ({ fetchAll } = await import("./download-run.js"));
  } catch (err) {
    listing.stop();
    throw err;
  }
  const run = async (l: StartedListing) => {
    try {
      return await fetchAll(config, session, l.listing, opts, emit, signal, l.controller, started);
    } finally {
      l.stop();
    }
  };
  try {
    return await run(listing);
  } catch (err) {
    if (!(err instanceof ListingMovedError) || signal.aborted) throw err;
    // A push landed between the revision and listing requests: what was fetched stays (partial
    // files resume, and a committed file holds the commit's bytes); the run goes again, pinned to
    // the revision's new answer and listed after it.
    return await run(startListing(config, session, signal, emit, false));
  }
}

interface StartedListing {
  readonly listing: Promise<ListingStream>;
  /** Stops its requests (the run's failure does too, through fetchAll). */
  readonly controller: AbortController;
  /** Ends the listing: no request of it outlives the run (one still reading ahead when it failed). */
  stop(): void;
}

/** openListing, started now, with its own controller that the caller's signal aborts too. */
function startListing(
  config: Config,
  session: Session,
  signal: AbortSignal,
  emit: EventSink,
  speculate: boolean,
): StartedListing {
  const controller = new AbortController();
  const onCallerAbort = () => controller.abort(signal.reason);
  if (signal.aborted) onCallerAbort();
  else signal.addEventListener("abort", onCallerAbort, { once: true });
  const listing = openListing(session.hubs, config.repo, revisionChoices(config), {
    signal: controller.signal,
    speculate,
    onSkip: (r) =>
      emit({
        type: "endpoint-skipped",
        endpoint: r.endpoint,
        reason: r.error.message,
        ...(r.next === undefined ? {} : { next: r.next }),
      }),
  });
  // Awaited by fetchAll; a failure while the rest loads is not an unhandled rejection meanwhile.
  listing.catch(() => undefined);
  return {
    listing,
    controller,
    stop: () => {
      signal.removeEventListener("abort", onCallerAbort);
      controller.abort(new Error("the run is over"));
    },
  };
}
