import chalk from "chalk";
import cliProgress from "cli-progress";
import type { DownloadEvent } from "./events.js";
import { formatBytes, formatDuration, formatRate } from "./format.js";

export interface Reporter {
  onEvent(e: DownloadEvent): void;
  stop(): void;
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
  readonly started: number;
  /** (time, bytesDone) samples for a rate over the last few seconds. */
  samples: [number, number][] = [];

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
    const t = this.now();
    this.samples.push([t, this.bytesDone]);
    while (this.samples.length > 2 && t - this.samples[0]![0] > 5000) this.samples.shift();
    const [t0, b0] = this.samples[0]!;
    return t > t0 ? ((this.bytesDone - b0) * 1000) / (t - t0) : 0;
  }
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
      else if (e.type === "retry" && e.delayMs >= 1000 && now() - lastWait >= every) {
        // Waits are said (a run that gets 429s for minutes must not look hung), at most once per
        // status interval: 32 connections backing off together would otherwise print 32 lines.
        lastWait = now();
        write(
          `hfget: ${e.path}: ${e.reason}; waiting ${formatDuration(e.delayMs / 1000)} (attempt ${e.attempt})`,
        );
      }
      if (now() - last >= every) {
        last = now();
        status();
      }
    },
    stop() {
      if (t.filesTotal > 0) {
        const secs = (now() - t.started) / 1000;
        write(
          `hfget: finished ${t.filesDone - t.failed}/${t.filesTotal} files (${t.cached} already present), ${formatBytes(t.bytesDone)} in ${formatDuration(secs)}`,
        );
      }
    },
  };
}

/** A terminal: an overall bar plus one bar per large file in flight. */
export function barReporter(opts: ReporterOptions): Reporter {
  const now = opts.now ?? Date.now;
  const t = new Totals(now);
  const multi = new cliProgress.MultiBar(
    {
      stream: opts.stream,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      fps: 5,
      format: (options, params, payload: { name?: string; rate?: string; eta?: string }) => {
        const width = options.barsize ?? 30;
        const done = Math.round(params.progress * width);
        const bar = chalk.cyan("█".repeat(done)) + chalk.gray("░".repeat(Math.max(0, width - done)));
        const pct = `${Math.floor(params.progress * 100)}`.padStart(3);
        return `${bar} ${pct}% ${formatBytes(params.value).padStart(9)} / ${formatBytes(params.total).padEnd(9)} ${payload.rate ?? ""} ${payload.eta ?? ""} ${payload.name ?? ""}`;
      },
    },
    cliProgress.Presets.shades_classic,
  );
  const overall = multi.create(1, 0, { name: "total" });
  const bars = new Map<string, cliProgress.SingleBar>();
  const fileBytes = new Map<string, number>();
  const BIG = 8 * 1024 * 1024;
  const tick = setInterval(() => {
    const rate = t.rate();
    overall.setTotal(Math.max(1, t.bytesTotal));
    overall.update(t.bytesDone, {
      name: chalk.bold(`total ${t.filesDone}/${t.filesTotal} files`),
      rate: formatRate(rate),
      eta: rate > 0 ? `ETA ${formatDuration((t.bytesTotal - t.bytesDone) / rate)}` : "",
    });
    for (const [path, bar] of bars) bar.update(fileBytes.get(path) ?? 0);
  }, 200);
  tick.unref();
  return {
    onEvent(e) {
      t.apply(e);
      if (e.type === "file-start" && e.size >= BIG) {
        fileBytes.set(e.path, e.resumedBytes);
        bars.set(e.path, multi.create(e.size, e.resumedBytes, { name: e.path }));
      } else if (e.type === "bytes" && bars.has(e.path)) {
        fileBytes.set(e.path, (fileBytes.get(e.path) ?? 0) + e.bytes);
      } else if (e.type === "file-done") {
        const bar = bars.get(e.path);
        if (bar) {
          multi.remove(bar);
          bars.delete(e.path);
          fileBytes.delete(e.path);
        }
        if (e.status === "failed") multi.log(`${chalk.red("failed")} ${e.path}\n`);
      } else if (e.type === "verify-failed") {
        multi.log(
          `${chalk.yellow("hash mismatch")} ${e.path}${e.willRetry ? ", downloading it again" : ""}\n`,
        );
      }
    },
    stop() {
      clearInterval(tick);
      overall.setTotal(Math.max(1, t.bytesTotal));
      overall.update(t.bytesDone, {
        name: chalk.bold(`total ${t.filesDone}/${t.filesTotal} files`),
        rate: "",
        eta: "",
      });
      multi.stop();
    },
  };
}

export function makeReporter(opts: ReporterOptions): Reporter {
  if (opts.quiet) return silentReporter();
  return opts.stream.isTTY ? barReporter(opts) : lineReporter(opts);
}
