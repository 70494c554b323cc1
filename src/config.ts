import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { usageError } from "./errors.js";
import type { ProxySettings } from "./hub/http.js";
import { parseRepoArg, parseRepoType, type RepoRef, type RepoType, type UrlTarget } from "./repo.js";

/** The environment hfget reads. Only this module looks at process.env. */
export type Env = Readonly<Record<string, string | undefined>>;

export const DEFAULT_ENDPOINT = "https://huggingface.co";

/**
 * Engine defaults, tuned for a real CDN that caps each connection (see README "Defaults"):
 * - 32 connections: a CDN capping each connection at ~10 MB/s needs 32 to fill 2.5 Gbit/s, and
 *   aria2c's 16 leave a fast link half idle; hf_transfer, as huggingface_hub drives it, opens more.
 *   It is the ceiling: each endpoint starts with a few and grows while more raise its rate
 *   (src/fetch/conns.ts).
 * - 32 files in flight: small files are latency-bound (one request each), so one per connection
 *   hides round trips; workers still prefer chunks of files already in flight, so big files are
 *   not spread thin.
 * - 16 MiB chunks: large enough that per-request latency is <2% of a chunk at 10 MB/s, small
 *   enough that a lost chunk costs little; the tail of a file is split further when connections idle.
 */
export const DEFAULTS = {
  connections: 32,
  maxFiles: 32,
  chunkSize: 16 * 1024 * 1024,
  retries: 6,
  timeoutSeconds: 30,
} as const;

export interface EngineOptions {
  /** Total connections across all files. */
  readonly connections: number;
  /** Files downloading at once. */
  readonly maxFiles: number;
  /** Range size for large files, bytes. */
  readonly chunkSize: number;
  /** Attempts after the first, per request, before the run gives up. */
  readonly retries: number;
  /** Connect/header timeout and stall timeout (no bytes for this long), milliseconds. */
  readonly timeoutMs: number;
  /**
   * --limit-rate: cap on the whole run's download rate in bytes per second, across every
   * connection and endpoint (src/util/rate-limit.ts); 0 or absent = no cap.
   */
  readonly limitRate?: number;
  /**
   * Files at least this big are hashed on the hash thread (src/verify.ts), smaller ones on the main
   * thread; absent = HASH_THREAD_MIN_BYTES. Not a user option: tests set 0 to take the thread's path
   * with small files.
   */
  readonly hashThreadMinBytes?: number;
}

export interface Config extends EngineOptions {
  readonly repo: RepoRef;
  readonly revision: string;
  /** Normalized endpoint without trailing slash, e.g. https://hf-mirror.com or http://127.0.0.1:8080/prefix. Always `endpoints[0]`. */
  readonly endpoint: string;
  /**
   * Every endpoint, in preference order (non-empty, normalized, no duplicates): metadata comes from
   * the first that answers; the token goes to each of their origins and nowhere else.
   */
  readonly endpoints: readonly string[];
  /** --limit-rate in bytes per second; 0 = no cap. */
  readonly limitRate: number;
  readonly token: string | undefined;
  readonly files: readonly string[];
  readonly include: readonly string[];
  readonly exclude: readonly string[];
  /** huggingface_hub cache root (…/hub). */
  readonly cacheDir: string;
  readonly localDir: string | undefined;
  readonly force: boolean;
  readonly dryRun: boolean;
  readonly quiet: boolean;
  readonly json: boolean;
  readonly offline: boolean;
  readonly proxy: ProxySettings;
  /** Progress output (off with HF_HUB_DISABLE_PROGRESS_BARS); --quiet also turns it off. */
  readonly progress: boolean;
  /** The file or folder a pasted URL names, and how its `<rev>/<path>` may split. */
  readonly urlTarget: UrlTarget | undefined;
  /** One-line notices for stderr (e.g. which endpoint won over a pasted URL's host). */
  readonly notices: readonly string[];
}

/** What the CLI hands over: raw flag values, all optional. */
export interface RawOptions {
  repoId: string;
  files?: string[] | undefined;
  /** --mirror, given once or several times, each a host/URL or a comma-separated list of them. */
  mirror?: string | readonly string[] | undefined;
  /** --endpoint: alias of --mirror (its values come after --mirror's). */
  endpoint?: string | readonly string[] | undefined;
  /** --limit-rate, e.g. "20M" (bytes per second); 0 = none. */
  limitRate?: string | number | undefined;
  token?: string | undefined;
  revision?: string | undefined;
  repoType?: string | undefined;
  include?: string[] | undefined;
  exclude?: string[] | undefined;
  cacheDir?: string | undefined;
  localDir?: string | undefined;
  force?: boolean | undefined;
  /** huggingface-cli's name for --force. */
  forceDownload?: boolean | undefined;
  dryRun?: boolean | undefined;
  quiet?: boolean | undefined;
  json?: boolean | undefined;
  connections?: string | number | undefined;
  maxFiles?: string | number | undefined;
  /** huggingface-cli's name for --max-files (its thread pool downloads that many files at once). */
  maxWorkers?: string | number | undefined;
  chunkSize?: string | number | undefined;
  retries?: string | number | undefined;
  timeout?: string | number | undefined;
}

/**
 * `hf-mirror.com` -> `https://hf-mirror.com`; full http(s) URLs are kept (path prefix allowed),
 * trailing slashes dropped. Anything else is a usage error.
 */
export function normalizeEndpoint(value: string, what = "--mirror"): string {
  const v = value.trim();
  if (v === "") throw usageError(`${what} is empty`, "pass a host such as hf-mirror.com or a URL");
  if (v.includes(",")) {
    throw usageError(
      `${what} "${value}" must be one URL`,
      "for several endpoints use --mirror a,b or HFGET_MIRRORS=a,b (HF_ENDPOINT stays one URL: other tools read it)",
    );
  }
  const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(v);
  if (hasScheme && !/^https?:\/\//i.test(v)) {
    throw usageError(`${what} "${value}" must be an http or https URL`);
  }
  let url: URL;
  try {
    url = new URL(hasScheme ? v : `https://${v}`);
  } catch {
    throw usageError(`${what} "${value}" is not a host name or URL`, "example: --mirror hf-mirror.com");
  }
  if (url.hostname === "" || /[\s@]/.test(v) || url.search !== "" || url.hash !== "") {
    throw usageError(`${what} "${value}" is not a host name or URL`, "example: --mirror hf-mirror.com");
  }
  const path = url.pathname.replace(/\/+$/, "");
  return `${url.protocol}//${url.host}${path}`;
}

export function hfHome(env: Env): string {
  if (env.HF_HOME) return resolve(env.HF_HOME);
  const xdg = env.XDG_CACHE_HOME ? resolve(env.XDG_CACHE_HOME) : join(homedir(), ".cache");
  return join(xdg, "huggingface");
}

/** HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub (as huggingface_hub does). */
export function defaultCacheDir(env: Env): string {
  const explicit = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  if (explicit) return resolve(explicit);
  return join(hfHome(env), "hub");
}

/** HF_TOKEN_PATH, else $HF_HOME/token (as huggingface_hub's constants.py). */
export function tokenPath(env: Env): string {
  return env.HF_TOKEN_PATH?.trim() ? resolve(env.HF_TOKEN_PATH.trim()) : join(hfHome(env), "token");
}

/**
 * --token, else HF_TOKEN, else HUGGING_FACE_HUB_TOKEN (the older name), else the file
 * $HF_TOKEN_PATH (default $HF_HOME/token): huggingface_hub's order. Empty values count as absent.
 */
export function resolveToken(flag: string | undefined, env: Env): string | undefined {
  const fromFlag = flag?.trim();
  if (fromFlag) return fromFlag;
  const fromEnv = env.HF_TOKEN?.trim() || env.HUGGING_FACE_HUB_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  try {
    const fromFile = readFileSync(tokenPath(env), "utf8").trim();
    return fromFile === "" ? undefined : fromFile;
  } catch {
    return undefined;
  }
}

export function resolveEndpoint(mirror: string | undefined, env: Env): string {
  return resolveEndpointFrom(mirror, env, undefined).endpoint;
}

/**
 * Comma-separated lists (one per --mirror, or HFGET_MIRRORS) -> normalized endpoints, first
 * occurrence kept. Empty items between commas are skipped; a list with no endpoint at all is a
 * usage error.
 */
export function parseEndpointList(values: readonly string[], what: string): string[] {
  const out: string[] = [];
  for (const value of values) {
    for (const item of value.split(",")) {
      if (item.trim() === "") continue;
      const ep = normalizeEndpoint(item, what);
      if (!out.includes(ep)) out.push(ep);
    }
  }
  if (out.length === 0) {
    throw usageError(`${what} names no endpoint`, "pass hosts or URLs, e.g. hf-mirror.com,huggingface.co");
  }
  return out;
}

function asList(v: string | readonly string[] | undefined): readonly string[] {
  return v === undefined ? [] : typeof v === "string" ? [v] : v;
}

/**
 * The endpoints in preference order: --mirror/--endpoint (each repeatable, comma-separated), else
 * HFGET_MIRRORS (same list), else HF_ENDPOINT (one URL: other tools read it too), else the host of
 * a pasted URL, else huggingface.co. When an explicit setting leaves out a pasted URL's host,
 * `notice` says which won.
 */
export function resolveEndpoints(
  mirror: string | readonly string[] | undefined,
  env: Env,
  urlOrigin: string | undefined,
): { endpoints: readonly string[]; notice?: string } {
  const flags = asList(mirror);
  const explicit =
    flags.length > 0
      ? { endpoints: parseEndpointList(flags, "--mirror"), from: "--mirror" }
      : env.HFGET_MIRRORS?.trim()
        ? { endpoints: parseEndpointList([env.HFGET_MIRRORS], "HFGET_MIRRORS"), from: "HFGET_MIRRORS" }
        : env.HF_ENDPOINT?.trim()
          ? { endpoints: [normalizeEndpoint(env.HF_ENDPOINT, "HF_ENDPOINT")], from: "HF_ENDPOINT" }
          : undefined;
  if (explicit === undefined) return { endpoints: [urlOrigin ?? DEFAULT_ENDPOINT] };
  const origins = explicit.endpoints.map((e) => new URL(e).origin);
  if (urlOrigin !== undefined && !origins.includes(urlOrigin)) {
    return {
      endpoints: explicit.endpoints,
      notice: `using ${explicit.endpoints.join(", ")} (${explicit.from}), not the URL's host ${urlOrigin}`,
    };
  }
  return { endpoints: explicit.endpoints };
}

/**
 * --mirror/--endpoint, else HF_ENDPOINT, else the host of a pasted URL, else huggingface.co.
 * When an explicit setting overrides a pasted URL's other host, `notice` says which one won.
 */
export function resolveEndpointFrom(
  mirror: string | undefined,
  env: Env,
  urlOrigin: string | undefined,
): { endpoint: string; notice?: string } {
  const explicit =
    mirror !== undefined
      ? { endpoint: normalizeEndpoint(mirror, "--mirror"), from: "--mirror" }
      : env.HF_ENDPOINT?.trim()
        ? { endpoint: normalizeEndpoint(env.HF_ENDPOINT, "HF_ENDPOINT"), from: "HF_ENDPOINT" }
        : undefined;
  if (explicit === undefined) return { endpoint: urlOrigin ?? DEFAULT_ENDPOINT };
  if (urlOrigin !== undefined && new URL(explicit.endpoint).origin !== urlOrigin) {
    return {
      endpoint: explicit.endpoint,
      notice: `using ${explicit.endpoint} (${explicit.from}), not the URL's host ${urlOrigin}`,
    };
  }
  return { endpoint: explicit.endpoint };
}

export type ColorMode = "always" | "never" | "auto";

/** FORCE_COLOR (not 0/false) wins, then NO_COLOR (any non-empty value), then: colour on a terminal. */
export function colorMode(env: Env): ColorMode {
  const force = env.FORCE_COLOR;
  if (force !== undefined) {
    const v = force.trim().toLowerCase();
    return v === "0" || v === "false" ? "never" : "always";
  }
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return "never";
  if (env.TERM === "dumb") return "never";
  return "auto";
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/** "16M", "16MiB", "500kb", "1048576" -> bytes. */
export function parseSize(value: string | number, flag: string): number {
  if (typeof value === "number") return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = m ? SIZE_UNITS[(m[2] ?? "").toLowerCase()] : undefined;
  if (!m || unit === undefined)
    throw usageError(`${flag} "${value}" is not a size`, "examples: 8M, 16MiB, 1048576");
  return Math.floor(Number(m[1]) * unit);
}

export function parseIntFlag(
  value: string | number | undefined,
  flag: string,
  min: number,
  max: number,
  def: number,
): number {
  if (value === undefined) return def;
  const n = typeof value === "number" ? value : Number(value.trim());
  if (!Number.isInteger(n) || n < min || n > max) {
    throw usageError(`${flag} must be a whole number from ${min} to ${max}, got "${value}"`);
  }
  return n;
}

function checkRevision(rev: string): string {
  const r = rev.trim();
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (r === "" || /[\u0000-\u001f\u007f]/.test(r) || r.length > 256) {
    throw usageError(`invalid revision "${rev}"`, "use a branch, a tag, refs/pr/N or a commit sha");
  }
  return r;
}

function isTruthy(v: string | undefined): boolean {
  return v !== undefined && ["1", "true", "yes", "on"].includes(v.trim().toLowerCase());
}

export function buildConfig(raw: RawOptions, env: Env): Config {
  const typeOverride: RepoType | undefined =
    raw.repoType === undefined ? undefined : parseRepoType(raw.repoType);
  const parsed = parseRepoArg(raw.repoId, typeOverride);
  const revision = checkRevision(raw.revision ?? parsed.revision ?? "main");
  // An explicit --revision picks the revision; the URL still names its file or folder (its
  // shortest split, as the path is then all that is left).
  const urlTarget =
    parsed.target === undefined || raw.revision === undefined
      ? parsed.target
      : { kind: parsed.target.kind, choices: [{ revision, path: parsed.target.choices.at(-1)?.path ?? "" }] };
  const { endpoints, notice } = resolveEndpoints(
    [...asList(raw.mirror), ...asList(raw.endpoint)],
    env,
    parsed.origin,
  );
  const limitRate = raw.limitRate === undefined ? 0 : parseSize(raw.limitRate, "--limit-rate");
  const chunkSize = parseSize(raw.chunkSize ?? DEFAULTS.chunkSize, "--chunk-size");
  if (chunkSize < 64 * 1024 || chunkSize > 1024 ** 3) {
    throw usageError(`--chunk-size must be between 64KiB and 1GiB, got "${raw.chunkSize}"`);
  }
  const envTimeout = env.HF_HUB_DOWNLOAD_TIMEOUT?.trim() ? env.HF_HUB_DOWNLOAD_TIMEOUT : undefined;
  const timeoutRaw = raw.timeout ?? envTimeout;
  const timeoutName = raw.timeout === undefined ? "HF_HUB_DOWNLOAD_TIMEOUT" : "--timeout";
  const timeoutSeconds =
    timeoutRaw === undefined ? DEFAULTS.timeoutSeconds : Number(String(timeoutRaw).trim());
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0 || timeoutSeconds > 3600) {
    throw usageError(`${timeoutName} must be a number of seconds between 0 and 3600, got "${timeoutRaw}"`);
  }
  const localDir = raw.localDir === undefined ? undefined : resolve(raw.localDir);
  if (raw.localDir !== undefined && raw.localDir.trim() === "") throw usageError("--local-dir is empty");
  const cacheDir = raw.cacheDir === undefined ? defaultCacheDir(env) : resolve(raw.cacheDir);
  const files = (raw.files ?? []).map((f) => f.replace(/^\/+/, ""));
  const config: Config = {
    repo: parsed.repo,
    revision,
    endpoint: endpoints[0]!,
    endpoints,
    limitRate,
    token: resolveToken(raw.token, env),
    files,
    include: raw.include ?? [],
    exclude: raw.exclude ?? [],
    cacheDir: isAbsolute(cacheDir) ? cacheDir : resolve(cacheDir),
    localDir,
    force: (raw.force ?? false) || (raw.forceDownload ?? false),
    dryRun: raw.dryRun ?? false,
    quiet: raw.quiet ?? false,
    json: raw.json ?? false,
    offline: isTruthy(env.HF_HUB_OFFLINE),
    proxy: {
      httpProxy: env.HTTP_PROXY || env.http_proxy || undefined,
      httpsProxy: env.HTTPS_PROXY || env.https_proxy || undefined,
      noProxy: env.NO_PROXY || env.no_proxy || undefined,
    },
    connections: parseIntFlag(raw.connections, "--connections", 1, 256, DEFAULTS.connections),
    maxFiles:
      raw.maxFiles === undefined && raw.maxWorkers !== undefined
        ? parseIntFlag(raw.maxWorkers, "--max-workers", 1, 256, DEFAULTS.maxFiles)
        : parseIntFlag(raw.maxFiles, "--max-files", 1, 256, DEFAULTS.maxFiles),
    chunkSize,
    retries: parseIntFlag(raw.retries, "--retries", 0, 100, DEFAULTS.retries),
    timeoutMs: Math.round(timeoutSeconds * 1000),
    progress: !isTruthy(env.HF_HUB_DISABLE_PROGRESS_BARS),
    urlTarget,
    notices: notice === undefined ? [] : [notice],
  };
  return Object.freeze(config);
}

/** `hfget serve` flags as commander hands them over. */
export interface RawServeOptions {
  upstream?: string[] | undefined;
  cacheDir?: string | undefined;
  host?: string | undefined;
  port?: string | number | undefined;
  token?: string | undefined;
  offline?: boolean | undefined;
  revalidate?: string | number | undefined;
  accessTokens?: string | undefined;
  connections?: string | number | undefined;
  chunkSize?: string | number | undefined;
  retries?: string | number | undefined;
  timeout?: string | number | undefined;
}

export interface ServeConfig extends EngineOptions {
  /** Normalized endpoints, in fail-over order. */
  readonly upstreams: readonly string[];
  readonly cacheDir: string;
  readonly host: string;
  readonly port: number;
  /** The server's own upstream token (--token, else HF_TOKEN, else the token file). */
  readonly token: string | undefined;
  /** From --access-tokens: one token a line (blank lines and `#` comments skipped). */
  readonly accessTokens: ReadonlySet<string> | undefined;
  readonly offline: boolean;
  readonly revalidateMs: number;
  readonly proxy: ProxySettings;
}

/**
 * Defaults: 127.0.0.1, so a cache that may hold gated or private files is not on the network until
 * the admin says so with `--host 0.0.0.0`; port 8080; upstreams $HFGET_MIRRORS, else $HF_ENDPOINT,
 * else huggingface.co.
 */
export function buildServeConfig(raw: RawServeOptions, env: Env): ServeConfig {
  // The forms of --mirror: repeatable, comma-separated, or HFGET_MIRRORS; first occurrence kept.
  const upstreams =
    raw.upstream && raw.upstream.length > 0
      ? parseEndpointList(raw.upstream, "--upstream")
      : env.HFGET_MIRRORS?.trim()
        ? parseEndpointList([env.HFGET_MIRRORS], "HFGET_MIRRORS")
        : [resolveEndpoint(undefined, env)];
  const host = (raw.host ?? "127.0.0.1").trim();
  if (host === "" || /[\s/]/.test(host)) throw usageError(`--host "${raw.host}" is not an address`);
  const timeoutSeconds = raw.timeout === undefined ? DEFAULTS.timeoutSeconds : Number(raw.timeout);
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0 || timeoutSeconds > 3600) {
    throw usageError(`--timeout must be a number of seconds between 0 and 3600, got "${raw.timeout}"`);
  }
  const chunkSize = parseSize(raw.chunkSize ?? DEFAULTS.chunkSize, "--chunk-size");
  if (chunkSize < 64 * 1024 || chunkSize > 1024 ** 3) {
    throw usageError(`--chunk-size must be between 64KiB and 1GiB, got "${raw.chunkSize}"`);
  }
  let accessTokens: Set<string> | undefined;
  if (raw.accessTokens !== undefined) {
    let text: string;
    try {
      text = readFileSync(resolve(raw.accessTokens), "utf8");
    } catch (err) {
      throw usageError(
        `cannot read --access-tokens file ${raw.accessTokens}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
      );
    }
    accessTokens = new Set(
      text
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l !== "" && !l.startsWith("#")),
    );
    if (accessTokens.size === 0) {
      throw usageError(`--access-tokens file ${raw.accessTokens} lists no token`, "one token a line");
    }
  }
  const connections = parseIntFlag(raw.connections, "--connections", 1, 256, DEFAULTS.connections);
  const config: ServeConfig = {
    upstreams,
    cacheDir: resolve(raw.cacheDir ?? defaultCacheDir(env)),
    host,
    port: parseIntFlag(raw.port, "--port", 0, 65535, 8080),
    token: resolveToken(raw.token, env),
    accessTokens,
    offline: (raw.offline ?? false) || isTruthy(env.HF_HUB_OFFLINE),
    revalidateMs: parseIntFlag(raw.revalidate, "--revalidate", 0, 86_400, 60) * 1000,
    proxy: {
      httpProxy: env.HTTP_PROXY || env.http_proxy || undefined,
      httpsProxy: env.HTTPS_PROXY || env.https_proxy || undefined,
      noProxy: env.NO_PROXY || env.no_proxy || undefined,
    },
    connections,
    maxFiles: connections,
    chunkSize,
    retries: parseIntFlag(raw.retries, "--retries", 0, 100, DEFAULTS.retries),
    timeoutMs: Math.round(timeoutSeconds * 1000),
  };
  return Object.freeze(config);
}
