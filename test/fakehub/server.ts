// The fake hub (API + resolve) and its CDN: two node:http servers on 127.0.0.1.
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { type FaultRule, pickFault } from "./faults.js";
import { type FakeCommit, type FakeFile, type FakeRepo, type RepoType, TEST_TOKEN } from "./model.js";
import {
  type ContentPlan,
  type Headers,
  jsonPlan,
  type Plan,
  type RequestCtx,
  type RequestLogEntry,
  type SimplePlan,
  sendPlan,
  sleep,
  textPlan,
} from "./respond.js";

export interface StartOptions {
  repos: FakeRepo[];
  /** Default TEST_TOKEN. */
  token?: string;
  /** Tree page size, default 1000. */
  pageSize?: number;
  /** If set, Link next URLs use this origin (e.g. "https://huggingface.co"), like mirrors do. */
  nextLinkOrigin?: string;
  /** Delay before answering each hub request (not CDN). */
  latencyMs?: number;
  /** If set, LFS redirects point to `${cdnBaseUrl}/${sha256}` instead of the internal CDN. */
  cdnBaseUrl?: string;
  /** Lifetime of presigned internal CDN URLs; afterwards the CDN answers 403. Default 1 hour. */
  cdnUrlTtlMs?: number;
  /** Revision endpoint lists at most this many siblings (the real one is incomplete too). Default 1000. */
  siblingsLimit?: number;
  /**
   * Gate the API (revision, tree, paths-info) of gated repos too. Default false: like the real hub,
   * metadata and listings of gated repos are public and only downloads (resolve) need access.
   */
  gateApi?: boolean;
}

export interface FakeHub {
  /** "http://127.0.0.1:PORT" (hub). */
  url: string;
  /** "http://127.0.0.1:PORT2" (internal CDN). */
  cdnUrl: string;
  /** Every request to both servers, in order of arrival. */
  log: RequestLogEntry[];
  /** Mutable; read at each request. */
  faults: FaultRule[];
  /** Mutable; read at each request. */
  repos: FakeRepo[];
  clearLog(): void;
  /** Closes both servers, destroys open sockets, ends stalls. Idempotent. */
  close(): Promise<void>;
  /** A presigned internal-CDN URL for this sha256 (what the hub would redirect to). */
  signCdnUrl(sha256: string, ttlMs?: number): string;
}

const REPO_PREFIX: Record<RepoType, string> = { model: "models", dataset: "datasets", space: "spaces" };
const API_TYPES: Record<string, RepoType> = { models: "model", datasets: "dataset", spaces: "space" };
const API_ACTIONS = new Set(["revision", "tree", "paths-info"]);
const DEFAULT_DATE = "2024-01-01T00:00:00.000Z";
const TEXT_EXT = /\.(json|txt|md|py|yaml|yml|toml|cfg|ini|csv|jsonl|gitattributes|gitignore)$/i;

// ---------------------------------------------------------------------------------------------
// Tree index (per commit, cached)

interface DirNode {
  path: string;
  dirs: Map<string, DirNode>;
  files: Map<string, FakeFile>;
  oid: string;
}

interface TreeIndex {
  root: DirNode;
  dirs: Map<string, DirNode>;
  files: Map<string, FakeFile>;
  /** All entries of the whole repo, depth-first in git order. */
}

type TreeEntry =
  | {
      type: "file";
      oid: string;
      size: number;
      lfs?: { oid: string; size: number; pointerSize: number };
      path: string;
    }
  | { type: "directory"; oid: string; size: 0; path: string };

const treeCache = new WeakMap<FakeCommit, { files: FakeFile[]; len: number; index: TreeIndex }>();

function baseName(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? path : path.slice(i + 1);
}

/** Children in git tree order: byte order of names, directories compared as "name/". */
function sortedChildren(node: DirNode): Array<{ name: string; dir?: DirNode; file?: FakeFile }> {
  const items: Array<{ key: string; name: string; dir?: DirNode; file?: FakeFile }> = [];
  for (const [name, dir] of node.dirs) items.push({ key: `${name}/`, name, dir });
  for (const [name, file] of node.files) items.push({ key: name, name, file });
  items.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
  return items;
}

function computeTreeOid(node: DirNode): string {
  const parts: Buffer[] = [];
  for (const c of sortedChildren(node)) {
    const mode = c.dir !== undefined ? "40000" : "100644";
    const oid = c.dir !== undefined ? computeTreeOid(c.dir) : (c.file?.gitOid ?? "");
    parts.push(Buffer.from(`${mode} ${c.name}\0`), Buffer.from(oid, "hex"));
  }
  const content = Buffer.concat(parts);
  node.oid = createHash("sha1").update(`tree ${content.length}\0`).update(content).digest("hex");
  return node.oid;
}

function treeIndex(commit: FakeCommit): TreeIndex {
  const cached = treeCache.get(commit);
  if (cached !== undefined && cached.files === commit.files && cached.len === commit.files.length) {
    return cached.index;
  }
  const root: DirNode = { path: "", dirs: new Map(), files: new Map(), oid: "" };
  const dirs = new Map<string, DirNode>([["", root]]);
  const files = new Map<string, FakeFile>();
  for (const file of commit.files) {
    const segs = file.path.split("/");
    let node = root;
    for (let i = 0; i < segs.length - 1; i++) {
      const name = segs[i] ?? "";
      let next = node.dirs.get(name);
      if (next === undefined) {
        const path = node.path === "" ? name : `${node.path}/${name}`;
        next = { path, dirs: new Map(), files: new Map(), oid: "" };
        node.dirs.set(name, next);
        dirs.set(path, next);
      }
      node = next;
    }
    node.files.set(segs[segs.length - 1] ?? "", file);
    files.set(file.path, file);
  }
  computeTreeOid(root);
  const index: TreeIndex = { root, dirs, files };
  treeCache.set(commit, { files: commit.files, len: commit.files.length, index });
  return index;
}

function fileEntry(file: FakeFile): TreeEntry {
  if (file.lfs !== undefined) {
    return {
      type: "file",
      oid: file.gitOid,
      size: file.size,
      lfs: { oid: file.lfs.sha256, size: file.size, pointerSize: file.lfs.pointerSize },
      path: file.path,
    };
  }
  return { type: "file", oid: file.gitOid, size: file.size, path: file.path };
}

function dirEntry(dir: DirNode): TreeEntry {
  return { type: "directory", oid: dir.oid, size: 0, path: dir.path };
}

function listTree(node: DirNode, recursive: boolean, out: TreeEntry[] = []): TreeEntry[] {
  for (const c of sortedChildren(node)) {
    if (c.dir !== undefined) {
      out.push(dirEntry(c.dir));
      if (recursive) listTree(c.dir, true, out);
    } else if (c.file !== undefined) {
      out.push(fileEntry(c.file));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Helpers

function splitUrl(url: string): { segs: string[]; query: string } {
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? "" : url.slice(q + 1);
  return { segs: path.split("/").slice(1), query };
}

function decode(seg: string): string | undefined {
  try {
    return decodeURIComponent(seg);
  } catch {
    return undefined;
  }
}

function hubError(status: number, code: string, message: string, extra: Headers = {}): SimplePlan {
  const headerSafe = message.replace(/[^\x20-\x7e]/g, "?");
  return jsonPlan(
    status,
    { error: message },
    { "x-error-code": code, "x-error-message": headerSafe, ...extra },
  );
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    req.on("data", (c: Buffer) => {
      total += c.length;
      if (total > limit) {
        reject(new Error("request body too large"));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

// ---------------------------------------------------------------------------------------------

export async function startFakeHub(opts: StartOptions): Promise<FakeHub> {
  const token = opts.token ?? TEST_TOKEN;
  const pageSize = Math.max(1, opts.pageSize ?? 1000);
  const siblingsLimit = opts.siblingsLimit ?? 1000;
  const ttl = opts.cdnUrlTtlMs ?? 3_600_000;
  const secret = randomBytes(32);
  const sockets = new Set<Socket>();
  const inflight = new Set<AbortController>();
  let requestCounter = 0;
  let closing: Promise<void> | undefined;

  const sign = (sha256: string, expires: number): string =>
    createHmac("sha256", secret).update(`${sha256}\n${expires}`).digest("hex");

  const signCdnUrl = (sha256: string, ttlMs = ttl): string => {
    const expires = Date.now() + ttlMs;
    return `${hub.cdnUrl}/lfs/${sha256}?expires=${expires}&sig=${sign(sha256, expires)}`;
  };

  const authOf = (req: IncomingMessage): RequestLogEntry["authorization"] => {
    const h = req.headers.authorization;
    if (h === undefined) return "none";
    return h === `Bearer ${token}` ? "token" : "other";
  };

  const findRepo = (type: RepoType, id: string): FakeRepo | undefined =>
    hub.repos.find((r) => r.type === type && r.id === id);

  const findCommit = (repo: FakeRepo, rev: string): FakeCommit | undefined => {
    const sha = Object.hasOwn(repo.refs, rev) ? repo.refs[rev] : /^[0-9a-f]{40}$/.test(rev) ? rev : undefined;
    return sha === undefined ? undefined : repo.commits.find((c) => c.sha === sha);
  };

  /** Repo lookup with the hub's auth semantics; `download` => gating applies. */
  const access = (
    type: RepoType,
    id: string,
    auth: RequestLogEntry["authorization"],
    download: boolean,
    path?: string,
  ): { repo: FakeRepo } | { error: SimplePlan } => {
    const repo = findRepo(type, id);
    if (repo === undefined || (repo.private === true && auth !== "token")) {
      return { error: hubError(auth === "token" ? 404 : 401, "RepoNotFound", "Repository not found") };
    }
    const gatedHere = (download || opts.gateApi === true) && path !== "README.md";
    if (repo.gated === true && gatedHere && auth !== "token") {
      const kind = type === "model" ? "model" : type;
      const message =
        auth === "none"
          ? `Access to ${kind} ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.`
          : `Access to ${kind} ${id} is restricted and you are not in the authorized list. Visit https://huggingface.co/${type === "model" ? "" : `${REPO_PREFIX[type]}/`}${id} to ask for access.`;
      return { error: hubError(auth === "none" ? 401 : 403, "GatedRepo", message) };
    }
    return { repo };
  };

  const revisionNotFound = (rev: string): SimplePlan =>
    hubError(404, "RevisionNotFound", `Invalid rev id: ${rev}`);

  // ---- hub routes ------------------------------------------------------------------------

  const revisionInfo = (repo: FakeRepo, commit: FakeCommit): SimplePlan => {
    const paths = commit.files.map((f) => f.path).sort();
    const slash = repo.id.indexOf("/");
    const info: Record<string, unknown> = {
      _id: createHash("sha1").update(`${repo.type}/${repo.id}`).digest("hex").slice(0, 24),
      id: repo.id,
    };
    if (repo.type === "model") info.modelId = repo.id;
    if (slash > 0) info.author = repo.id.slice(0, slash);
    Object.assign(info, {
      sha: commit.sha,
      lastModified: commit.date ?? DEFAULT_DATE,
      private: repo.private === true,
      gated: repo.gated === true ? "auto" : false,
      disabled: false,
      downloads: 0,
      likes: 0,
      tags: [],
      siblings: paths.slice(0, siblingsLimit).map((rfilename) => ({ rfilename })),
      createdAt: DEFAULT_DATE,
      usedStorage: commit.files.reduce((n, f) => n + f.size, 0),
    });
    if (repo.type === "space") info.sdk = "static";
    return jsonPlan(200, info);
  };

  const treePlan = (commit: FakeCommit, subpath: string, pathname: string, query: string): SimplePlan => {
    const params = new URLSearchParams(query);
    const recursive = ["true", "1", "True"].includes(params.get("recursive") ?? "");
    const index = treeIndex(commit);
    const node = index.dirs.get(subpath);
    if (node === undefined) {
      return hubError(404, "EntryNotFound", `Entry not found: ${subpath} does not exist`, {
        "x-repo-commit": commit.sha,
      });
    }
    const entries = listTree(node, recursive);
    let offset = 0;
    const cursor = params.get("cursor");
    if (cursor !== null) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.from(cursor, "base64").toString("utf8"));
      } catch {
        parsed = undefined;
      }
      const o =
        typeof parsed === "object" && parsed !== null ? (parsed as { offset?: unknown }).offset : undefined;
      if (typeof o !== "number" || !Number.isInteger(o) || o < 0) {
        return hubError(400, "BadRequest", "Invalid cursor");
      }
      offset = o;
    }
    const page = entries.slice(offset, offset + pageSize);
    const headers: Headers = {};
    if (offset + pageSize < entries.length) {
      const next = new URLSearchParams(query);
      next.set("cursor", Buffer.from(JSON.stringify({ offset: offset + pageSize })).toString("base64"));
      const origin = (opts.nextLinkOrigin ?? hub.url).replace(/\/+$/, "");
      headers.link = `<${origin}${pathname}?${next.toString()}>; rel="next"`;
    }
    return jsonPlan(200, page, headers);
  };

  const pathsInfoPlan = async (ctx: RequestCtx, commit: FakeCommit): Promise<SimplePlan> => {
    const raw = (await readBody(ctx.req, 10 * 1024 * 1024)).toString("utf8");
    let paths: string[] = [];
    if ((ctx.req.headers["content-type"] ?? "").includes("json")) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        return hubError(400, "BadRequest", "Invalid JSON body");
      }
      const p =
        typeof parsed === "object" && parsed !== null ? (parsed as { paths?: unknown }).paths : undefined;
      if (typeof p === "string") paths = [p];
      else if (Array.isArray(p)) paths = p.filter((x): x is string => typeof x === "string");
    } else {
      paths = new URLSearchParams(raw).getAll("paths");
    }
    const index = treeIndex(commit);
    const out: TreeEntry[] = [];
    for (const p of paths) {
      const file = index.files.get(p);
      if (file !== undefined) out.push(fileEntry(file));
      const dir = p === "" ? undefined : index.dirs.get(p);
      if (dir !== undefined) out.push(dirEntry(dir));
    }
    return jsonPlan(200, out);
  };

  const apiRoute = async (
    ctx: RequestCtx,
    segs: string[],
    query: string,
    pathname: string,
  ): Promise<Plan> => {
    const type = API_TYPES[segs[1] ?? ""];
    if (type === undefined) return notFound(true);
    const rest = segs.slice(2);
    const auth = ctx.entry.authorization;
    // Where the action word sits decides whether the id has one segment or two.
    const candidates: Array<{ id: string; action: string; args: string[] }> = [];
    for (const k of [2, 1]) {
      const action = rest[k];
      if (action !== undefined && API_ACTIONS.has(action)) {
        candidates.push({ id: rest.slice(0, k).join("/"), action, args: rest.slice(k + 1) });
      }
    }
    if (rest.length === 1 || rest.length === 2) {
      candidates.push({ id: rest.join("/"), action: "info", args: [] });
    }
    const chosen = candidates.find((c) => findRepo(type, c.id) !== undefined) ?? candidates[0];
    if (chosen === undefined || chosen.id.split("/").some((s) => s === "")) return notFound(true);
    const method = ctx.req.method ?? "GET";
    const wantMethod = chosen.action === "paths-info" ? "POST" : "GET";
    if (method !== wantMethod && !(wantMethod === "GET" && method === "HEAD")) return notFound(true);

    const id = decode(chosen.id);
    if (id === undefined) return notFound(true);
    const acc = access(type, id, auth, false);
    if ("error" in acc) return acc.error;
    const repo = acc.repo;

    const revSeg = chosen.action === "info" ? "main" : chosen.args[0];
    if (revSeg === undefined || revSeg === "") return notFound(true);
    const rev = decode(revSeg);
    if (rev === undefined) return revisionNotFound(revSeg);
    const commit = findCommit(repo, rev);
    if (commit === undefined) return revisionNotFound(rev);

    switch (chosen.action) {
      case "info":
      case "revision":
        if (chosen.args.length > 1) return notFound(true);
        return revisionInfo(repo, commit);
      case "tree": {
        const sub = chosen.args.slice(1).filter((s) => s !== "");
        const decoded = sub.map(decode);
        if (decoded.some((s) => s === undefined)) return notFound(true);
        return treePlan(commit, decoded.join("/"), pathname, query);
      }
      case "paths-info":
        if (chosen.args.length > 1) return notFound(true);
        return pathsInfoPlan(ctx, commit);
      default:
        return notFound(true);
    }
  };

  const resolveRoute = (ctx: RequestCtx, segs: string[]): Plan | undefined => {
    let type: RepoType = "model";
    let rest = segs;
    if (segs[0] === "datasets" || segs[0] === "spaces") {
      type = segs[0] === "datasets" ? "dataset" : "space";
      rest = segs.slice(1);
    }
    const candidates: Array<{ id: string; rev: string; path: string[] }> = [];
    for (const k of [2, 1]) {
      if (rest[k] === "resolve" && rest.length >= k + 3) {
        candidates.push({ id: rest.slice(0, k).join("/"), rev: rest[k + 1] ?? "", path: rest.slice(k + 2) });
      }
    }
    const chosen = candidates.find((c) => findRepo(type, c.id) !== undefined) ?? candidates[0];
    if (chosen === undefined) return undefined;
    const method = ctx.req.method;
    if (method !== "GET" && method !== "HEAD") return notFound(false);
    const id = decode(chosen.id);
    const rev = decode(chosen.rev);
    const pathSegs = chosen.path.map(decode);
    if (id === undefined || rev === undefined || pathSegs.some((s) => s === undefined || s === "")) {
      return hubError(404, "EntryNotFound", "Entry not found");
    }
    const path = pathSegs.join("/");
    const acc = access(type, id, ctx.entry.authorization, true, path);
    if ("error" in acc) return acc.error;
    const commit = findCommit(acc.repo, rev);
    if (commit === undefined) return revisionNotFound(rev);
    const file = treeIndex(commit).files.get(path);
    if (file === undefined)
      return hubError(404, "EntryNotFound", "Entry not found", { "x-repo-commit": commit.sha });

    const name = baseName(path);
    const common: Headers = {
      "x-repo-commit": commit.sha,
      "accept-ranges": "bytes",
      "content-disposition": `inline; filename*=UTF-8''${encodeURIComponent(name)}; filename="${name.replace(/[^\x20-\x7e]|"/g, "_")}";`,
    };
    if (file.lfs !== undefined) {
      const location =
        opts.cdnBaseUrl !== undefined
          ? `${opts.cdnBaseUrl.replace(/\/+$/, "")}/${file.lfs.sha256}`
          : signCdnUrl(file.lfs.sha256);
      return {
        kind: "simple",
        status: 302,
        headers: {
          ...common,
          "content-type": "text/plain; charset=utf-8",
          location,
          etag: `"${file.lfs.sha256}"`,
          "x-linked-etag": `"${file.lfs.sha256}"`,
          "x-linked-size": String(file.size),
        },
        body: Buffer.from(`Found. Redirecting to ${location}`),
        etagHeaders: ["etag", "x-linked-etag"],
      };
    }
    const plan: ContentPlan = {
      kind: "content",
      headers: {
        ...common,
        "content-type": TEXT_EXT.test(name) ? "text/plain; charset=utf-8" : "application/octet-stream",
        etag: `"${file.gitOid}"`,
      },
      source: file,
      range: ctx.req.headers.range,
      ifRange: headerString(ctx.req.headers["if-range"]),
      etagHeaders: ["etag"],
    };
    return plan;
  };

  const notFound = (api: boolean): SimplePlan =>
    api ? jsonPlan(404, { error: "Not Found" }) : textPlan(404, "Not Found");

  const routeHub = async (ctx: RequestCtx): Promise<Plan> => {
    const { segs, query } = splitUrl(ctx.req.url ?? "/");
    const pathname = `/${segs.join("/")}`;
    if (segs[0] === "api") return apiRoute(ctx, segs, query, pathname);
    return resolveRoute(ctx, segs) ?? notFound(false);
  };

  // ---- CDN --------------------------------------------------------------------------------

  const lfsBySha = new Map<string, FakeFile>();
  const findLfs = (sha256: string): FakeFile | undefined => {
    const cached = lfsBySha.get(sha256);
    if (cached !== undefined) return cached;
    for (const repo of hub.repos) {
      for (const commit of repo.commits) {
        for (const file of commit.files) {
          if (file.lfs !== undefined) lfsBySha.set(file.lfs.sha256, file);
        }
      }
    }
    return lfsBySha.get(sha256);
  };

  const s3Error = (status: number, code: string, message: string): SimplePlan =>
    textPlan(
      status,
      `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>FAKEHUB${requestCounter}</RequestId></Error>`,
      "application/xml",
    );

  const routeCdn = (ctx: RequestCtx): Plan => {
    const { segs, query } = splitUrl(ctx.req.url ?? "/");
    const method = ctx.req.method;
    if (segs.length !== 2 || segs[0] !== "lfs" || !/^[0-9a-f]{64}$/.test(segs[1] ?? "")) {
      return s3Error(404, "NoSuchKey", "The specified key does not exist.");
    }
    if (method !== "GET" && method !== "HEAD") return s3Error(405, "MethodNotAllowed", "Method not allowed");
    const sha256 = segs[1] ?? "";
    const params = new URLSearchParams(query);
    const expiresRaw = params.get("expires") ?? "";
    const sig = params.get("sig") ?? "";
    const expires = /^\d{1,16}$/.test(expiresRaw) ? Number(expiresRaw) : Number.NaN;
    const want = Buffer.from(Number.isNaN(expires) ? "" : sign(sha256, expires), "hex");
    const got = /^[0-9a-f]*$/.test(sig) ? Buffer.from(sig, "hex") : Buffer.alloc(0);
    if (Number.isNaN(expires) || want.length !== got.length || !timingSafeEqual(want, got)) {
      return s3Error(403, "AccessDenied", "Access denied: invalid signature");
    }
    if (Date.now() > expires) return s3Error(403, "AccessDenied", "Request has expired");
    const file = findLfs(sha256);
    if (file === undefined) return s3Error(404, "NoSuchKey", "The specified key does not exist.");
    return {
      kind: "content",
      headers: {
        "content-type": "application/octet-stream",
        "accept-ranges": "bytes",
        etag: `"${sha256}"`,
        "last-modified": new Date(DEFAULT_DATE).toUTCString(),
        "cache-control": "public, max-age=604800, immutable",
      },
      source: file,
      range: ctx.req.headers.range,
      ifRange: headerString(ctx.req.headers["if-range"]),
      etagHeaders: ["etag"],
      rangeError: {
        contentType: "application/xml",
        body: Buffer.from(
          `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidRange</Code><Message>The requested range is not satisfiable</Message></Error>`,
        ),
      },
    };
  };

  // ---- plumbing ---------------------------------------------------------------------------

  const handler =
    (server: "hub" | "cdn") =>
    (req: IncomingMessage, res: ServerResponse): void => {
      const entry: RequestLogEntry = {
        server,
        method: req.method ?? "GET",
        url: req.url ?? "/",
        authorization: authOf(req),
        status: 0,
        bytesSent: 0,
        time: Date.now(),
      };
      if (req.headers.range !== undefined) entry.range = req.headers.range;
      if (req.headers.host !== undefined) entry.host = req.headers.host;
      hub.log.push(entry);
      requestCounter++;
      const ac = new AbortController();
      inflight.add(ac);
      res.on("close", () => {
        ac.abort();
        inflight.delete(ac);
      });
      if (closing !== undefined) {
        res.destroy();
        return;
      }
      res.setHeader("x-request-id", `Root=1-fakehub-${requestCounter}`);
      const ctx: RequestCtx = { req, res, entry, signal: ac.signal };
      // Pick the fault at arrival so `times` counts requests in arrival order.
      const fault = pickFault(hub.faults, { server, method: entry.method, url: entry.url });
      const run = async (): Promise<void> => {
        if (server === "hub" && opts.latencyMs !== undefined && opts.latencyMs > 0) {
          await sleep(opts.latencyMs, ac.signal);
          if (ac.signal.aborted) return;
        }
        const isPathsInfo = req.method === "POST" && (req.url ?? "").includes("/paths-info/");
        if (!isPathsInfo) req.resume();
        const plan = server === "hub" ? await routeHub(ctx) : routeCdn(ctx);
        await sendPlan(ctx, plan, fault);
      };
      run().catch((err: unknown) => {
        if (!res.headersSent && !res.destroyed) {
          const message = err instanceof Error ? err.message : String(err);
          res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
          entry.status = 500;
          res.end(`fakehub internal error: ${message}`);
        } else {
          res.destroy();
        }
      });
    };

  const track = (s: Server) => {
    s.keepAliveTimeout = 30_000;
    s.headersTimeout = 35_000;
    s.requestTimeout = 0;
    s.on("connection", (sock: Socket) => {
      sockets.add(sock);
      sock.on("close", () => sockets.delete(sock));
    });
    s.on("clientError", (_err: Error, sock: Socket) => sock.destroy());
  };

  const hubServer = createServer(handler("hub"));
  const cdnServer = createServer(handler("cdn"));
  track(hubServer);
  track(cdnServer);

  const closeServer = (s: Server): Promise<void> =>
    new Promise((resolve) => {
      if (!s.listening) return resolve();
      s.close(() => resolve());
      s.closeAllConnections();
    });

  const hub: FakeHub = {
    url: "",
    cdnUrl: "",
    log: [],
    faults: [],
    repos: opts.repos,
    clearLog() {
      hub.log.length = 0;
    },
    close() {
      if (closing === undefined) {
        for (const ac of inflight) ac.abort();
        inflight.clear();
        for (const sock of sockets) sock.destroy();
        sockets.clear();
        closing = Promise.all([closeServer(hubServer), closeServer(cdnServer)]).then(() => undefined);
      }
      return closing;
    },
    signCdnUrl,
  };

  try {
    const [hubPort, cdnPort] = await Promise.all([listen(hubServer), listen(cdnServer)]);
    hub.url = `http://127.0.0.1:${hubPort}`;
    hub.cdnUrl = `http://127.0.0.1:${cdnPort}`;
  } catch (err) {
    await hub.close();
    throw err;
  }
  return hub;
}

function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
