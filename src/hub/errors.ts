import { type ErrorCode, HfgetError } from "../errors.js";
import { parseRetryAfter } from "../util/retry.js";
import { type HttpResponse, header } from "./http.js";

export interface ErrorContext {
  /** What was being fetched, for the message: `repo openai-community/gpt2`, `file config.json`. */
  readonly what: string;
  /** The repo, when `what` is a file in it: a gated answer is about the repo, not the file. */
  readonly repo?: string | undefined;
  /** The code a bare 404 (no X-Error-Code) means here. */
  readonly notFound: ErrorCode;
  readonly tokenSent: boolean;
  readonly redact: (s: string) => string;
}

export const MAX_ERROR_BODY = 16 * 1024;

async function readErrorBody(res: HttpResponse): Promise<string> {
  let text = "";
  try {
    for await (const chunk of res.body) {
      text += (chunk as Buffer).toString("utf8");
      if (text.length >= MAX_ERROR_BODY) break;
    }
  } catch {
    // A body that fails half way still gives a useful status.
  }
  res.body.destroy();
  return errorBodyText(text);
}

/** What an error body says: its JSON `error`, else its first 200 characters. */
function errorBodyText(text: string): string {
  try {
    const json = JSON.parse(text) as { error?: unknown };
    if (typeof json.error === "string") return json.error;
  } catch {
    // not JSON
  }
  return text.replace(/\s+/g, " ").trim().slice(0, 200);
}

/** Turns a non-2xx hub answer into a typed error with a hint, using X-Error-Code first, then the status. */
export async function errorFromResponse(res: HttpResponse, ctx: ErrorContext): Promise<HfgetError> {
  return errorFromBody(res, await readErrorBody(res), ctx);
}

/**
 * The same from an answer whose body (up to MAX_ERROR_BODY bytes of it) was already read as
 * `text` (the chunk fetcher reads bodies without a Readable).
 */
export function errorFromText(
  res: Pick<HttpResponse, "status" | "headers">,
  text: string,
  ctx: ErrorContext,
): HfgetError {
  return errorFromBody(res, errorBodyText(text), ctx);
}

function errorFromBody(
  res: Pick<HttpResponse, "status" | "headers">,
  body: string,
  ctx: ErrorContext,
): HfgetError {
  const serverSays = ctx.redact(body);
  const said = serverSays ? ` (server: ${serverSays})` : "";
  const errorCode = header(res.headers, "x-error-code");
  const status = res.status;
  const retryAfterMs = parseRetryAfter(header(res.headers, "retry-after"));
  const make = (code: ErrorCode, message: string, hint?: string) =>
    new HfgetError(code, `${message}${said}`, { hint, status, retryAfterMs });

  switch (errorCode) {
    case "RepoNotFound":
      return make(
        "REPO_NOT_FOUND",
        `${ctx.what}: repository not found`,
        ctx.tokenSent
          ? "check the repo id and --repo-type, and that your token can read it"
          : "check the repo id and --repo-type; a private repo needs --token or HF_TOKEN",
      );
    case "GatedRepo":
      return make(
        "GATED",
        `${ctx.repo ?? ctx.what}: the repository is gated`,
        ctx.tokenSent
          ? "accept the conditions on the repo page with the account of your token"
          : "accept the conditions on the repo page, then pass --token or set HF_TOKEN",
      );
    case "RevisionNotFound":
      return make(
        "REVISION_NOT_FOUND",
        `${ctx.what}: revision not found`,
        "check --revision (a branch, tag, refs/pr/N or commit sha)",
      );
    case "EntryNotFound":
      return make(
        "ENTRY_NOT_FOUND",
        `${ctx.what}: file not found in the repository`,
        "run `hfget ls` to see the files",
      );
    default:
      break;
  }
  if (status === 401) {
    return make(
      "UNAUTHORIZED",
      `${ctx.what}: unauthorized (401)`,
      ctx.tokenSent ? "the token was refused; check HF_TOKEN / --token" : "pass --token or set HF_TOKEN",
    );
  }
  if (status === 403) {
    return make(
      "UNAUTHORIZED",
      `${ctx.what}: forbidden (403)`,
      "your token may lack access to this repository",
    );
  }
  if (status === 404) {
    const hint =
      ctx.notFound === "REVISION_NOT_FOUND"
        ? "check --revision"
        : ctx.notFound === "ENTRY_NOT_FOUND"
          ? "run `hfget ls` to see the files"
          : "check the repo id and --repo-type";
    return make(ctx.notFound, `${ctx.what}: not found (404)`, hint);
  }
  if (status === 429) {
    return make(
      "RATE_LIMITED",
      `${ctx.what}: rate limited (429)`,
      "wait and retry, or pass a token for higher limits",
    );
  }
  if (status >= 500) {
    return make("SERVER_ERROR", `${ctx.what}: server error (${status})`, "the server failed; retry later");
  }
  return make("PROTOCOL", `${ctx.what}: unexpected HTTP status ${status}`);
}
