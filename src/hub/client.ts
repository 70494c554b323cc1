import { HfgetError } from "../errors.js";
import { type RepoRef, repoLabel } from "../repo.js";
import { DEFAULT_RETRY_POLICY, type RetryPolicy, type Sleep, withRetry } from "../util/retry.js";
import { type ErrorContext, errorFromResponse } from "./errors.js";
import { type HttpClient, header } from "./http.js";

/** Listing pages are ~300 KB for 1000 files; anything near this is not a hub answer. */
export const MAX_JSON_BYTES = 32 * 1024 * 1024;

export interface HubClientOptions {
  readonly http: HttpClient;
  /** The endpoint this client talks to (default: the HttpClient's preferred one). */
  readonly endpoint?: string;
  readonly retry?: RetryPolicy;
  readonly sleep?: Sleep;
  readonly onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
}

export interface JsonResponse {
  readonly data: unknown;
  readonly headers: Record<string, string | string[] | undefined>;
}

/** The hub API seen from hfget: URL building plus JSON requests with retries, size caps and typed errors. */
export class HubClient {
  readonly http: HttpClient;
  readonly retry: RetryPolicy;
  readonly #endpoint: string;
  readonly #sleep: Sleep | undefined;
  readonly #onRetry: HubClientOptions["onRetry"];

  constructor(opts: HubClientOptions) {
    this.http = opts.http;
    this.#endpoint = opts.endpoint ?? opts.http.endpoint;
    this.retry = opts.retry ?? DEFAULT_RETRY_POLICY;
    this.#sleep = opts.sleep;
    this.#onRetry = opts.onRetry;
  }

  get endpoint(): string {
    return this.#endpoint;
  }

  /** The same client (connection pool, token, retry hooks) aimed at another endpoint or policy. */
  with(change: { endpoint?: string; retry?: RetryPolicy }): HubClient {
    return new HubClient({
      http: this.http,
      endpoint: change.endpoint ?? this.#endpoint,
      retry: change.retry ?? this.retry,
      ...(this.#sleep ? { sleep: this.#sleep } : {}),
      ...(this.#onRetry ? { onRetry: this.#onRetry } : {}),
    });
  }

  /** `{endpoint}/api/{type}s/{id}` */
  apiRepoUrl(repo: RepoRef): string {
    return `${this.endpoint}/api/${repo.type}s/${repo.id}`;
  }

  /** `{endpoint}/{prefix}{id}/resolve/{rev}/{path}`, every segment encoded. */
  resolveUrl(repo: RepoRef, revision: string, path: string): string {
    const encPath = path.split("/").map(encodeURIComponent).join("/");
    return `${this.endpoint}/${repoLabel(repo)}/resolve/${encodeURIComponent(revision)}/${encPath}`;
  }

  errorContext(what: string, notFound: ErrorContext["notFound"]): ErrorContext {
    return { what, notFound, tokenSent: this.http.hasToken, redact: (s) => this.http.redact(s) };
  }

  /** GET a JSON document with retries on 5xx/429/network errors. */
  async getJson(url: string, ctx: ErrorContext, signal?: AbortSignal): Promise<JsonResponse> {
    return withRetry(
      async () => {
        const res = await this.http.request(url, { signal, headers: { accept: "application/json" } });
        if (res.status < 200 || res.status >= 300) throw await errorFromResponse(res, ctx);
        const declared = Number(header(res.headers, "content-length") ?? "0");
        if (declared > MAX_JSON_BYTES) {
          res.body.destroy();
          throw this.#tooLarge(ctx, declared);
        }
        const chunks: Buffer[] = [];
        let total = 0;
        try {
          for await (const chunk of res.body) {
            const buf = chunk as Buffer;
            total += buf.length;
            if (total > MAX_JSON_BYTES) {
              res.body.destroy();
              throw this.#tooLarge(ctx, total);
            }
            chunks.push(buf);
          }
        } catch (err) {
          throw this.http.networkError(err, new URL(url), signal);
        }
        const text = Buffer.concat(chunks).toString("utf8");
        try {
          return { data: JSON.parse(text) as unknown, headers: res.headers };
        } catch {
          throw new HfgetError("PROTOCOL", `${ctx.what}: the server sent malformed JSON (${total} bytes)`, {
            hint: "the endpoint is not answering like a hub; check --mirror / HF_ENDPOINT",
          });
        }
      },
      {
        policy: this.retry,
        signal,
        ...(this.#sleep ? { sleep: this.#sleep } : {}),
        ...(this.#onRetry ? { onRetry: this.#onRetry } : {}),
      },
    );
  }

  #tooLarge(ctx: ErrorContext, bytes: number): HfgetError {
    return new HfgetError("PROTOCOL", `${ctx.what}: the server's answer is too large (${bytes} bytes)`, {
      hint: "the endpoint is not answering like a hub; check --mirror / HF_ENDPOINT",
    });
  }
}
