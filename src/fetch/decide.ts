import { HfgetError, isHfgetError } from "../errors.js";
import { type RetryPolicy, retryDelay } from "../util/retry.js";
import { ExpiredUrlError } from "./chunk.js";

/**
 * The retry decision for one chunk, as a pure function: what failed, how the chunk's attempts went
 * so far, and the policy -> what to do next. No clock, no I/O: tests call it with plain data.
 */

/** A chunk's attempt history. */
export interface AttemptState {
  /** Failed attempts in a row that moved the file forward by nothing. */
  readonly failures: number;
  /** An expired CDN URL was already re-resolved at once (the next 403 backs off). */
  readonly expiredRetried: boolean;
}

export const FRESH_ATTEMPTS: AttemptState = { failures: 0, expiredRetried: false };

export type Decision =
  /** Wait `delayMs`, then try the same source again. `capped`: wait in one of the run's retry slots. */
  | { readonly kind: "retry"; readonly delayMs: number; readonly capped: boolean; readonly attempt: number }
  /** The source's URL expired: drop it and ask the hub's resolve URL again, at once. */
  | { readonly kind: "resolve-again" }
  /**
   * This source cannot serve it now; another may: set it aside for this chunk and ask the source
   * pool for another, at once, without spending the chunk's budget. `waitMs`: how long the source
   * itself asked to be left alone (Retry-After), for the pool.
   */
  | { readonly kind: "other-source"; readonly waitMs: number }
  /** Fail the file (or the run) with this error. */
  | { readonly kind: "give-up"; readonly error: HfgetError };

export interface Decided {
  readonly decision: Decision;
  readonly next: AttemptState;
}

/**
 * `otherSources`: how many other sources could still be asked for this chunk. When some are left,
 * a failure that is the source's own (it is down, overloaded, lagging, or has not got the file)
 * moves the chunk to another one and costs nothing; the budget counts only rounds in which every
 * source failed.
 *
 * `progressed`: bytes of the file written by the failed attempt. An attempt that moved the file
 * forward is not a failure: the budget (`policy.retries`) counts attempts in a row that brought
 * nothing (refused, reset before a byte, stalled until the body timeout), so a link that drops every
 * connection after 100 KB still finishes a large file, and a dead one fails within the budget.
 */
export function decide(
  err: unknown,
  progressed: number,
  state: AttemptState,
  policy: RetryPolicy,
  random: () => number = Math.random,
  otherSources = 0,
): Decided {
  // A stall (body or headers timeout) counts even after some bytes: a server that sends a little
  // and then stalls every time must fail within the budget, not trickle forever.
  const moved = progressed > 0 && !isStall(err);
  const base = moved ? FRESH_ATTEMPTS : state;
  const expired = err instanceof ExpiredUrlError;
  if (expired && !base.expiredRetried) {
    return { decision: { kind: "resolve-again" }, next: { ...base, expiredRetried: true } };
  }
  // Only HfgetErrors reach here: the I/O boundary (chunk.ts, http.ts) normalizes errno and socket
  // errors. Anything else is a bug and must not be retried or disguised.
  if (!isHfgetError(err)) throw err;
  if (otherSources > 0 && !moved && sourceLevel(err)) {
    return { decision: { kind: "other-source", waitMs: err.retryAfterMs ?? 0 }, next: base };
  }
  if (!err.retryable) return { decision: { kind: "give-up", error: err }, next: base };
  if (moved) {
    // Bytes flowed: reconnect at once, no backoff and no retry slot.
    return { decision: { kind: "retry", delayMs: 0, capped: false, attempt: 0 }, next: base };
  }
  const failures = base.failures + 1;
  if (failures > policy.retries) {
    const error = new HfgetError(err.code, `${err.message} (gave up after ${failures} attempts)`, {
      hint: err.hint,
      cause: err,
    });
    return { decision: { kind: "give-up", error }, next: { ...base, failures } };
  }
  // At most a few chunks wait out a backoff at once (429s and expired URLs aside: every connection
  // sees those together); a dead server so fails within one chunk's budget and is not hammered.
  const capped = err.code !== "RATE_LIMITED" && !expired;
  const delayMs = retryDelay(failures - 1, policy, err.retryAfterMs, random);
  return { decision: { kind: "retry", delayMs, capped, attempt: failures }, next: { ...base, failures } };
}

/** The attempt ended because the server went silent (undici's body/headers/connect timeout). */
export function isStall(err: unknown): boolean {
  const cause: unknown = err instanceof Error ? err.cause : undefined;
  const code: unknown =
    typeof cause === "object" && cause !== null ? (cause as { code?: unknown }).code : undefined;
  return typeof code === "string" && /TIMEOUT/.test(code);
}

/**
 * A failure that says something about this source, not about the file or the run: another endpoint
 * may well answer. Disk errors, content changes and bugs never are.
 */
export function sourceLevel(err: HfgetError): boolean {
  switch (err.code) {
    case "NETWORK":
    case "SERVER_ERROR":
    case "RATE_LIMITED":
    case "PROTOCOL":
    case "ENTRY_NOT_FOUND":
    case "REVISION_NOT_FOUND":
    case "REPO_NOT_FOUND":
    case "UNAUTHORIZED":
    case "GATED":
      return true;
    default:
      return false;
  }
}
