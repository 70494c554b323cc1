/**
 * How many connections one file may use, found the way TCP finds its window: start with a few,
 * double while doubling still raises throughput, stop when it no longer does. A CDN that caps each
 * connection (~10 MB/s) rewards every extra connection and is filled within about a second; a fast
 * server on a busy machine (loopback, one nginx worker, 2 cores) is not, and extra connections there
 * only cost CPU. Pure: the caller feeds bytes and the clock.
 */
export interface RampOptions {
  /** Connections a file starts with. */
  readonly initial: number;
  /** The most it may reach (the run's connection budget). */
  readonly max: number;
  /** How long each level is measured. */
  readonly windowMs: number;
  /** The gain (0.15 = 15%) a doubling must bring to be kept doubling. */
  readonly minGain: number;
}

export const DEFAULT_RAMP: Omit<RampOptions, "max"> = { initial: 4, windowMs: 400, minGain: 0.15 };

export class ConnectionRamp {
  #allowed: number;
  #settled = false;
  #windowStart: number;
  #windowBytes = 0;
  #saturated = true;
  #lastRate = 0;

  constructor(
    readonly options: RampOptions,
    now: number,
  ) {
    this.#allowed = Math.max(1, Math.min(options.initial, options.max));
    this.#settled = this.#allowed >= options.max;
    this.#windowStart = now;
  }

  get allowed(): number {
    return this.#allowed;
  }

  get settled(): boolean {
    return this.#settled;
  }

  /**
   * `bytes` arrived; `running` requests are in flight. Returns true when the allowance just grew.
   * A window in which the file did not use all its connections says nothing about more of them.
   */
  record(bytes: number, running: number, now: number): boolean {
    if (this.#settled) return false;
    this.#windowBytes += bytes;
    if (running < this.#allowed) this.#saturated = false;
    const elapsed = now - this.#windowStart;
    if (elapsed < this.options.windowMs) return false;
    const rate = this.#windowBytes / elapsed;
    const saturated = this.#saturated;
    this.#windowStart = now;
    this.#windowBytes = 0;
    this.#saturated = true;
    if (!saturated) return false;
    if (this.#lastRate > 0 && rate < this.#lastRate * (1 + this.options.minGain)) {
      this.#settled = true;
      return false;
    }
    this.#lastRate = rate;
    this.#allowed = Math.min(this.options.max, this.#allowed * 2);
    if (this.#allowed >= this.options.max) this.#settled = true;
    return true;
  }
}
