/** A set of half-open byte ranges [start, end), kept sorted and merged. */
export type ByteRange = readonly [start: number, end: number];

export class RangeSet {
  #ranges: [number, number][] = [];

  constructor(ranges: readonly ByteRange[] = []) {
    for (const [s, e] of ranges) this.add(s, e);
  }

  add(start: number, end: number): void {
    if (end <= start) return;
    const out: [number, number][] = [];
    let s = start;
    let e = end;
    let placed = false;
    for (const r of this.#ranges) {
      if (r[1] < s) out.push(r);
      else if (r[0] > e) {
        if (!placed) {
          out.push([s, e]);
          placed = true;
        }
        out.push(r);
      } else {
        s = Math.min(s, r[0]);
        e = Math.max(e, r[1]);
      }
    }
    if (!placed) out.push([s, e]);
    this.#ranges = out;
  }

  /** Bytes covered. */
  get total(): number {
    let t = 0;
    for (const [s, e] of this.#ranges) t += e - s;
    return t;
  }

  /** End of the covered run that starts at or spans `offset`, or `offset` when it is not covered. */
  coveredUntil(offset: number): number {
    for (const [s, e] of this.#ranges) {
      if (s <= offset && offset < e) return e;
      if (s > offset) break;
    }
    return offset;
  }

  /** Whether [start, end) overlaps anything in the set. */
  overlaps(start: number, end: number): boolean {
    return this.#ranges.some(([s, e]) => s < end && start < e);
  }

  /** The uncovered parts of [0, size). */
  gaps(size: number): ByteRange[] {
    const out: [number, number][] = [];
    let at = 0;
    for (const [s, e] of this.#ranges) {
      if (s >= size) break;
      if (s > at) out.push([at, s]);
      at = Math.max(at, e);
    }
    if (at < size) out.push([at, size]);
    return out;
  }

  toJSON(): ByteRange[] {
    return this.#ranges.map(([s, e]) => [s, e] as const);
  }
}

/** Splits ranges into pieces of at most `chunkSize` bytes. */
export function splitRanges(ranges: readonly ByteRange[], chunkSize: number): ByteRange[] {
  const out: ByteRange[] = [];
  for (const [s, e] of ranges) {
    for (let at = s; at < e; at += chunkSize) out.push([at, Math.min(e, at + chunkSize)]);
  }
  return out;
}
