import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readFile, readlink, stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { basename, dirname } from "node:path";
import type { Dispatcher } from "undici";
import { cachePaths } from "../cache/paths.js";
import type { EngineOptions } from "../config.js";
import type { FileSource } from "../fetch/engine.js";
import { SourcePool } from "../fetch/sources.js";
import { HttpClient } from "../hub/http.js";
import { resolveUrls } from "../hub/metadata.js";
import { checkRepoPath } from "../hub/paths.js";
import { isCommitSha } from "../hub/resolve-revision.js";
import type { RepoRef, RepoType } from "../repo.js";
import { writeFileAtomic } from "../util/atomic-write.js";
import { AccessMemory, publicRepoFromInfo } from "./access.js";
import { type BlobMeta, BlobStore } from "./blobs.js";
import { localApi } from "./local.js";
import { Metrics } from "./metrics.js";
import { first, type UpstreamAnswer, Upstreams, UpstreamUnreachable } from "./upstream.js";

export interface ServeOptions {
  readonly upstreams: readonly string[];
  readonly cacheDir: string;
  readonly host: string;
  readonly port: number;
  /** The server's own upstream token: used for blob bytes only, never sent to clients or logged. */
  readonly token?: string | undefined;
  /** When set, only clients presenting one of these tokens are served at all. */
  readonly accessTokens?: ReadonlySet<string> | undefined;
  readonly offline: boolean;
  readonly revalidateMs: number;
  readonly engine: EngineOptions;
  readonly dispatcher: Dispatcher;
  /** A client socket with nothing sent or received for this long is cut (default 60 s). */
  readonly idleTimeoutMs?: number | undefined;
  /** One JSON line per request (never a token). */
  readonly log: (line: string) => void;
}

export interface ServeHandle {
  readonly url: string;
  readonly metrics: Metrics;
  /** Stops accepting, lets responses finish for `graceMs`, then cuts the rest. */
  close(graceMs?: number): Promise<void>;
}

/** Access answers and branch resolutions are remembered this long at most. */
const ACCESS_TTL_MS = 5 * 60_000;
/** A client of a blob not cached gets its headers once bytes flow, or after this long at most. */
const BLOB_HEADERS_WAIT_MS = 5_000;
const TYPE_PREFIX: Record<RepoType, string> = { model: "", dataset: "datasets/", space: "spaces/" };

class BadRequest extends Error {}

function decodeSegments(raw: string): string[] {
  return raw.split("/").map((seg) => {
    let s: string;
    try {
      s = decodeURIComponent(seg);
    } catch {
      throw new BadRequest("bad percent-encoding");
    }
    if (s.includes("/") || s.includes("\\")) throw new BadRequest("encoded slash in path");
    return s;
  });
}

function checkPath(path: string): string {
  try {
    return checkRepoPath(path);
  } catch {
    throw new BadRequest("unsafe path");
  }
}

interface ResolveRoute {
  readonly repo: RepoRef;
  readonly revision: string;
  readonly path: string;
}

/** `/[datasets/|spaces/]{org/}name/resolve/{rev}/{path}`; rev is one segment (refs%2Fpr%2F1). */
export function parseResolve(pathname: string): ResolveRoute | undefined {
  const at = pathname.indexOf("/resolve/");
  if (at < 0) return undefined;
  const head = decodeSegments(pathname.slice(1, at));
  const tail = decodeSegments(pathname.slice(at + "/resolve/".length));
  let type: RepoType = "model";
  if (head[0] === "datasets" || head[0] === "spaces") {
    type = head[0] === "datasets" ? "dataset" : "space";
    head.shift();
  }
  if (
    head.length < 1 ||
    head.length > 2 ||
    head.some((s) => !/^[\w.-]+$/.test(s) || s === "." || s === "..")
  ) {
    throw new BadRequest("bad repo id");
  }
  const rawRev = pathname.slice(at + "/resolve/".length).split("/")[0] ?? "";
  const revision = decodeURIComponent(rawRev);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (revision === "" || /[\u0000-\u001f]/.test(revision) || revision.split("/").includes("..")) {
    throw new BadRequest("bad revision");
  }
  return { repo: { type, id: head.join("/") }, revision, path: checkPath(tail.slice(1).join("/")) };
}

function unquote(etag: string | undefined): string | undefined {
  return etag?.replace(/^W\//, "").replace(/"/g, "");
}

type Cached<T> = { value: T; at: number };

/**
 * Answers kept in memory, per client token: at most this many of each kind, oldest dropped first,
 * so many distinct clients or queries cannot grow the server without bound (an API answer may be
 * up to 32 MB; 512 keeps the worst case bounded and the common tree pages of a team's repos).
 */
const MAX_META_ENTRIES = 20_000;
const MAX_API_ENTRIES = 512;

function remember<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key); // re-inserted last: Map iterates in insertion order
  map.set(key, value);
  while (map.size > max) {
    const oldest = map.keys().next();
    if (oldest.done) break;
    map.delete(oldest.value);
  }
}

/**
 * refs/<branch> -> the commit upstream last named, so the cache (read by huggingface_hub, hfget and
 * --offline) resolves the branch as the server last saw it. No trailing newline, as huggingface_hub
 * writes it. A failure to write it is not the client's problem: it is only logged by omission.
 */
async function writeRef(path: string, commit: string): Promise<void> {
  try {
    if ((await readFile(path, "utf8")) === commit) return;
  } catch {
    // not there yet
  }
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFileAtomic(path, commit);
  } catch {
    // read-only or full cache: the server still answers from upstream
  }
}

export async function startServer(opts: ServeOptions): Promise<ServeHandle> {
  const metrics = new Metrics();
  const shutdown = new AbortController();
  // One client per upstream, so the server's token goes to each upstream's own origin only.
  const clients = new Map(
    opts.upstreams.map((endpoint) => [
      endpoint,
      new HttpClient({ endpoint, token: opts.token, dispatcher: opts.dispatcher }),
    ]),
  );
  const http = (endpoint: string): HttpClient => {
    const c = clients.get(endpoint);
    if (c === undefined) throw new Error(`internal: ${endpoint} is not an upstream`);
    return c;
  };
  const secrets = [opts.token, ...(opts.accessTokens ?? [])].filter((t): t is string => !!t);
  const redact = (text: string): string => {
    let out = text;
    for (const s of secrets) out = out.split(s).join("<token>");
    return out;
  };
  /** Every log line goes through here: no token ever reaches the log. */
  const log = (line: string): void => opts.log(redact(line));
  // Upstream health, latency and throughput, learned by every blob fetch and metadata request.
  const pool = new SourcePool();
  metrics.bytesFetchedFrom = () => pool.all().map((s) => [s.endpoint, s.bytes] as const);
  const upstreams = new Upstreams(opts.upstreams, opts.dispatcher, metrics, pool);
  const blobs = new BlobStore({
    cacheDir: opts.cacheDir,
    http,
    pool,
    engine: opts.engine,
    signal: shutdown.signal,
    metrics,
    log,
  });
  const metaCache = new Map<string, Cached<BlobMeta | UpstreamAnswer>>();
  const apiCache = new Map<string, Cached<UpstreamAnswer>>();
  const authKey = AccessMemory.clientKey;
  const access = new AccessMemory(ACCESS_TTL_MS);

  /** From the cache alone: refs/<rev> and snapshots/<commit>/<path> -> blobs/<id>. */
  async function localMeta(r: ResolveRoute): Promise<BlobMeta | undefined> {
    const paths = cachePaths(opts.cacheDir, r.repo);
    let commit = r.revision;
    if (!isCommitSha(commit)) {
      try {
        commit = (await readFile(paths.ref(r.revision), "utf8")).trim();
      } catch {
        return undefined;
      }
      if (!isCommitSha(commit)) return undefined;
    }
    try {
      const id = basename(await readlink(paths.snapshotFile(commit, r.path)));
      const st = await stat(paths.blob(id));
      return { repo: r.repo, commit, path: r.path, etag: id, size: st.size, lfs: id.length === 64 };
    } catch {
      return undefined;
    }
  }

  /**
   * What the upstream says of this file for this client: a HEAD with the client's own token, so
   * a gated or private file is only served to whom the upstream would serve it. Remembered per
   * client token: by commit for ACCESS_TTL_MS, by branch for --revalidate.
   */
  async function resolveMeta(
    r: ResolveRoute,
    auth: string | undefined,
  ): Promise<BlobMeta | UpstreamAnswer | "unconfirmed" | undefined> {
    const key = `${authKey(auth)} ${r.repo.type} ${r.repo.id} ${r.revision} ${r.path}`;
    const hit = metaCache.get(key);
    const ttl = isCommitSha(r.revision) ? ACCESS_TTL_MS : opts.revalidateMs;
    if (hit && Date.now() - hit.at < ttl) return hit.value;
    if (opts.offline) return localMeta(r);
    const enc = r.path.split("/").map(encodeURIComponent).join("/");
    let answer: UpstreamAnswer;
    try {
      answer = await upstreams.ask(
        "HEAD",
        `/${TYPE_PREFIX[r.repo.type]}${r.repo.id}/resolve/${encodeURIComponent(r.revision)}/${enc}`,
        { authorization: auth },
        shutdown.signal,
      );
    } catch (err) {
      if (!(err instanceof UpstreamUnreachable)) throw err;
      // Upstream down. Its last refusal still stands; anything else is served only to whom it
      // confirmed may read this file (AccessMemory): never a cached gated or private file to anyone.
      if (hit && "status" in hit.value) return hit.value;
      if (!access.mayRead(auth, r.repo, r.path)) return "unconfirmed";
      // The last commit it told this client, else what the cache's refs say.
      return hit?.value ?? (await localMeta(r));
    }
    let value: BlobMeta | UpstreamAnswer = answer;
    if (answer.status < 400) {
      const commit = first(answer.headers, "x-repo-commit");
      const linked = unquote(first(answer.headers, "x-linked-etag"));
      const etag = linked ?? unquote(first(answer.headers, "etag"));
      const size = Number(first(answer.headers, "x-linked-size") ?? first(answer.headers, "content-length"));
      if (
        commit &&
        isCommitSha(commit) &&
        etag &&
        /^[0-9a-f]{40}([0-9a-f]{24})?$/.test(etag) &&
        Number.isSafeInteger(size)
      ) {
        value = {
          repo: r.repo,
          commit,
          path: r.path,
          etag,
          size,
          lfs: linked !== undefined,
          endpoint: answer.endpoint,
        };
        access.granted(auth, r.repo, r.path);
        if (!isCommitSha(r.revision))
          await writeRef(cachePaths(opts.cacheDir, r.repo).ref(r.revision), commit);
      }
    }
    remember(metaCache, key, { value, at: Date.now() }, MAX_META_ENTRIES);
    return value;
  }

  function sendError(res: ServerResponse, status: number, code: string | undefined, message: string): void {
    const body = Buffer.from(JSON.stringify({ error: message }));
    const h: Record<string, string | number> = {
      "content-type": "application/json",
      "content-length": body.length,
    };
    if (code) h["x-error-code"] = code;
    // huggingface_hub shows X-Error-Message (a HEAD has no body); headers must be printable ASCII.
    h["x-error-message"] = message.replace(/[^\x20-\x7e]/g, "?");
    res.writeHead(status, h);
    res.end(res.req.method === "HEAD" ? undefined : body);
  }

  function relay(res: ServerResponse, a: UpstreamAnswer, self: string): void {
    const h: Record<string, string | number> = {};
    for (const name of ["content-type", "x-error-code", "x-error-message", "x-repo-commit", "etag"]) {
      const v = first(a.headers, name);
      if (v !== undefined) h[name] = v;
    }
    const link = first(a.headers, "link");
    if (link !== undefined) {
      // Next-links point at the server itself, whatever origin the upstream wrote.
      h.link = link.replace(/<([^>]*)>/g, (_m, u: string) => {
        try {
          const url = new URL(u, a.endpoint);
          return `<${self}${url.pathname}${url.search}>`;
        } catch {
          return `<${u}>`;
        }
      });
    }
    h["content-length"] = a.body.length;
    res.writeHead(a.status, h);
    res.end(res.req.method === "HEAD" ? undefined : a.body);
  }

  async function handleApi(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    auth: string | undefined,
  ): Promise<void> {
    const rest = url.pathname.slice("/api/".length);
    decodeSegments(rest).forEach((s) => {
      if (s === ".." || s.includes("\0")) throw new BadRequest("bad path");
    });
    const method = req.method === "POST" ? "POST" : req.method === "HEAD" ? "HEAD" : "GET";
    const chunks: Buffer[] = [];
    if (method === "POST") {
      let n = 0;
      for await (const c of req) {
        n += (c as Buffer).length;
        if (n > 1024 * 1024) throw new BadRequest("body too large");
        chunks.push(c as Buffer);
      }
    }
    const body = Buffer.concat(chunks);
    const self = `http://${req.headers.host ?? `${opts.host}:${opts.port}`}`;
    const key = `${authKey(auth)} ${method} ${url.pathname}${url.search} ${createHash("sha256").update(body).digest("hex")}`;
    const hit = apiCache.get(key);
    if (hit && (opts.offline || Date.now() - hit.at < opts.revalidateMs)) return relay(res, hit.value, self);
    if (opts.offline) {
      const local = await localApi(opts.cacheDir, method, url, body, req.headers["content-type"]);
      if (local) return relay(res, { endpoint: self, ...local }, self);
      return sendError(res, 404, "RepoNotFound", "offline: not cached");
    }
    try {
      const a = await upstreams.ask(
        method,
        `${url.pathname}${url.search}`,
        {
          authorization: auth,
          contentType: req.headers["content-type"],
          body: method === "POST" ? body : undefined,
        },
        shutdown.signal,
      );
      if (a.status < 500) remember(apiCache, key, { value: a, at: Date.now() }, MAX_API_ENTRIES);
      const pub = publicRepoFromInfo(url.pathname, a.status, a.body);
      if (pub) access.repoIsPublic(pub);
      relay(res, a, self);
    } catch (err) {
      if (!(err instanceof UpstreamUnreachable)) throw err;
      // The answer this very client got (anonymous answers are public ones); a token's for a few minutes.
      if (hit && (auth === undefined || Date.now() - hit.at < ACCESS_TTL_MS))
        return relay(res, hit.value, self);
      // Nothing remembered: the disk, for a repo the upstream said is public (gated/private stay unserved).
      const local = await localApi(opts.cacheDir, method, url, body, req.headers["content-type"], (repo) =>
        access.repoKnownPublic(repo),
      );
      if (local && local.status < 400) return relay(res, { endpoint: self, ...local }, self);
      sendError(res, 502, undefined, "upstream unreachable");
    }
  }

  function parseRange(h: string | undefined, size: number): [number, number] | "bad" | undefined {
    if (!h) return undefined;
    const m = /^bytes=(\d*)-(\d*)$/.exec(h.trim());
    if (!m || (m[1] === "" && m[2] === "")) return undefined;
    let start: number;
    let end: number;
    if (m[1] === "") {
      const n = Number(m[2]);
      if (n === 0) return "bad";
      start = Math.max(0, size - n);
      end = size - 1;
    } else {
      start = Number(m[1]);
      end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    }
    if (start >= size || start > end) return "bad";
    return [start, end];
  }

  /**
   * The file's resolve URL at the pinned commit on every upstream: the one that described it first,
   * then those after it in order, then those before it (they just failed to answer: asked last), as
   * `PinnedListing.sourcesFor` orders a `--mirror` download's sources.
   */
  function blobSources(meta: BlobMeta): FileSource[] {
    const at = meta.endpoint === undefined ? 0 : Math.max(0, opts.upstreams.indexOf(meta.endpoint));
    const order = [...opts.upstreams.slice(at), ...opts.upstreams.slice(0, at)];
    return resolveUrls(order, meta.repo, meta.commit, meta.path);
  }

  async function handleResolve(
    req: IncomingMessage,
    res: ServerResponse,
    r: ResolveRoute,
    auth: string | undefined,
  ): Promise<void> {
    const meta = await resolveMeta(r, auth);
    if (meta === "unconfirmed") {
      // 401/403, not 503: huggingface_hub retries a 5xx HEAD with backoff (1.28: two refused
      // downloads took 52 s with 503, under a second with 401/403); a retry would not change the answer.
      const message = `upstream unreachable: cannot confirm this client may read ${r.repo.id}/${r.path}`;
      return sendError(res, auth ? 403 : 401, undefined, message);
    }
    if (meta === undefined) {
      return sendError(
        res,
        opts.offline ? 404 : 504,
        "EntryNotFound",
        `${r.path} is not cached and upstream is unreachable`,
      );
    }
    if ("status" in meta) {
      // The upstream's own refusal or not-found, passed on as it said it.
      const code = first(meta.headers, "x-error-code");
      if (meta.status >= 300 && meta.status < 400)
        return sendError(res, 502, undefined, "upstream answered an unexpected redirect");
      return sendError(
        res,
        meta.status,
        code,
        first(meta.headers, "x-error-message") ?? code ?? `upstream answered ${meta.status}`,
      );
    }
    const headers: Record<string, string | number> = {
      etag: `"${meta.etag}"`,
      "x-repo-commit": meta.commit,
      "accept-ranges": "bytes",
      "content-type": "application/octet-stream",
    };
    if (meta.lfs) {
      headers["x-linked-etag"] = `"${meta.etag}"`;
      headers["x-linked-size"] = meta.size;
    }
    // By commit a file never changes. A shared cache in front (nginx, a CDN) may keep it only when it
    // is public: served to a request without a token, and not behind --access-tokens. A file served
    // on a client's token is "private": a proxy that kept it would hand a gated file to anyone.
    if (isCommitSha(r.revision)) {
      const shared = req.headers.authorization === undefined && !opts.accessTokens;
      headers["cache-control"] = `${shared ? "public" : "private"}, max-age=31536000, immutable`;
    } else {
      headers["cache-control"] = "no-cache";
    }
    const inm = req.headers["if-none-match"];
    if (inm?.split(",").some((t) => unquote(t.trim()) === meta.etag || t.trim() === "*")) {
      res.writeHead(304, headers);
      return void res.end();
    }
    const range = parseRange(req.headers.range, meta.size);
    if (range === "bad") {
      res.writeHead(416, { ...headers, "content-range": `bytes */${meta.size}`, "content-length": 0 });
      return void res.end();
    }
    const [start, end] = range ?? [0, meta.size - 1];
    const status = range ? 206 : 200;
    if (range) headers["content-range"] = `bytes ${start}-${end}/${meta.size}`;
    headers["content-length"] = meta.size === 0 ? 0 : end - start + 1;
    const blob = blobs.blobPath(meta);
    let present = false;
    try {
      present = (await stat(blob)).size === meta.size;
    } catch {
      present = false;
    }
    if (req.method === "HEAD") {
      res.writeHead(status, headers);
      return void res.end();
    }
    if (meta.size === 0 && present) {
      res.writeHead(status, headers);
      return void res.end();
    }
    if (present) {
      metrics.blobHits++;
      res.writeHead(status, headers);
      const s = createReadStream(blob, { start, end });
      s.on("data", (c) => {
        metrics.bytesFromCache += (c as Buffer).length;
      });
      s.on("error", () => res.destroy());
      s.pipe(res);
      await new Promise<void>((done) => res.on("close", done));
      return;
    }
    if (opts.offline) return sendError(res, 404, "EntryNotFound", "offline: not cached");
    metrics.blobMisses++;
    const f = blobs.fetch(meta, blobSources(meta));
    // Headers once the first verified bytes are in (or the fetch failed: a 502 naming what each
    // upstream answered), within BLOB_HEADERS_WAIT_MS: huggingface_hub gives up after 10 s without them.
    await f.started(BLOB_HEADERS_WAIT_MS);
    if (f.state === "failed") {
      const message = `upstream fetch of ${r.repo.id}/${r.path} failed: ${f.error}`;
      return sendError(res, 502, undefined, redact(message));
    }
    res.writeHead(status, headers);
    if (meta.size === 0) {
      while (f.state === "running") await f.changed();
      return void (f.state === "done" ? res.end() : res.destroy());
    }
    await blobs.stream(f, res, start, end);
  }

  const server: Server = createServer((req, res) => {
    const t0 = Date.now();
    let bytes = 0;
    const write = res.write.bind(res);
    res.write = ((chunk: Buffer, ...rest: never[]) => {
      bytes += chunk?.length ?? 0;
      return write(chunk, ...rest);
    }) as typeof res.write;
    res.on("close", () => {
      metrics.request(res.statusCode);
      const line = JSON.stringify({
        time: new Date(t0).toISOString(),
        method: req.method,
        path: (req.url ?? "").split("?")[0],
        status: res.statusCode,
        bytes,
        ms: Date.now() - t0,
        complete: res.writableFinished,
      });
      log(line);
    });
    void route(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (err instanceof BadRequest) return sendError(res, 400, undefined, err.message);
      sendError(res, 500, undefined, "internal error");
    });
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawUrl = req.url ?? "/";
    if (rawUrl.includes("\0") || /%00/i.test(rawUrl) || rawUrl.startsWith("//"))
      throw new BadRequest("bad path");
    // new URL() would resolve `..` away: refuse dot segments as sent, before normalizing.
    const rawPath = rawUrl.split("?")[0] ?? "";
    if (
      rawPath.split("/").some((seg) => seg === ".." || seg === "." || /^%2e%2e$|^\.%2e$|^%2e\.$/i.test(seg))
    )
      throw new BadRequest("dot segment in path");
    const url = new URL(rawUrl, "http://serve.invalid");
    if (url.pathname === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" });
      return void res.end("ok\n");
    }
    if (url.pathname === "/metrics") {
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
      return void res.end(metrics.render());
    }
    const auth = req.headers.authorization;
    if (opts.accessTokens) {
      const tok = auth?.replace(/^Bearer\s+/i, "");
      if (!tok || !opts.accessTokens.has(tok))
        return sendError(res, 401, undefined, "this server needs an access token");
    }
    // With --access-tokens the client's token is the server's business, not upstream's: the listed
    // clients read what the server's own token may (the admin vouched for them by listing them).
    const upstreamAuth = opts.accessTokens ? (opts.token ? `Bearer ${opts.token}` : undefined) : auth;
    if (/(^|\/)\.\.(\/|$)/.test(url.pathname) || /%2f|%5c/i.test(url.pathname.split("/resolve/")[0] ?? "")) {
      throw new BadRequest("bad path");
    }
    if (url.pathname.startsWith("/api/")) return handleApi(req, res, url, upstreamAuth);
    if (req.method !== "GET" && req.method !== "HEAD")
      return sendError(res, 405, undefined, "method not allowed");
    const r = parseResolve(url.pathname);
    if (!r) return sendError(res, 404, undefined, "not found");
    return handleResolve(req, res, r, upstreamAuth);
  }

  server.requestTimeout = 0; // a multi-GiB body may take long; idle sockets are cut by timeout below
  server.headersTimeout = 20_000;
  server.keepAliveTimeout = 5_000;
  // A client that stops reading blocks only its own response (each waits for its own drain; the
  // upstream fetch and the other clients go on), and is cut once its socket was idle this long.
  server.setTimeout(opts.idleTimeoutMs ?? 60_000, (socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}`,
    metrics,
    close: async (graceMs = 3_000) => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      const timer = setTimeout(() => {
        shutdown.abort(new Error("server shutting down"));
        server.closeAllConnections();
      }, graceMs);
      await closed;
      clearTimeout(timer);
      // Engines flush resume state when aborted.
      shutdown.abort(new Error("server shutting down"));
    },
  };
}
