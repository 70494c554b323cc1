import { HfgetError, mostTellingCode } from "../errors.js";
import { type RepoRef, repoLabel } from "../repo.js";
import type { HubClient } from "./client.js";
import { type ListingPage, listPages } from "./list-files.js";
import { isCommitSha, resolveRevision } from "./resolve-revision.js";
import type { RepoFile } from "./types.js";

/** One way to read a revision: a branch/tag/sha, and the path of a pasted URL left after it. */
export interface RevisionChoice {
  readonly revision: string;
  readonly path: string;
}

/** An endpoint that did not give the metadata, and what it answered. */
export interface EndpointRefusal {
  readonly endpoint: string;
  readonly error: HfgetError;
}

/** A file's resolve URL at the pinned commit on one endpoint. */
export interface EndpointUrl {
  readonly endpoint: string;
  readonly url: string;
}

/** `{endpoint}/{prefix}{id}/resolve/{commit}/{path}` on every endpoint, in the order given. */
export function resolveUrls(
  endpoints: readonly string[],
  repo: RepoRef,
  commit: string,
  path: string,
): EndpointUrl[] {
  const encPath = path.split("/").map(encodeURIComponent).join("/");
  return endpoints.map((endpoint) => ({
    endpoint,
    url: `${endpoint}/${repoLabel(repo)}/resolve/${encodeURIComponent(commit)}/${encPath}`,
  }));
}

/** The metadata of a run: the commit every byte is fetched at, and the listing it is checked against. */
export class PinnedListing {
  constructor(
    readonly repo: RepoRef,
    /** Every endpoint, in preference order. */
    readonly endpoints: readonly string[],
    /** The endpoint that answered the revision and the listing. */
    readonly endpoint: string,
    readonly commit: string,
    /** The revision as the answer read it (a pasted URL may split `<rev>/<path>` several ways). */
    readonly revision: string,
    /** The pasted URL's path inside the repo ("" without one). */
    readonly path: string,
    /** The listing (from openListing: the pages read so far; whole once its pages are all read). */
    readonly files: readonly RepoFile[],
    /** Endpoints tried before `endpoint` (or after, on a second round) that did not answer. */
    readonly refused: readonly EndpointRefusal[],
  ) {}

  /** The file's resolve URL at the pinned commit on EVERY endpoint, in preference order. */
  resolveUrlsFor(file: RepoFile | string): EndpointUrl[] {
    return resolveUrls(this.endpoints, this.repo, this.commit, typeof file === "string" ? file : file.path);
  }

  /**
   * `resolveUrlsFor(file)` with the endpoints that refused the metadata moved to the end (still in
   * preference order): the engine's sources, so a mirror just seen down or lagging is asked last.
   */
  sourcesFor(file: RepoFile | string): EndpointUrl[] {
    const refused = new Set(this.refused.map((r) => r.endpoint));
    refused.delete(this.endpoint);
    const all = this.resolveUrlsFor(file);
    return [...all.filter((s) => !refused.has(s.endpoint)), ...all.filter((s) => refused.has(s.endpoint))];
  }
}

/**
 * The revision -> commit on one endpoint, trying each reading of a pasted URL: the longest revision
 * that exists wins. A single choice costs one request.
 */
export async function resolveChoices(
  hub: HubClient,
  repo: RepoRef,
  choices: readonly RevisionChoice[],
  signal?: AbortSignal,
): Promise<{ commit: string; revision: string; path: string }> {
  for (const [i, c] of choices.entries()) {
    try {
      const { commit } = await resolveRevision(hub, repo, c.revision, signal);
      return { commit, revision: c.revision, path: c.path };
    } catch (err) {
      const last = i === choices.length - 1;
      if (last || !(err instanceof HfgetError) || err.code !== "REVISION_NOT_FOUND") throw err;
    }
  }
  throw new HfgetError("REVISION_NOT_FOUND", `${repoLabel(repo)}: no revision`);
}

export interface PinOptions {
  readonly signal?: AbortSignal | undefined;
  /** Told of each endpoint set aside, as it happens (the CLI prints a notice). */
  readonly onSkip?: (refusal: EndpointRefusal & { readonly next: string | undefined }) => void;
  /**
   * Ask for the listing's first page at the revision beside the revision request (openSpeculating):
   * one round trip sooner; its pages may then throw ListingMovedError.
   */
  readonly speculate?: boolean | undefined;
}

/**
 * The revision moved while it was listed: the listing asked for at the revision (sent beside the
 * revision request, see openOn) is not the listing of the commit the revision answered. Only a run
 * that asked for `speculate` sees it; download() then runs again without speculating.
 */
export class ListingMovedError extends HfgetError {
  constructor(what: string) {
    super("NETWORK", `${what}: the revision moved while it was being listed`, {
      hint: "run the command again",
      retryable: true,
    });
  }
}

const sameEntry = (a: RepoFile, b: RepoFile): boolean =>
  a.size === b.size && a.gitOid === b.gitOid && a.lfs?.sha256 === b.lfs?.sha256;

const samePage = (a: ListingPage, b: ListingPage): boolean =>
  a.last === b.last &&
  a.files.length === b.files.length &&
  a.files.every((f, i) => f.path === b.files[i]!.path && sameEntry(f, b.files[i]!));

/** What openOn gives: the pinned commit, the revision as read, a pasted URL's path, the pages. */
interface Opened {
  readonly commit: string;
  readonly revision: string;
  readonly path: string;
  readonly pages: AsyncGenerator<ListingPage>;
}

/** `first` (already read from `pages`: a page, or their end), then the rest of `pages`. */
async function* fromFirst(
  first: IteratorResult<ListingPage>,
  pages: AsyncGenerator<ListingPage>,
): AsyncGenerator<ListingPage> {
  if (first.done === true) return;
  yield first.value;
  yield* pages;
}

/** Revision -> commit and the listing's first page on one endpoint; `rest` reads the other pages. */
async function openOn(
  hub: HubClient,
  repo: RepoRef,
  choices: readonly RevisionChoice[],
  signal: AbortSignal | undefined,
  rest: HubClient,
  speculate = false,
): Promise<Opened> {
  const only = choices.length === 1 ? choices[0]! : undefined;
  if (speculate && only !== undefined && !isCommitSha(only.revision)) {
    return openSpeculating(hub, repo, only, signal, rest);
  }
  const r = await resolveChoices(hub, repo, choices, signal);
  const pages = listPages(hub, repo, r.commit, { signal, rest });
  // The first page's answer is part of the pin: an endpoint that cannot list is set aside here.
  return { ...r, pages: fromFirst(await pages.next(), pages) };
}

/**
 * openOn with the listing's first page asked for AT THE REVISION beside the revision request, not
 * after its answer: the files are known one round trip sooner (to a far mirror, 0.1-0.3 s of every
 * run). That page is then only a guess at the commit's listing (a push may land between the two
 * requests), so the commit's own first page is asked for as soon as the commit is known, and the
 * pages go on from it: the guessed page is yielded first and the next read waits for the check, so
 * a listing is never whole (nor a run done) before it. A guess that differs throws
 * ListingMovedError there. Bytes fetched meanwhile are fetched at the commit and checked against
 * the guess, so a file committed from them holds the commit's bytes either way.
 */
async function openSpeculating(
  hub: HubClient,
  repo: RepoRef,
  choice: RevisionChoice,
  signal: AbortSignal | undefined,
  rest: HubClient,
): Promise<Opened> {
  // No retries: a guess that fails or waits is dropped, never waited on through a backoff.
  const atRevision = listPages(hub.with({ retry: { ...hub.retry, retries: 0 } }), repo, choice.revision, {
    signal,
  });
  const guessed = atRevision.next();
  // Read below, or not at all when the revision fails (its error is the one to report).
  guessed.catch(() => undefined);
  const stopGuessing = () => void atRevision.return(undefined).catch(() => undefined);
  let r: Awaited<ReturnType<typeof resolveChoices>>;
  try {
    r = await resolveChoices(hub, repo, [choice], signal);
  } catch (err) {
    stopGuessing();
    throw err;
  }
  const pages = listPages(hub, repo, r.commit, { signal, rest });
  const pinnedFirst = pages.next();
  pinnedFirst.catch(() => undefined);
  // The guess is used only when it is in before the commit's own first page (which then checks it).
  const guess = await Promise.race([
    guessed.then(
      (g) => (g.done === true ? undefined : g.value),
      () => undefined, // the pinned listing answers (or fails) on its own
    ),
    pinnedFirst.then(
      () => undefined,
      () => undefined,
    ),
  ]);
  // Only its first page: later ones would be read at the revision, not the commit.
  stopGuessing();
  if (guess === undefined) return { ...r, pages: fromFirst(await pinnedFirst, pages) };
  const page = guess; // narrowed, for the generator below
  const what = `${repoLabel(repo)}@${r.revision}`;
  async function* checked(): AsyncGenerator<ListingPage> {
    yield page;
    const first = await pinnedFirst;
    if (first.done === true || !samePage(first.value, page)) {
      void pages.return(undefined).catch(() => undefined);
      throw new ListingMovedError(what);
    }
    yield* pages;
  }
  return { ...r, pages: checked() };
}

/** A listing being read: the commit is pinned (before any byte); its pages come as they are answered. */
export interface ListingStream {
  /** `files` grows as pages are read, and is the whole listing once `pages` is done. */
  readonly pinned: PinnedListing;
  /**
   * Each page's files once, in listing order (the first page is already in). When a later page fails
   * on the pinned endpoint (after its retries) and there are other endpoints, the listing goes on from
   * the next endpoint that answers, AT THE PINNED COMMIT, from its first page, files already yielded
   * skipped (one listed differently there is a PROTOCOL error): a mirror without that commit answers
   * 404 and is passed over. If none can finish it, one error names what each said. Read it once.
   */
  readonly pages: AsyncIterable<ListingPage>;
}

/**
 * Revision -> commit and the listing, both from the first endpoint that answers them. With one
 * endpoint this is that endpoint with its full retry policy, and its error unchanged.
 *
 * With several: a first round asks each in order once (no retries), so a dead or lagging mirror
 * costs one request, not a backoff; any HfgetError sets the endpoint aside: network errors, 5xx,
 * 429, 404 RepoNotFound/RevisionNotFound (a lagging mirror), a non-hub answer (PROTOCOL), and
 * 401/403 too (another endpoint may hold a mirror the token opens; if none answers, the auth error
 * is reported, as it is the one the user can act on). A second round retries, with the full
 * policy, only those whose answer may change (network, 5xx, 429). If none answers, one error names
 * what each endpoint answered.
 */
export async function pinListing(
  hubs: readonly HubClient[],
  repo: RepoRef,
  choices: readonly RevisionChoice[],
  opts: PinOptions = {},
): Promise<PinnedListing> {
  const stream = await openListing(hubs, repo, choices, opts);
  for await (const _ of stream.pages) {
    // pinned.files grows as the pages are read
  }
  return stream.pinned;
}

/**
 * pinListing's choice of endpoint, made on the revision and the listing's FIRST page: the commit is
 * pinned from that answer and the rest of the listing streams (see ListingStream for a page that
 * fails later).
 */
export async function openListing(
  hubs: readonly HubClient[],
  repo: RepoRef,
  choices: readonly RevisionChoice[],
  opts: PinOptions = {},
): Promise<ListingStream> {
  const endpoints = hubs.map((h) => h.endpoint);
  if (hubs.length === 0) throw new Error("pinListing: no endpoint");
  const refused: EndpointRefusal[] = [];
  const stream = (hub: HubClient, r: Awaited<ReturnType<typeof openOn>>): ListingStream => {
    const files: RepoFile[] = [];
    const pinned = new PinnedListing(
      repo,
      endpoints,
      hub.endpoint,
      r.commit,
      r.revision,
      r.path,
      files,
      refused,
    );
    return { pinned, pages: rest(hubs, hub, repo, r.commit, r.pages, files, opts) };
  };
  if (hubs.length === 1)
    return stream(hubs[0]!, await openOn(hubs[0]!, repo, choices, opts.signal, hubs[0]!, opts.speculate));

  const last = new Map<string, HfgetError>();
  const attempt = async (try_: HubClient, hub: HubClient, next: string | undefined) => {
    try {
      return await openOn(try_, repo, choices, opts.signal, hub, opts.speculate);
    } catch (err) {
      if (opts.signal?.aborted || !(err instanceof HfgetError) || err.code === "INTERRUPTED") throw err;
      const refusal = { endpoint: hub.endpoint, error: err };
      refused.push(refusal);
      last.set(hub.endpoint, err);
      opts.onSkip?.({ ...refusal, next });
      return undefined;
    }
  };
  const policy = hubs[0]!.retry;
  for (const [i, hub] of hubs.entries()) {
    const r = await attempt(hub.with({ retry: { ...policy, retries: 0 } }), hub, hubs[i + 1]?.endpoint);
    if (r !== undefined) return stream(hub, r);
  }
  if (policy.retries > 0) {
    const again = hubs.filter((h) => last.get(h.endpoint)?.retryable === true);
    for (const [i, hub] of again.entries()) {
      const r = await attempt(
        hub.with({ retry: { ...policy, retries: policy.retries - 1 } }),
        hub,
        again[i + 1]?.endpoint,
      );
      if (r !== undefined) return stream(hub, r);
    }
  }
  throw noEndpointAnswered(
    `${repoLabel(repo)}@${choices[0]?.revision ?? "main"}`,
    endpoints.map((endpoint) => ({ endpoint, error: last.get(endpoint)! })),
  );
}

/** The pages of the pinned endpoint, then (when one fails there) the rest from the other endpoints. */
async function* rest(
  hubs: readonly HubClient[],
  pinnedHub: HubClient,
  repo: RepoRef,
  commit: string,
  pages: AsyncGenerator<ListingPage>,
  files: RepoFile[],
  opts: PinOptions,
): AsyncGenerator<ListingPage> {
  // A moved revision is the run's to handle (download() lists again), not a mirror's fault.
  const stopped = (err: unknown) =>
    opts.signal?.aborted === true ||
    !(err instanceof HfgetError) ||
    err.code === "INTERRUPTED" ||
    err instanceof ListingMovedError;
  const others = hubs.filter((h) => h.endpoint !== pinnedHub.endpoint);
  let failed: HfgetError;
  try {
    for await (const page of pages) {
      files.push(...page.files);
      yield page;
    }
    return;
  } catch (err) {
    if (others.length === 0 || stopped(err)) throw err;
    failed = err as HfgetError;
  }
  const said: EndpointRefusal[] = [{ endpoint: pinnedHub.endpoint, error: failed }];
  opts.onSkip?.({ endpoint: pinnedHub.endpoint, error: failed, next: others[0]?.endpoint });
  const seen = new Map(files.map((f) => [f.path, f]));
  const what = `${repoLabel(repo)}@${commit.slice(0, 12)}`;
  for (const [i, hub] of others.entries()) {
    try {
      for await (const page of listPages(hub, repo, commit, { signal: opts.signal })) {
        const fresh: RepoFile[] = [];
        for (const f of page.files) {
          const had = seen.get(f.path);
          if (had === undefined) {
            seen.set(f.path, f);
            fresh.push(f);
          } else if (!sameEntry(had, f)) {
            throw new HfgetError(
              "PROTOCOL",
              `${what}: ${hub.endpoint} lists ${JSON.stringify(f.path)} differently at the same commit`,
              {
                hint: "the mirror is not serving the commit's listing; drop it from --mirror / HFGET_MIRRORS",
              },
            );
          }
        }
        files.push(...fresh);
        yield { files: fresh, last: page.last };
      }
      return;
    } catch (err) {
      if (stopped(err)) throw err;
      said.push({ endpoint: hub.endpoint, error: err as HfgetError });
      opts.onSkip?.({ endpoint: hub.endpoint, error: err as HfgetError, next: others[i + 1]?.endpoint });
    }
  }
  throw noEndpointAnswered(`${what}: the rest of the listing`, said);
}

/** `org/x@main: revision not found (server: …)` -> `revision not found (server: …)` */
export function reasonOf(error: HfgetError, what: string): string {
  const m = error.message;
  return m.startsWith(`${what}: `) ? m.slice(what.length + 2) : m;
}

/**
 * One error for "no endpoint answered": its code is the most telling answer (all down: NETWORK,
 * exit 6), and its message names what each endpoint said.
 */
export function noEndpointAnswered(what: string, refusals: readonly EndpointRefusal[]): HfgetError {
  const code = mostTellingCode(refusals.map((r) => r.error.code)) ?? "NETWORK";
  const lead = refusals.find((r) => r.error.code === code)?.error;
  const each = refusals.map((r) => `${r.endpoint}: ${reasonOf(r.error, what)}`).join("; ");
  return new HfgetError(code, `${what}: no endpoint answered (${each})`, {
    hint: lead?.hint ?? "check the endpoints given with --mirror / HFGET_MIRRORS",
    status: lead?.status,
    cause: lead,
  });
}
