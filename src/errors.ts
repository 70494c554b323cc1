/**
 * One error type for everything hfget reports to a user. Each error carries a stable `code`
 * (part of the interface, like the exit codes), a one-line message naming the thing that went
 * wrong, and a hint saying what to do about it. The CLI renders it; library code only throws it.
 */

export type ErrorCode =
  | "USAGE"
  | "REPO_NOT_FOUND"
  | "REVISION_NOT_FOUND"
  | "ENTRY_NOT_FOUND"
  | "GATED"
  | "UNAUTHORIZED"
  | "RATE_LIMITED"
  | "SERVER_ERROR"
  | "NETWORK"
  | "PROTOCOL"
  | "VERIFY_FAILED"
  | "DISK"
  | "OFFLINE"
  | "INTERRUPTED"
  /** The user declined a confirmation (`cache rm`/`prune` answered no, or stdin ended): exit 1 as `hf cache rm`. */
  | "ABORTED";

/** Exit codes are documented in the README; change them only with it. */
export const EXIT_CODES = {
  OK: 0,
  GENERIC: 1,
  /** A declined confirmation: the same 1 `hf cache rm` exits with (click's Abort). */
  ABORTED: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  AUTH: 4,
  VERIFY: 5,
  NETWORK: 6,
  DISK: 7,
  PROTOCOL: 8,
  INTERRUPTED: 130,
} as const;

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case "USAGE":
      return EXIT_CODES.USAGE;
    case "REPO_NOT_FOUND":
    case "REVISION_NOT_FOUND":
    case "ENTRY_NOT_FOUND":
    case "OFFLINE":
      return EXIT_CODES.NOT_FOUND;
    case "GATED":
    case "UNAUTHORIZED":
      return EXIT_CODES.AUTH;
    case "VERIFY_FAILED":
      return EXIT_CODES.VERIFY;
    case "RATE_LIMITED":
    case "SERVER_ERROR":
    case "NETWORK":
      return EXIT_CODES.NETWORK;
    case "PROTOCOL":
      return EXIT_CODES.PROTOCOL;
    case "DISK":
      return EXIT_CODES.DISK;
    case "INTERRUPTED":
      return EXIT_CODES.INTERRUPTED;
    case "ABORTED":
      return EXIT_CODES.ABORTED;
  }
}

export interface HfgetErrorOptions {
  hint?: string | undefined;
  cause?: unknown;
  /** HTTP status, when the error came from a response. */
  status?: number | undefined;
  /** Seconds the server asked us to wait (429/503 Retry-After). */
  retryAfterMs?: number | undefined;
  /** Overrides the default (429, 5xx and network errors are retryable). */
  retryable?: boolean | undefined;
}

export class HfgetError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;
  readonly #retryable: boolean | undefined;

  constructor(code: ErrorCode, message: string, options: HfgetErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "HfgetError";
    this.code = code;
    this.hint = options.hint;
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
    this.#retryable = options.retryable;
  }

  get exitCode(): number {
    return exitCodeFor(this.code);
  }

  /** Whether trying the same request again later may succeed. */
  get retryable(): boolean {
    if (this.#retryable !== undefined) return this.#retryable;
    return this.code === "RATE_LIMITED" || this.code === "SERVER_ERROR" || this.code === "NETWORK";
  }
}

/**
 * Most telling first, when several endpoints refused the same thing: an auth answer the user can act
 * on (exit 4), then "not found" (exit 3), then the rest (network: exit 6).
 */
const TELLING: readonly ErrorCode[] = [
  "GATED",
  "UNAUTHORIZED",
  "REPO_NOT_FOUND",
  "REVISION_NOT_FOUND",
  "ENTRY_NOT_FOUND",
  "PROTOCOL",
  "RATE_LIMITED",
  "SERVER_ERROR",
  "NETWORK",
];

/** The code to report for several endpoints' answers: by TELLING, else the first; undefined if none. */
export function mostTellingCode(codes: readonly ErrorCode[]): ErrorCode | undefined {
  return TELLING.find((c) => codes.includes(c)) ?? codes[0];
}

export function isHfgetError(err: unknown): err is HfgetError {
  return err instanceof HfgetError;
}

export function usageError(message: string, hint?: string): HfgetError {
  return new HfgetError("USAGE", message, { hint });
}

/** Removes every occurrence of the secrets from a text (error messages, server bodies, URLs). */
export function redact(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) {
    if (s !== undefined && s.length >= 4) out = out.split(s).join("<redacted>");
  }
  return out;
}
