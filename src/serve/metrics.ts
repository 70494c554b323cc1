/** Counters for /metrics, in Prometheus text format. */
export class Metrics {
  readonly requestsByStatus = new Map<number, number>();
  /** Bytes of blobs already whole in the cache (hits). */
  bytesFromCache = 0;
  /** Bytes sent to clients of a blob while it was being fetched (they came from upstream once). */
  bytesServedWhileFetching = 0;
  bytesFetchedUpstream = 0;
  blobHits = 0;
  blobMisses = 0;
  fetchesInFlight = 0;
  /** Upstream blob fetches started (one per blob however many clients ask while it is fetched). */
  fetchesStarted = 0;
  readonly upstreamErrors = new Map<string, number>();
  /** Blob bytes received from each upstream so far (the shared source pool's counts). */
  bytesFetchedFrom: () => Iterable<readonly [string, number]> = () => [];

  request(status: number): void {
    this.requestsByStatus.set(status, (this.requestsByStatus.get(status) ?? 0) + 1);
  }

  upstreamError(endpoint: string): void {
    this.upstreamErrors.set(endpoint, (this.upstreamErrors.get(endpoint) ?? 0) + 1);
  }

  render(): string {
    const lines: string[] = [
      "# TYPE hfget_serve_requests_total counter",
      ...[...this.requestsByStatus].map(([s, n]) => `hfget_serve_requests_total{status="${s}"} ${n}`),
      "# TYPE hfget_serve_bytes_served_from_cache_total counter",
      `hfget_serve_bytes_served_from_cache_total ${this.bytesFromCache}`,
      "# TYPE hfget_serve_bytes_served_while_fetching_total counter",
      `hfget_serve_bytes_served_while_fetching_total ${this.bytesServedWhileFetching}`,
      "# TYPE hfget_serve_bytes_fetched_upstream_total counter",
      `hfget_serve_bytes_fetched_upstream_total ${this.bytesFetchedUpstream}`,
      "# TYPE hfget_serve_bytes_fetched_upstream_by_endpoint_total counter",
      ...[...this.bytesFetchedFrom()].map(
        ([e, n]) =>
          `hfget_serve_bytes_fetched_upstream_by_endpoint_total{endpoint=${JSON.stringify(e)}} ${n}`,
      ),
      "# TYPE hfget_serve_blob_hit_ratio gauge",
      `hfget_serve_blob_hit_ratio ${this.blobHits + this.blobMisses === 0 ? 0 : this.blobHits / (this.blobHits + this.blobMisses)}`,
      "# TYPE hfget_serve_fetches_in_flight gauge",
      `hfget_serve_fetches_in_flight ${this.fetchesInFlight}`,
      "# TYPE hfget_serve_upstream_fetches_total counter",
      `hfget_serve_upstream_fetches_total ${this.fetchesStarted}`,
      "# TYPE hfget_serve_upstream_errors_total counter",
      ...[...this.upstreamErrors].map(
        ([e, n]) => `hfget_serve_upstream_errors_total{endpoint=${JSON.stringify(e)}} ${n}`,
      ),
    ];
    return `${lines.join("\n")}\n`;
  }
}
