/** `Content-Range: bytes 0-99/1234` -> { start: 0, end: 100 (exclusive), size: 1234 }; `*` size -> undefined. */
export interface ContentRange {
  readonly start: number;
  readonly end: number;
  readonly size: number | undefined;
}

export function parseContentRange(value: string | undefined): ContentRange | undefined {
  if (value === undefined) return undefined;
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value);
  if (!m) return undefined;
  const start = Number(m[1]);
  const last = Number(m[2]);
  const size = m[3] === "*" ? undefined : Number(m[3]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(last) || last < start) return undefined;
  if (size !== undefined && (!Number.isSafeInteger(size) || last >= size)) return undefined;
  return { start, end: last + 1, size };
}

/** `bytes=start-(end-1)` for the half-open range [start, end). */
export function rangeHeader(start: number, end: number): string {
  return `bytes=${start}-${end - 1}`;
}
