/**
 * How many connections one endpoint gets, found the way TCP finds its window: start with a few,
 * double while each doubling still raises the endpoint's measured rate by 15% (slow start; a doubling
 * that nearly doubled the rate is followed by a quadrupling, and a window that already shows a clear
 * gain after 100 ms is judged then), keep a
 * doubling that raised it a little and go on by steps, drop back to the last level that paid when
 * one did not, then probe one step up or down now and then (additive) and
 * keep the step only when it pays (up) or costs nothing (down). A CDN capping each connection
 * (~10 MB/s) rewards every doubling and is filled within about half a second (8 -> 16 -> 32); every
 * connection that starts late costs its cap for the delay, ~0.6 s of a 1 GiB download when 4 -> 8 ->
 * 16 -> 32 took 0.9 s. A server capped in total, or
 * a fast link where hfget's own CPU is the limit, stays at a few connections, which then cost less CPU
 * and leave fewer bytes out of order for the hash.
 *
 * Pure: the caller feeds the clock, bytes and requests in flight. Only the number of requests allowed
 * to start changes; nothing in flight is cut, and resume state is written as before (what is unsaved
 * at a kill does not depend on this).
 */
export interface ConnControlOptions {
  /** Connections an endpoint starts with. */
  readonly initial: number;
  /** Fewest it drops back to. */
  readonly min: number;
  /** The most it may reach (--connections). */
  readonly max: number;
  /** How long each level is measured, ms, once all its connections are busy. */
  readonly windowMs: number;
  /** Gain a doubling must bring to keep doubling (0.15 = 15%; a perfect doubling brings 100%). */
  readonly doublingGain: number;
  /**
   * Slow start only: a window of at least this long (ms) is judged at once when its rate already
   * clears the last level's by `fastGain`. A CDN capping each connection shows it within ~100 ms;
   * the full window is for the doubtful cases (a fast link where hfget's CPU is the limit).
   */
  readonly fastWindowMs: number;
  readonly fastGain: number;
  /**
   * A doubling that brought at least this gain (0.8: 8 -> 16 connections gave 1.8x the rate) is
   * followed by a quadrupling: the rate is growing with every connection, as under a per-connection cap.
   */
  readonly jumpGain: number;
  /**
   * Gain a doubling must bring to be kept at all (then steps up from there); below it the count
   * drops back. Too few connections on a capped CDN cost rate, too many on a fast link only some CPU.
   */
  readonly keepGain: number;
  /** Fraction of the proportional gain a step up must bring to be kept (0.5: +25% connections, +12.5% rate). */
  readonly stepGain: number;
  /** Rate a step down may lose and still be kept (0.05 = 5%). */
  readonly stepLoss: number;
  /** Wait after a rejected step before the next probe, ms. */
  readonly probeEveryMs: number;
}

export const DEFAULT_CONN_CONTROL: Omit<ConnControlOptions, "max"> = {
  initial: 8,
  min: 2,
  windowMs: 300,
  doublingGain: 0.15,
  fastWindowMs: 100,
  fastGain: 0.6,
  jumpGain: 0.8,
  keepGain: 0.05,
  stepGain: 0.5,
  stepLoss: 0.05,
  probeEveryMs: 3000,
};

type Mode = "start" | "steady" | "up" | "down";

/** A measured level: connections and the rate they gave (bytes/ms). */
interface Level {
  readonly n: number;
  rate: number;
}

export class ConnectionControl {
  readonly options: ConnControlOptions;
  #allowed: number;
  #mode: Mode = "start";
  /** The level being compared against (the last one that paid). */
  #base: Level | undefined;
  /** Direction of the next probe in steady mode. */
  #next: "up" | "down" = "up";
  /** No probe before this time. */
  #probeAt = 0;
  /** Window: undefined until every allowed connection is busy (after a change, they are not yet). */
  #windowStart: number | undefined;
  #windowBytes = 0;
  /** Time in the window with fewer requests in flight than allowed. */
  #idleMs = 0;
  #lastAt = 0;
  #lastInflight = 0;
  /** Slow start: the first window at this level, when it looked like the doubling did not pay. */
  #firstTry: number | undefined;
  /** The level went down: requests beyond it are still finishing. */
  #draining = false;
  /** Levels chosen, in order (for tests and the report). */
  readonly history: number[] = [];

  constructor(options: ConnControlOptions) {
    const max = Math.max(1, options.max);
    const min = Math.max(1, Math.min(options.min, max));
    this.options = { ...options, max, min };
    this.#allowed = Math.max(min, Math.min(options.initial, max));
    if (this.#allowed >= max) this.#mode = "steady";
    this.history.push(this.#allowed);
  }

  /** Requests that may be in flight to the endpoint now. */
  get allowed(): number {
    return this.#allowed;
  }

  /**
   * `bytes` arrived (0 for a request starting or ending) with `inflight` requests now in flight.
   * Returns true when more connections are allowed than before (idle workers may start now).
   */
  record(bytes: number, inflight: number, now: number): boolean {
    const before = this.#allowed;
    const prevInflight = this.#lastInflight;
    const dt = Math.max(0, now - this.#lastAt);
    this.#lastAt = now;
    this.#lastInflight = inflight;
    if (this.#windowStart === undefined) {
      // A window starts once the level is in effect: every allowed connection busy and, after a
      // step down, the requests beyond it finished.
      if (this.#draining && inflight <= this.#allowed) this.#draining = false;
      if (this.#draining || inflight < this.#allowed) return false;
      this.#windowStart = now;
      this.#windowBytes = 0;
      this.#idleMs = 0;
      return false;
    }
    this.#windowBytes += bytes;
    if (prevInflight < this.#allowed) this.#idleMs += dt;
    const elapsed = now - this.#windowStart;
    if (elapsed < this.options.windowMs && !this.#clearlyPaid(elapsed)) return false;
    const busy = this.#idleMs <= elapsed * 0.2;
    const rate = this.#windowBytes / elapsed;
    this.#windowStart = undefined;
    // A window where the endpoint was not kept busy (a file's tail, nothing left to ask) says
    // nothing about its connections.
    if (busy && rate > 0) this.#judge(rate, now);
    return this.#allowed > before;
  }

  /** Slow start: the window so far already shows the doubling paid well (no need to wait it out). */
  #clearlyPaid(elapsed: number): boolean {
    const o = this.options;
    if (this.#mode !== "start" || this.#base === undefined || elapsed < o.fastWindowMs) return false;
    if (this.#idleMs > elapsed * 0.2) return false;
    return this.#windowBytes / elapsed >= this.#base.rate * (1 + o.fastGain);
  }

  #set(n: number): void {
    const o = this.options;
    const next = Math.max(o.min, Math.min(o.max, n));
    if (next !== this.#allowed) this.history.push(next);
    if (next < this.#allowed) this.#draining = true;
    this.#allowed = next;
  }

  #settle(base: Level, now: number, next: "up" | "down", wait: boolean): void {
    this.#base = base;
    this.#mode = "steady";
    this.#next = next;
    this.#probeAt = wait ? now + this.options.probeEveryMs : now;
    this.#set(base.n);
  }

  #judge(measured: number, now: number): void {
    let rate = measured;
    const o = this.options;
    const n = this.#allowed;
    const base = this.#base;
    switch (this.#mode) {
      case "start": {
        if (base !== undefined && rate < base.rate * (1 + o.doublingGain)) {
          // One window on a busy machine can stall: a doubling is judged on the better of two.
          if (this.#firstTry === undefined) {
            this.#firstTry = rate;
            return;
          }
          rate = Math.max(rate, this.#firstTry);
        }
        this.#firstTry = undefined;
        if (base !== undefined && n > 2 * base.n && rate < base.rate * (1 + o.doublingGain)) {
          // A quadrupling that did not pay: try the doubling it skipped, against the same level.
          this.#set(2 * base.n);
          return;
        }
        if (base !== undefined && rate < base.rate * (1 + o.keepGain)) {
          // The doubling did not pay: back to the last level that did, try fewer later.
          this.#settle(base, now, "down", true);
          return;
        }
        if (base !== undefined && rate < base.rate * (1 + o.doublingGain)) {
          // It paid a little: keep it, and go on by steps.
          this.#settle({ n, rate }, now, "up", false);
          return;
        }
        // Rate growing with the count (nearly 2x for 2x): quadruple, not double.
        const factor = base !== undefined && rate >= base.rate * (1 + o.jumpGain) ? 4 : 2;
        this.#base = { n, rate };
        // Every doubling paid up to the budget: nothing says fewer would do.
        if (n >= o.max) this.#settle(this.#base, now, "up", true);
        else this.#set(n * factor);
        return;
      }
      case "up": {
        const b = base!;
        if (rate >= b.rate * (1 + o.stepGain * ((n - b.n) / b.n)))
          this.#settle({ n, rate }, now, "up", false);
        else this.#settle(b, now, "down", true);
        return;
      }
      case "down": {
        const b = base!;
        if (rate >= b.rate * (1 - o.stepLoss)) this.#settle({ n, rate }, now, "down", false);
        else this.#settle(b, now, "up", true);
        return;
      }
      case "steady": {
        const b = base ?? { n, rate };
        // The level's rate as it is now (the link and the machine change).
        b.rate = rate;
        this.#base = b;
        if (now < this.#probeAt) return;
        const step = Math.max(1, Math.round(n / 8));
        const target = this.#next === "up" ? Math.min(o.max, n + step) : Math.max(o.min, n - step);
        if (target === n) {
          // Nowhere to go this way: try the other way after a while (at the budget, a long while:
          // a step down costs a capped CDN an eighth of its rate while it is measured).
          this.#probeAt = now + (this.#next === "up" ? 4 : 1) * o.probeEveryMs;
          this.#next = this.#next === "up" ? "down" : "up";
          return;
        }
        this.#mode = this.#next;
        this.#set(target);
        return;
      }
    }
  }
}
