/** Retry timing as plain data and pure functions, so tests can check it without sleeping. */

export interface RetryPolicy {
  /** Attempts after the first. */
  readonly retries: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** Longest Retry-After we obey; a server asking for more is waited on for this long. */
  readonly retryAfterCapMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  retries: 6,
  baseDelayMs: 250,
  maxDelayMs: 20_000,
  retryAfterCapMs: 60_000,
};

/**
 * Exponential backoff with "equal jitter": half the window is fixed, half random, so retries of
 * many chunks spread out but never fire immediately.
 */
export function backoffDelay(
  attempt: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
): number {
  const window = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt));
  return Math.round(window / 2 + random() * (window / 2));
}

/** Retry-After as delta-seconds or an HTTP-date, in milliseconds from `now`; undefined when absent or garbage. */
export function parseRetryAfter(
  value: string | undefined | null,
  now: number = Date.now(),
): number | undefined {
  if (value === undefined || value === null) return undefined;
  const v = value.trim();
  if (v === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const date = Date.parse(v);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** The wait before the next attempt: the server's Retry-After (capped) when given, else backoff. */
export function retryDelay(
  attempt: number,
  policy: RetryPolicy,
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.retryAfterCapMs);
  return backoffDelay(attempt, policy, random);
}

export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

/** Cancellable sleep: rejects with the signal's reason when aborted. */
export const sleep: Sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });

export interface RetryableError {
  readonly retryable: boolean;
  readonly retryAfterMs?: number | undefined;
}

export interface WithRetryOptions {
  readonly policy: RetryPolicy;
  readonly signal?: AbortSignal | undefined;
  readonly sleep?: Sleep;
  readonly random?: () => number;
  readonly onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
}

function asRetryable(err: unknown): RetryableError | undefined {
  if (typeof err === "object" && err !== null && "retryable" in err) {
    const r = err as { retryable: unknown; retryAfterMs?: unknown };
    if (typeof r.retryable === "boolean") {
      return {
        retryable: r.retryable,
        retryAfterMs: typeof r.retryAfterMs === "number" ? r.retryAfterMs : undefined,
      };
    }
  }
  return undefined;
}

/** Runs `fn` until it succeeds, fails with a non-retryable error, or the policy's retries are spent. */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, opts: WithRetryOptions): Promise<T> {
  const doSleep = opts.sleep ?? sleep;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const r = asRetryable(err);
      if (opts.signal?.aborted || r === undefined || !r.retryable || attempt >= opts.policy.retries)
        throw err;
      const delayMs = retryDelay(attempt, opts.policy, r.retryAfterMs, opts.random);
      opts.onRetry?.({ attempt: attempt + 1, delayMs, error: err });
      await doSleep(delayMs, opts.signal);
    }
  }
}
