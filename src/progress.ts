import { createRequire } from "node:module";
import chalk from "chalk";
import type cliProgressModule from "cli-progress";
import type { DownloadEvent, EndpointResult } from "./events.js";
import { formatBytes, formatDuration, formatRate } from "./format.js";
import { type BarLineState, type BarLineStyle, formatBarLine, truncateEnd } from "./progress-line.js";

export interface Reporter {
  onEvent(e: DownloadEvent): void;
  /** The run is over; `result.path` (where the files went) is named in the summary line. */
  stop(result?: { readonly path: string; readonly endpoints?: readonly EndpointResult[] | undefined }): void;
}

export interface ReporterOptions {
  readonly stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  readonly quiet: boolean;
  /** Plain-line interval when not on a terminal. */
  readonly intervalMs?: number;
  readonly now?: () => number;
}

/** Counts bytes and files from engine events; both reporters render from it. */
class Totals {
  bytesTotal = 0;
  bytesDone = 0;
  filesTotal = 0;
  filesDone = 0;
  cached = 0;
  failed = 0;
  retries = 0;
  /** Bytes that came from the network in this run (bytesDone also counts resumed bytes). */
  fetched = 0;
  readonly started: number;
  readonly #meter = new RateMeter();

  constructor(readonly now: () => number) {
    this.started = now();
  }

  apply(e: DownloadEvent): void {
    switch (e.type) {
      case "planned":
        this.bytesTotal = e.bytes;
        this.filesTotal = e.files;
        break;
      case "file-start":
        this.bytesDone += e.resumedBytes;
        break;
      case "bytes":
        this.bytesDone += e.bytes;
        this.fetched += e.bytes;
        break;
      case "retry":
        this.retries++;
        break;
      case "file-done":
        this.filesDone++;
        if (e.status === "cached") {
          this.cached++;
          this.bytesTotal -= e.size;
        } else if (e.status === "failed") this.failed++;
        break;
      default:
        break;
    }
  }

  rate(): number {
    return this.#meter.rate(this.now(), this.bytesDone);
  }
}

/** A rate over the last few seconds from (time, value) samples taken at each call. */
class RateMeter {
  readonly #samples: [number, number][] = [];

  rate(t: number, value: number): number {
    this.#samples.push([t, value]);
    while (this.#samples.length > 2 && t - this.#samples[0]![0] > 5000) this.#samples.shift();
    const [t0, v0] = this.#samples[0]!;
    return t > t0 ? ((value - v0) * 1000) / (t - t0) : 0;
  }
}

/** The last line of a run, on a terminal or not: files, bytes, time, average rate, where they went. */
export function summaryLine(t: Totals, where?: string, endpoints: readonly EndpointResult[] = []): string {
  const secs = (t.now() - t.started) / 1000;
  const rate = secs > 0 && t.fetched > 0 ? ` (${formatRate(t.fetched / secs)})` : "";
  const to = where !== undefined ? ` -> ${where}` : "";
  return `hfget: finished ${t.filesDone - t.failed}/${t.filesTotal} files (${t.cached} already present), ${formatBytes(t.bytesDone)} in ${formatDuration(secs)}${rate}${to}${perEndpoint(endpoints)}`;
}

/** `; from http://a: 1.2 MB (3.4 MB/s), http://b: ...` when more than one endpoint served bytes. */
export function perEndpoint(endpoints: readonly EndpointResult[]): string {
  const served = endpoints.filter((e) => e.bytes > 0);
  if (served.length < 2) return "";
  const each = served.map((e) => `${e.endpoint}: ${formatBytes(e.bytes)} (${formatRate(e.bytesPerSec)})`);
  return `; from ${each.join(", ")}`;
}

/** Nothing at all (--quiet, --json without a terminal). */
export function silentReporter(): Reporter {
  return { onEvent: () => undefined, stop: () => undefined };
}

/**
 * Not a terminal (CI logs): one line per finished file and a progress line every few seconds;
 * retries are summarized, not listed.
 */
export function lineReporter(opts: ReporterOptions): Reporter {
  const now = opts.now ?? Date.now;
  const t = new Totals(now);
  const every = opts.intervalMs ?? 5000;
  let last = now();
  let lastWait = Number.NEGATIVE_INFINITY;
  // A chunk moved off an endpoint is said once per endpoint; marking it down or dropping it always.
  const setAside = new Set<string>();
  const write = (s: string) => opts.stream.write(`${s}\n`);
  const status = () => {
    const rate = t.rate();
    const pct = t.bytesTotal > 0 ? ` (${Math.floor((100 * t.bytesDone) / t.bytesTotal)}%)` : "";
    const eta = rate > 0 ? `, ETA ${formatDuration((t.bytesTotal - t.bytesDone) / rate)}` : "";
    const retries = t.retries > 0 ? `, ${t.retries} retries` : "";
    // No rate yet (nothing moved since the last sample): say so instead of "0 B/s" with no ETA.
    const speed = rate > 0 ? `${formatRate(rate)}${eta}` : "starting";
    write(
      `hfget: ${formatBytes(t.bytesDone)} of ${formatBytes(t.bytesTotal)}${pct}, ${t.filesDone}/${t.filesTotal} files, ${speed}${retries}`,
    );
  };
  return {
    onEvent(e) {
      t.apply(e);
      if (e.type === "resolved") write(`hfget: revision resolved to ${e.commit}`);
      else if (e.type === "planned") write(`hfget: ${e.files} files, ${formatBytes(e.bytes)}`);
      else if (e.type === "file-done" && e.status === "downloaded")
        write(`hfget: done ${e.path} (${formatBytes(e.size)})`);
      else if (e.type === "file-done" && e.status === "failed") write(`hfget: FAILED ${e.path}`);
      else if (e.type === "verify-failed")
        write(`hfget: ${e.path}: hash mismatch${e.willRetry ? ", downloading it again" : ""}`);
      else if (e.type === "source-set-aside" && (e.for !== "request" || !setAside.has(e.endpoint))) {
        setAside.add(e.endpoint);
        const what =
          e.for === "run" ? "dropped for this run" : e.for === "a while" ? "down for a while" : "set aside";
        write(`hfget: ${e.endpoint} ${what} (${e.path}: ${e.reason})`);
      } else if (e.type === "lock-wait")
        write(`hfget: waiting for ${e.path}: another process holds its lock ${e.lock}`);
      else if (
        (e.type === "retry" || e.type === "api-retry") &&
        e.delayMs >= 1000 &&
        now() - lastWait >= every
      ) {
        // Waits are said (a run that gets 429s for minutes must not look hung), at most once per
        // status interval: 32 connections backing off together would otherwise print 32 lines.
        lastWait = now();
        const what = e.type === "retry" ? `${e.path}: ` : "";
        write(
          `hfget: ${what}${e.reason}; waiting ${formatDuration(e.delayMs / 1000)} (attempt ${e.attempt})`,
        );
      }
      if (now() - last >= every) {
        last = now();
        status();
      }
    },
    stop(result) {
      if (t.filesTotal > 0) write(summaryLine(t, result?.path, result?.endpoints));
    },
  };
}

type Wait =
  | { readonly kind: "lock" }
  | { readonly kind: "retry"; readonly until: number; readonly reason: string };

/** "429" from "file w.bin: rate limited (429)" or "HTTP 503"; else the reason, cut short. */
export function shortReason(reason: string): string {
  const status = /\((\d{3})\)/.exec(reason) ?? /\bHTTP (\d{3})\b/.exec(reason);
  return status?.[1] ?? truncateEnd(reason, 24);
}

/** What a waiting file (or the whole run, when nothing moves) shows instead of its rate and ETA. */
export function describeWaits(waits: readonly Wait[], now: number): string | undefined {
  const retries = waits.filter((w) => w.kind === "retry");
  if (retries.length > 0) {
    // The soonest: when something will happen next.
    const next = retries.reduce((a, b) => (b.until < a.until ? b : a));
    return `retrying in ${formatDuration(Math.max(0, next.until - now) / 1000)} (${shortReason(next.reason)})`;
  }
  if (waits.length === 1) return "waiting for lock held by another process";
  if (waits.length > 1) return `${waits.length} files waiting for locks held by other processes`;
  return undefined;
}

/**
 * cli-progress is loaded when a terminal shows bars: runs under scripts, CI and pipes (no TTY, or
 * --quiet) never need it. It is CommonJS, so a synchronous require keeps makeReporter synchronous.
 */
function loadCliProgress(): typeof cliProgressModule {
  return createRequire(import.meta.url)("cli-progress") as typeof cliProgressModule;
}

/** A terminal: an overall bar plus one bar per large file in flight; a summary line at the end. */
export function barReporter(opts: ReporterOptions): Reporter {
  const cliProgress = loadCliProgress();
  const now = opts.now ?? Date.now;
  const t = new Totals(now);
  const style: BarLineStyle = {
    bar: (filled, empty) => chalk.cyan(filled) + chalk.gray(empty),
    name: (s) => s,
  };
  const multi = new cliProgress.MultiBar(
    {
      stream: opts.stream,
      hideCursor: true,
      // The bars go at the end; the summary line stays.
      clearOnComplete: true,
      stopOnComplete: false,
      linewrap: false,
      fps: 5,
      // One column short of the edge: a line that fills the last column wraps on some terminals.
      format: (_options, params, payload: { state?: BarLineState }) =>
        payload.state === undefined
          ? ""
          : formatBarLine(payload.state, Math.max(1, params.maxWidth - 1), style),
    },
    cliProgress.Presets.shades_classic,
  );
  let overall: cliProgressModule.SingleBar | undefined;
  const bars = new Map<
    string,
    { bar: cliProgressModule.SingleBar; size: number; done: number; meter: RateMeter }
  >();
  const waits = new Map<string, Wait>();
  let lastBytes = Number.NEGATIVE_INFINITY;
  let planned = false;
  /** Files started and not done. */
  const inFlight = new Set<string>();
  /** The key of an API request's wait in `waits` (no file path is empty). */
  const API = "";
  const BIG = 8 * 1024 * 1024;
  const waitOf = (path: string): string | undefined => {
    const w = waits.get(path);
    return w === undefined ? undefined : describeWaits([w], now());
  };
  const render = () => {
    const rate = t.rate();
    for (const [path, w] of waits) if (w.kind === "retry" && w.until <= now()) waits.delete(path);
    if (overall === undefined) return;
    const name = planned ? `total ${t.filesDone}/${t.filesTotal} files` : "contacting the hub";
    // The run's line tells of a wait when every file in flight waits, or no bytes came for a second
    // (a tiny file done just before must not hide it behind "2 B/s, ETA 1464h").
    const moving = [...inFlight].some((p) => !waits.has(p));
    const idle = !moving || now() - lastBytes >= 1000;
    const wait = idle ? describeWaits([...waits.values()], now()) : undefined;
    const state: BarLineState = { name, done: t.bytesDone, total: t.bytesTotal, rate, wait };
    overall.setTotal(Math.max(1, t.bytesTotal));
    overall.update(t.bytesDone, { state });
    for (const [path, b] of bars) {
      const fileRate = b.meter.rate(now(), b.done);
      b.bar.update(b.done, {
        state: { name: path, done: b.done, total: b.size, rate: fileRate, wait: waitOf(path) },
      });
    }
  };
  const tick = setInterval(render, 200);
  tick.unref();
  return {
    onEvent(e) {
      t.apply(e);
      if (e.type === "planned") planned = true;
      // The run's line appears with the plan, or earlier when an API request must wait.
      if ((e.type === "planned" || e.type === "api-retry") && overall === undefined) {
        overall = multi.create(1, 0, { state: { name: "", done: 0, total: 0, rate: 0 } });
        render();
      }
      if (e.type === "api-retry") {
        if (e.delayMs >= 1000) waits.set(API, { kind: "retry", until: now() + e.delayMs, reason: e.reason });
        render();
      } else if (e.type === "file-start") {
        waits.delete(e.path);
        waits.delete(API);
        inFlight.add(e.path);
        if (e.size >= BIG && !bars.has(e.path)) {
          const state: BarLineState = { name: e.path, done: e.resumedBytes, total: e.size, rate: 0 };
          const bar = multi.create(e.size, e.resumedBytes, { state });
          bars.set(e.path, { bar, size: e.size, done: e.resumedBytes, meter: new RateMeter() });
        }
      } else if (e.type === "bytes") {
        waits.delete(e.path);
        lastBytes = now();
        const b = bars.get(e.path);
        if (b) b.done += e.bytes;
      } else if (e.type === "lock-wait") {
        waits.set(e.path, { kind: "lock" });
        // Once per file (the engine says it once): which file, and whose lock, stays above the bars.
        multi.log(`${chalk.yellow("waiting")} for ${e.path}: another process holds its lock ${e.lock}\n`);
      } else if (e.type === "retry" && e.delayMs >= 1000) {
        // Short backoffs are not worth a word; a long one (429 Retry-After) must not look like a hang.
        waits.set(e.path, { kind: "retry", until: now() + e.delayMs, reason: e.reason });
      } else if (e.type === "file-done") {
        waits.delete(e.path);
        inFlight.delete(e.path);
        const b = bars.get(e.path);
        if (b) {
          multi.remove(b.bar);
          bars.delete(e.path);
        }
        if (e.status === "failed") multi.log(`${chalk.red("failed")} ${e.path}\n`);
      } else if (e.type === "source-set-aside" && e.for !== "request") {
        // As in CI lines: an endpoint marked down or dropped is said; a chunk moved once is not.
        const what = e.for === "run" ? "dropped for this run" : "down for a while";
        multi.log(`${chalk.yellow(e.endpoint)} ${what} (${e.path}: ${e.reason})\n`);
      } else if (e.type === "verify-failed") {
        multi.log(
          `${chalk.yellow("hash mismatch")} ${e.path}${e.willRetry ? ", downloading it again" : ""}\n`,
        );
      }
    },
    stop(result) {
      clearInterval(tick);
      multi.stop();
      if (t.filesTotal > 0) opts.stream.write(`${summaryLine(t, result?.path, result?.endpoints)}\n`);
    },
  };
}

export function makeReporter(opts: ReporterOptions): Reporter {
  if (opts.quiet) return silentReporter();
  return opts.stream.isTTY ? barReporter(opts) : lineReporter(opts);
}
