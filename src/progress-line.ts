import stringWidth from "string-width";
import { formatBytes, formatDuration, formatRate } from "./format.js";

/**
 * One progress-bar line as a pure function of its state and the terminal width, so every width can be
 * unit-tested. Widths are display columns (string-width: CJK and emoji count 2, ANSI escapes 0).
 */

export interface BarLineState {
  /** A file path, or "total 3/10 files" for the overall line. */
  readonly name: string;
  readonly done: number;
  readonly total: number;
  /** Bytes per second over the last seconds; 0 when nothing moved. */
  readonly rate: number;
  /** Set while nothing moves because the run waits (a held lock, a backoff): shown instead of rate and ETA. */
  readonly wait?: string | undefined;
  /** The total will still grow (the listing is being paged): at most 99%, and no ETA. */
  readonly more?: boolean | undefined;
}

export interface BarLineStyle {
  readonly bar: (filled: string, empty: string) => string;
  readonly name: (s: string) => string;
}

const PLAIN: BarLineStyle = { bar: (f, e) => f + e, name: (s) => s };

const BAR_MAX = 30;
const BAR_MIN = 10;
/** Shortest a name is cut to before lesser fields (the bar, the total) give way. */
const NAME_MIN = 24;
/** Shortest a name is cut to so that a wait message fits. */
const NAME_SHORT = 16;
const ELLIPSIS = "…";

/** Made when first needed: building one loads ICU's break data, ~25 ms of CPU (much more on a busy machine) at every start, quiet runs included. */
let segmenter: Intl.Segmenter | undefined;

function graphemes(s: string): { text: string; width: number }[] {
  segmenter ??= new Intl.Segmenter();
  return Array.from(segmenter.segment(s), (g) => ({ text: g.segment, width: stringWidth(g.segment) }));
}

export function displayWidth(s: string): number {
  return stringWidth(s);
}

/** The first graphemes of `s` that fit in `width` columns. */
function fitStart(s: string, width: number): string {
  let out = "";
  let w = 0;
  for (const g of graphemes(s)) {
    if (w + g.width > width) break;
    out += g.text;
    w += g.width;
  }
  return out;
}

/** The last graphemes of `s` that fit in `width` columns. */
function fitEnd(s: string, width: number): string {
  const gs = graphemes(s);
  let out = "";
  let w = 0;
  for (let i = gs.length - 1; i >= 0; i--) {
    const g = gs[i]!;
    if (w + g.width > width) break;
    out = g.text + out;
    w += g.width;
  }
  return out;
}

/**
 * `s` cut in the middle to at most `width` columns: the end (shard number, extension) matters most,
 * so it keeps two thirds: `model-0000…-of-00004.safetensors`.
 */
export function truncateMiddle(s: string, width: number): string {
  if (displayWidth(s) <= width) return s;
  if (width <= 0) return "";
  if (width === 1) return ELLIPSIS;
  const room = width - 1;
  const tail = Math.ceil((room * 2) / 3);
  const end = fitEnd(s, tail);
  const head = fitStart(s, room - displayWidth(end));
  return `${head}${ELLIPSIS}${end}`;
}

/** `s` cut at the end to at most `width` columns. */
export function truncateEnd(s: string, width: number): string {
  if (displayWidth(s) <= width) return s;
  if (width <= 0) return "";
  return `${fitStart(s, width - 1)}${ELLIPSIS}`;
}

interface Layout {
  readonly bar: boolean;
  readonly rate: boolean;
  readonly total: boolean;
}

/**
 * `[bar] pct% done / total  rate  ETA  name`, never wider than `columns`. As the terminal narrows,
 * the bar shrinks first, then the rate goes, then the name is cut in the middle (down to NAME_MIN)
 * to keep a bar; narrower, the bar and the total go before the name is cut further. The
 * percentage, the ETA (or the wait) and the name stay.
 */
export function formatBarLine(s: BarLineState, columns: number, style: BarLineStyle = PLAIN): string {
  const progress = s.total > 0 ? Math.min(s.more === true ? 0.99 : 1, s.done / s.total) : 0;
  const pct = `${Math.floor(progress * 100)}%`.padStart(4);
  const done = formatBytes(s.done).padStart(8);
  const total = `${done} / ${formatBytes(s.total).padEnd(8)}`;
  const rate = s.rate > 0 ? formatRate(s.rate).padStart(10) : "";
  const eta =
    s.rate > 0 && s.more !== true
      ? `ETA ${formatDuration(Math.max(0, s.total - s.done) / s.rate)}`.padEnd(10)
      : "";
  const render = (l: Layout, barWidth: number, name: string, wait = s.wait, st = style): string => {
    const parts: string[] = [];
    if (l.bar && barWidth > 0) {
      const filled = Math.round(progress * barWidth);
      parts.push(st.bar("█".repeat(filled), "░".repeat(barWidth - filled)));
    }
    parts.push(pct, l.total ? total : done);
    if (wait !== undefined) {
      if (wait !== "") parts.push(wait);
    } else {
      if (l.rate && rate !== "") parts.push(rate);
      if (eta !== "") parts.push(eta);
    }
    if (name !== "") parts.push(st.name(name));
    return parts.join(" ");
  };
  const widthOf = (l: Layout, barWidth: number, name: string, wait = s.wait): number =>
    displayWidth(render(l, barWidth, name, wait, PLAIN));
  const nameWidth = displayWidth(s.name);
  // In order of preference; `cut`: the name may be cut in the middle (to NAME_MIN at the least).
  const layouts: (Layout & { cut: boolean })[] = [
    { bar: true, rate: true, total: true, cut: false },
    { bar: true, rate: false, total: true, cut: false },
    { bar: true, rate: false, total: true, cut: true },
    { bar: false, rate: false, total: true, cut: false },
    { bar: false, rate: false, total: false, cut: false },
    { bar: false, rate: false, total: true, cut: true },
    { bar: false, rate: false, total: false, cut: true },
  ];
  for (const l of layouts) {
    // Room left for the bar and the name once the fixed fields are in (plus a space for each).
    const fixed = widthOf(l, 0, "");
    const room = columns - fixed - 1 - (l.bar ? 1 : 0);
    const barWidth = l.bar ? BAR_MIN : 0;
    if (room - nameWidth >= barWidth) {
      return render(l, l.bar ? Math.min(BAR_MAX, room - nameWidth) : 0, s.name);
    }
    if (l.cut && room - barWidth >= Math.min(nameWidth, NAME_MIN)) {
      return render(l, barWidth, truncateMiddle(s.name, room - barWidth));
    }
  }
  // Narrow: the wait message and the name share what is left (the name keeps NAME_SHORT columns at
  // least); if even that does not fit, the line is cut at the terminal's edge.
  const last: Layout = { bar: false, rate: false, total: false };
  let name = truncateMiddle(s.name, NAME_MIN);
  let wait = s.wait;
  if (wait !== undefined) {
    const avail = columns - widthOf(last, 0, "", "") - 2;
    const nameRoom = Math.max(Math.min(nameWidth, NAME_SHORT), avail - displayWidth(wait));
    name = truncateMiddle(s.name, nameRoom);
    const room = avail - displayWidth(name);
    wait = room >= 8 ? truncateEnd(wait, room) : "";
  }
  const line = render(last, 0, name, wait, PLAIN);
  return displayWidth(line) <= columns ? render(last, 0, name, wait) : truncateEnd(line, columns);
}
