/**
 * `hfget serve --upstream a --upstream b`: a blob fetch gets every upstream as a source (pinned at
 * the commit), so it fails over mid-file and spreads a large file over the healthy ones, as
 * `hfget --mirror a,b` does. Two fake hubs serve the same repo; faults are injected per hub.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { DOWN_AFTER } from "../src/fetch/sources.js";
import type { ServeHandle, ServeOptions } from "../src/serve/server.js";
import {
  type FakeHub,
  type FakeRepo,
  fileFromBuffer,
  makeRepo,
  pushCommit,
  randomBytesSeeded,
  startFakeHub,
  TEST_TOKEN,
} from "./fakehub/index.js";
import { blobProblems, cleanEnv, tempDir, waitFor } from "./helpers.js";
import { runPython, skipWithoutPython } from "./pyclient.js";
import { metricValue, withServeServer } from "./serve-helpers.js";

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const KiB = 1024;
const CHUNK = 256 * KiB;

/** Two (or more) fake hubs, each with its own repo objects; all closed after `fn` (twice is fine). */
async function withHubs<T>(repoSets: FakeRepo[][], fn: (hubs: FakeHub[]) => Promise<T>): Promise<T> {
  const hubs: FakeHub[] = [];
  try {
    for (const repos of repoSets) hubs.push(await startFakeHub({ repos }));
    return await fn(hubs);
  } finally {
    for (const h of hubs) await h.close();
  }
}

/** The library server in front of `upstreams`, small chunks; `fn` runs, then it closes. */
function withServer<T>(
  upstreams: readonly string[],
  extra: Partial<ServeOptions>,
  fn: (srv: ServeHandle, logs: string[], cacheDir: string) => Promise<T>,
): Promise<T> {
  return withServeServer(upstreams, extra, fn, {
    engine: { connections: 4, maxFiles: 4, chunkSize: CHUNK, retries: 1, timeoutMs: 5_000 },
    dispatcherTimeoutMs: extra.engine?.timeoutMs ?? 5_000,
  });
}

async function get(url: string): Promise<{ status: number; body: Buffer; headers: Headers }> {
  const r = await fetch(url, { redirect: "manual" });
  return { status: r.status, body: Buffer.from(await r.arrayBuffer()), headers: r.headers };
}

const errorsOf = (srv: ServeHandle, endpoint: string): number =>
  metricValue(
    srv.metrics.render(),
    `hfget_serve_upstream_errors_total{endpoint=${JSON.stringify(endpoint)}}`,
  ) ?? 0;
const fetchedFrom = (srv: ServeHandle, endpoint: string): number =>
  metricValue(
    srv.metrics.render(),
    `hfget_serve_bytes_fetched_upstream_by_endpoint_total{endpoint=${JSON.stringify(endpoint)}}`,
  ) ?? 0;

/** Body bytes a hub's CDN sent for blob requests, and the ranged GETs among them. */
function cdnTraffic(hub: FakeHub): { bytes: number; ranged: number } {
  const gets = hub.log.filter((e) => e.server === "cdn" && e.method === "GET");
  return {
    bytes: gets.reduce((n, e) => n + e.bytesSent, 0),
    ranged: gets.filter((e) => e.range !== undefined && e.status === 206).length,
  };
}

/** The server's JSON log lines of one event. */
function events(logs: readonly string[], event: string): { endpoint?: string; reason?: string }[] {
  return logs
    .map((l) => JSON.parse(l) as { event?: string; endpoint?: string; reason?: string })
    .filter((l) => l.event === event);
}

test("upstream 1 answers 500 on resolve (HEAD fine): huggingface_hub gets the right bytes from upstream 2; log and metrics name upstream 1", {
  skip: skipWithoutPython(),
}, async () => {
  const data = randomBytesSeeded(301, 2_000_000);
  const files = () => [fileFromBuffer("w.bin", data, { lfs: true })];
  await withHubs([[makeRepo("org/m", files())], [makeRepo("org/m", files())]], async ([a, b]) => {
    a!.faults.push({
      server: "hub",
      method: "GET",
      pathIncludes: "/resolve/",
      times: 1000,
      fault: { type: "status", status: 500 },
    });
    await withServer([a!.url, b!.url], {}, async (srv, logs) => {
      const cache = tempDir();
      const r = await runPython(
        "1.28",
        `
import sys
from huggingface_hub import hf_hub_download
print("RESULT " + hf_hub_download("org/m", "w.bin"), flush=True)
`,
        [],
        {
          env: cleanEnv({
            HF_ENDPOINT: srv.url,
            HF_HUB_CACHE: cache,
            HF_HUB_DISABLE_PROGRESS_BARS: "1",
            HF_HUB_DISABLE_TELEMETRY: "1",
            HF_HUB_DISABLE_XET: "1",
          }),
          timeoutMs: 30_000,
        },
      );
      assert.equal(r.code, 0, r.stderr);
      const path = /RESULT (.+)/.exec(r.stdout)?.[1]?.trim() ?? "";
      assert.equal(sha256(readFileSync(path)), sha256(data));
      // Upstream 1 was asked for the bytes and answered 500; every byte came from upstream 2.
      assert.ok(
        a!.log.some(
          (e) => e.server === "hub" && e.method === "GET" && e.url.includes("/resolve/") && e.status === 500,
        ),
        "upstream 1 was asked",
      );
      assert.equal(cdnTraffic(a!).bytes, 0);
      assert.equal(fetchedFrom(srv, b!.url), data.length);
      assert.ok(errorsOf(srv, a!.url) >= 1, srv.metrics.render());
      assert.equal(errorsOf(srv, b!.url), 0, srv.metrics.render());
      const aside = events(logs, "upstream-set-aside");
      assert.ok(
        aside.some((l) => l.endpoint === a!.url && /500/.test(l.reason ?? "")),
        `a log line names upstream 1 and its 500:\n${logs.join("\n")}`,
      );
    });
  });
});

test("upstream 1 killed mid-blob: the fetch finishes from upstream 2, right bytes, fetched about once", async (t) => {
  const data = randomBytesSeeded(302, 6 * 1024 * KiB);
  const files = () => [fileFromBuffer("w.bin", data, { lfs: true })];
  await withHubs([[makeRepo("org/m", files())], [makeRepo("org/m", files())]], async ([a, b]) => {
    // Paced, so upstream 1 is killed with most of the file still to come.
    for (const h of [a!, b!])
      h.faults.push({ server: "cdn", times: 1000, fault: { type: "throttle", bytesPerSec: 1_000_000 } });
    await withServer([a!.url, b!.url], {}, async (srv, logs, cacheDir) => {
      const t0 = Date.now();
      const client = get(`${srv.url}/org/m/resolve/main/w.bin`);
      await waitFor(() => cdnTraffic(a!).bytes >= 512 * KiB, 10_000, "upstream 1 sending bytes");
      await a!.close();
      const r = await client;
      assert.equal(r.status, 200);
      assert.equal(sha256(r.body), sha256(data), "client's bytes");
      assert.ok(Date.now() - t0 < 20_000, "bounded");
      // The engine's written bytes: the file once; what the two CDNs sent: the file plus what was in
      // flight when upstream 1 died (a chunk or two at most).
      const fetched = metricValue(srv.metrics.render(), "hfget_serve_bytes_fetched_upstream_total") ?? 0;
      assert.ok(fetched >= data.length && fetched <= data.length + 2 * CHUNK, `fetched ${fetched}`);
      const sent = cdnTraffic(a!).bytes + cdnTraffic(b!).bytes;
      t.diagnostic(
        `upstream CDNs sent ${cdnTraffic(a!).bytes} + ${cdnTraffic(b!).bytes} = ${(sent / data.length).toFixed(3)}x the file; engine wrote ${fetched}`,
      );
      assert.ok(
        sent >= data.length && sent <= data.length + 2 * CHUNK,
        `sent ${sent} for ${data.length} (${(sent / data.length).toFixed(3)}x)`,
      );
      assert.ok(fetchedFrom(srv, a!.url) > 0 && fetchedFrom(srv, b!.url) > 0, srv.metrics.render());
      assert.ok(errorsOf(srv, a!.url) >= 1, srv.metrics.render());
      assert.ok(
        events(logs, "upstream-set-aside").some((l) => l.endpoint === a!.url),
        logs.join("\n"),
      );
      assert.ok(existsSync(`${cacheDir}/models--org--m/blobs/${sha256(data)}`), "cached");
      assert.deepEqual(blobProblems(`${cacheDir}/models--org--m`), []);
    });
  });
});

test("upstream 1 lagging (no such commit): metadata and bytes at that commit come from upstream 2", async () => {
  const old = randomBytesSeeded(303, 100_000);
  const data = randomBytesSeeded(304, 2 * 1024 * KiB);
  const lagging = makeRepo("org/m", [fileFromBuffer("w.bin", old, { lfs: true })]);
  const current = makeRepo("org/m", [fileFromBuffer("w.bin", old, { lfs: true })]);
  const commit = pushCommit(current, [fileFromBuffer("w.bin", data, { lfs: true })]);
  await withHubs([[lagging], [current]], async ([a, b]) => {
    await withServer([a!.url, b!.url], {}, async (srv) => {
      const info = await get(`${srv.url}/api/models/org/m/revision/${commit}`);
      assert.equal(info.status, 200, info.body.toString());
      assert.equal((JSON.parse(info.body.toString()) as { sha: string }).sha, commit);
      const r = await get(`${srv.url}/org/m/resolve/${commit}/w.bin`);
      assert.equal(r.status, 200, r.body.subarray(0, 300).toString());
      assert.equal(r.headers.get("x-repo-commit"), commit);
      assert.equal(sha256(r.body), sha256(data));
      const at = (e: FakeHub["log"][number]) => e.server === "hub" && e.url.includes(`/resolve/${commit}/`);
      // Upstream 1 said it has no such commit, for the HEAD and for any chunk it was asked.
      assert.ok(
        a!.log.some((e) => at(e) && e.method === "HEAD" && e.status === 404),
        "upstream 1 asked",
      );
      assert.ok(a!.log.filter(at).every((e) => e.status === 404));
      assert.equal(cdnTraffic(a!).bytes, 0);
      assert.equal(fetchedFrom(srv, b!.url), data.length);
    });
  });
});

test("a large file is spread over three healthy upstreams: every CDN served ranges, the file fetched once; the token went to each hub, never to a CDN", async (t) => {
  const data = randomBytesSeeded(305, 6 * 1024 * KiB);
  const files = () => [fileFromBuffer("w.bin", data, { lfs: true })];
  const sets = [0, 1, 2].map(() => [makeRepo("org/m", files())]);
  await withHubs(sets, async (hubs) => {
    for (const h of hubs)
      h.faults.push({ server: "cdn", times: 1000, fault: { type: "throttle", bytesPerSec: 2_000_000 } });
    await withServer(
      hubs.map((h) => h.url),
      { token: TEST_TOKEN },
      async (srv) => {
        const r = await get(`${srv.url}/org/m/resolve/main/w.bin`);
        assert.equal(r.status, 200);
        assert.equal(sha256(r.body), sha256(data));
        const traffic = hubs.map(cdnTraffic);
        t.diagnostic(
          `bytes per upstream CDN: ${traffic.map((x) => x.bytes).join(" + ")}; ranged GETs: ${traffic.map((x) => x.ranged).join(" + ")}`,
        );
        for (const [i, x] of traffic.entries()) {
          assert.ok(x.ranged >= 1 && x.bytes > 0, `upstream ${i + 1}: ${JSON.stringify(x)}`);
          assert.equal(fetchedFrom(srv, hubs[i]!.url), x.bytes, `upstream ${i + 1} in /metrics`);
        }
        assert.equal(
          traffic.reduce((n, x) => n + x.bytes, 0),
          data.length,
          "each byte fetched once",
        );
        for (const h of hubs) {
          const resolves = h.log.filter(
            (e) => e.server === "hub" && e.method === "GET" && e.url.includes("/resolve/"),
          );
          assert.ok(
            resolves.length >= 1 && resolves.every((e) => e.authorization === "token"),
            "the server's token on each hub's resolve",
          );
          assert.ok(
            h.log.filter((e) => e.server === "cdn").every((e) => e.authorization === "none"),
            "no token to a CDN",
          );
        }
      },
    );
  });
});

test("upstream 1 redirects to another hub (hf-mirror's 308 for what it has not cached): served from upstream 2, the redirect not followed", async () => {
  const data = randomBytesSeeded(307, 1024 * KiB);
  const files = () => [fileFromBuffer("w.bin", data, { lfs: true })];
  await withHubs([[makeRepo("org/m", files())], [makeRepo("org/m", files())]], async ([a, b]) => {
    // An origin nobody listens on: following the redirect would fail the request, not pass it.
    a!.faults.push({
      server: "hub",
      pathIncludes: "/resolve/",
      times: 1000,
      fault: { type: "redirect", status: 308, location: "http://127.0.0.1:9/org/m/resolve/main/w.bin" },
    });
    await withServer([a!.url, b!.url], {}, async (srv) => {
      const r = await get(`${srv.url}/org/m/resolve/main/w.bin`);
      assert.equal(r.status, 200, r.body.subarray(0, 300).toString());
      assert.equal(sha256(r.body), sha256(data));
      assert.ok(
        a!.log.some((e) => e.server === "hub" && e.status === 308),
        "upstream 1 asked",
      );
      assert.equal(cdnTraffic(a!).bytes, 0);
      assert.equal(fetchedFrom(srv, b!.url), data.length);
    });
  });
});

test("every upstream fails a blob not cached: a clear 502 (5xx on resolve) or 504 (all down) naming them, in bounded time", async () => {
  const data = randomBytesSeeded(306, 1024 * KiB);
  const files = () => [fileFromBuffer("w.bin", data, { lfs: true })];
  const commit = makeRepo("org/m", files()).commits[0]?.sha ?? "";
  await withHubs([[makeRepo("org/m", files())], [makeRepo("org/m", files())]], async ([a, b]) => {
    for (const h of [a!, b!])
      h.faults.push({
        server: "hub",
        method: "GET",
        pathIncludes: "/resolve/",
        times: 1000,
        fault: { type: "status", status: 503 },
      });
    await withServer([a!.url, b!.url], {}, async (srv, logs, cacheDir) => {
      let t0 = Date.now();
      const r = await get(`${srv.url}/org/m/resolve/main/w.bin`);
      assert.equal(r.status, 502, r.body.toString());
      assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
      const msg = (JSON.parse(r.body.toString()) as { error: string }).error;
      assert.match(msg, /w\.bin/);
      assert.ok(msg.includes(a!.url) && msg.includes(b!.url) && /503/.test(msg), msg);
      assert.equal(r.headers.get("x-error-message"), msg);
      assert.equal(events(logs, "upstream-fetch-failed").length, 1, logs.join("\n"));
      assert.ok(errorsOf(srv, a!.url) >= 1 && errorsOf(srv, b!.url) >= 1, srv.metrics.render());
      assert.equal(existsSync(`${cacheDir}/models--org--m/blobs/${sha256(data)}`), false);

      // Both gone: nothing cached for this file, nothing to ask (by commit: not the branch's remembered answer).
      await a!.close();
      await b!.close();
      t0 = Date.now();
      const d = await get(`${srv.url}/org/m/resolve/${commit}/w.bin`);
      assert.equal(d.status, 504, d.body.toString());
      assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
      assert.match((JSON.parse(d.body.toString()) as { error: string }).error, /w\.bin.*unreachable/);
    });
  });
});

test("an upstream that stalls is marked down after a few timeouts: later metadata requests and the blob's chunks pass it over", async () => {
  const data = randomBytesSeeded(308, 2 * 1024 * KiB);
  const files = () => [fileFromBuffer("w.bin", data, { lfs: true })];
  const slow = await startFakeHub({ repos: [makeRepo("org/m", files())], latencyMs: 3_000 });
  const commit = slow.repos[0]?.commits[0]?.sha ?? "";
  await withHubs([[makeRepo("org/m", files())]], async ([b]) => {
    try {
      const engine = { connections: 4, maxFiles: 4, chunkSize: CHUNK, retries: 1, timeoutMs: 400 };
      await withServer([slow.url, b!.url], { engine }, async (srv) => {
        // Distinct API answers (none cached): each is asked of the slow one first until it is down.
        for (const path of [
          "",
          "/revision/main",
          "/tree/main",
          `/revision/${commit}`,
          "/tree/main?recursive=true",
        ]) {
          const r = await get(`${srv.url}/api/models/org/m${path}`);
          assert.equal(r.status, 200, `${path}: ${r.body.toString()}`);
        }
        const asked = () => slow.log.filter((e) => e.server === "hub").length;
        assert.equal(asked(), DOWN_AFTER, "the slow upstream was asked until it was marked down");
        assert.ok(errorsOf(srv, slow.url) >= DOWN_AFTER, srv.metrics.render());
        const r = await get(`${srv.url}/org/m/resolve/main/w.bin`);
        assert.equal(r.status, 200);
        assert.equal(sha256(r.body), sha256(data));
        assert.equal(asked(), DOWN_AFTER, "nor for the file's metadata or bytes while down");
        assert.equal(fetchedFrom(srv, b!.url), data.length);
      });
    } finally {
      await slow.close();
    }
  });
});

test("upstream 1 sends corrupt bytes: no client gets a complete wrong file, the blob is finished from upstream 2, upstream 1 named and left out of the next blob", async () => {
  const data = randomBytesSeeded(309, 3 * 1024 * KiB);
  const next = randomBytesSeeded(310, 1024 * KiB);
  const files = () => [
    fileFromBuffer("w.bin", data, { lfs: true }),
    fileFromBuffer("x.bin", next, { lfs: true }),
  ];
  await withHubs([[makeRepo("org/m", files())], [makeRepo("org/m", files())]], async ([a, b]) => {
    a!.faults.push({ server: "cdn", times: 1000, fault: { type: "corrupt" } });
    await withServer([a!.url, b!.url], {}, async (srv, logs, cacheDir) => {
      const url = `${srv.url}/org/m/resolve/main/w.bin`;
      const first = await get(url).catch((err: unknown) => ({ status: -1, body: Buffer.from(String(err)) }));
      if (first.status === 200 && first.body.length === data.length) {
        assert.equal(sha256(first.body), sha256(data), "a complete body is the right one");
      }
      assert.ok(cdnTraffic(a!).bytes > 0, "upstream 1 sent some of it");
      const again = await get(url);
      assert.equal(again.status, 200);
      assert.equal(sha256(again.body), sha256(data));
      assert.equal(sha256(readFileSync(`${cacheDir}/models--org--m/blobs/${sha256(data)}`)), sha256(data));
      assert.deepEqual(blobProblems(`${cacheDir}/models--org--m`), []);
      const dropped = events(logs, "upstream-set-aside").filter(
        (l) => l.endpoint === a!.url && /hash/.test(l.reason ?? ""),
      );
      assert.equal(dropped.length, 1, logs.join("\n"));
      assert.ok(
        !events(logs, "upstream-set-aside").some((l) => l.endpoint === b!.url && /hash/.test(l.reason ?? "")),
      );
      // The next blob is not asked of it.
      const before = cdnTraffic(a!).bytes;
      const x = await get(`${srv.url}/org/m/resolve/main/x.bin`);
      assert.equal(x.status, 200);
      assert.equal(sha256(x.body), sha256(next));
      assert.equal(cdnTraffic(a!).bytes, before);
    });
  });
});
