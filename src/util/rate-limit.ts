import { sleep as defaultSleep, type Sleep } from "./retry.js";

export interface RateLimiterOptions {
  /** The cap, bytes per second (> 0). */
  readonly bytesPerSec: number;
  /**
   * Credit an idle limiter may build up, bytes: how much can pass at once after a pause. Default
   * a tenth of a second's worth, at least 64 KiB (one socket read), so the rate over any second
   * stays within ~10% of the cap.
   */
  readonly burstBytes?: number;
  /** Milliseconds, monotonic (tests inject a fake clock). */
  readonly now?: () => number;
  readonly sleep?: Sleep;
}

/**
 * A token bucket shared by every connection of a run (--limit-rate). Bytes are taken after they
 * arrive; a taker that overdraws the bucket waits until the debt is paid back at the cap. Debts
 * queue in arrival order: each taker waits for the debt left by those before it, so the total rate
 * is the cap however many connections share it, and no one starves.
 */
export class RateLimiter {
  readonly bytesPerSec: number;
  readonly burstBytes: number;
  readonly #now: () => number;
  readonly #sleep: Sleep;
  /** Bytes of credit (negative: debt). */
  #tokens: number;
  #last: number;

  constructor(opts: RateLimiterOptions) {
    if (!(opts.bytesPerSec > 0) || !Number.isFinite(opts.bytesPerSec)) {
      throw new RangeError(
        `rate limit must be a positive number of bytes per second, got ${opts.bytesPerSec}`,
      );
    }
    this.bytesPerSec = opts.bytesPerSec;
    this.burstBytes = opts.burstBytes ?? Math.max(64 * 1024, Math.floor(opts.bytesPerSec / 10));
    this.#now = opts.now ?? (() => performance.now());
    this.#sleep = opts.sleep ?? defaultSleep;
    this.#tokens = this.burstBytes;
    this.#last = this.#now();
  }

  #refill(): void {
    const t = this.#now();
    const elapsed = Math.max(0, t - this.#last);
    this.#last = t;
    this.#tokens = Math.min(this.burstBytes, this.#tokens + (elapsed * this.bytesPerSec) / 1000);
  }

  /**
   * Counts `bytes` against the cap and returns how long (ms) the taker must now wait before it
   * reads more: 0 while there is credit. Pure bookkeeping on the injected clock; no sleeping.
   */
  reserve(bytes: number): number {
    this.#refill();
    this.#tokens -= bytes;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens * 1000) / this.bytesPerSec);
  }

  /** `reserve(bytes)`, then sleep as long as it says (cancellable). */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const wait = this.reserve(bytes);
    if (wait > 0) await this.#sleep(wait, signal);
  }
}

/** A limiter for `bytesPerSec`, or none for 0 (no cap). */
export function rateLimiter(bytesPerSec: number, opts: Omit<RateLimiterOptions, "bytesPerSec"> = {}) {
  return bytesPerSec > 0 ? new RateLimiter({ ...opts, bytesPerSec }) : undefined;
}
