import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { join } from "node:path";
import { test } from "node:test";
import type { Placement } from "../src/cache/commit.js";
import { buildServeConfig } from "../src/config.js";
import { createDispatcher } from "../src/hub/http.js";
import { AccessMemory, publicRepoFromInfo } from "../src/serve/access.js";
import { BlobStore, type BlobStoreOptions, Fetch } from "../src/serve/blobs.js";
import { Metrics } from "../src/serve/metrics.js";
import { type ServeHandle, type ServeOptions, startServer } from "../src/serve/server.js";
import { type FakeHub, fileFromBuffer, makeRepo, randomBytesSeeded, TEST_TOKEN } from "./fakehub/index.js";
import { blobProblems, cleanEnv, runCli, tempDir, waitFor, withHub } from "./helpers.js";
import { getHashed, metricValue, startServeProcess, withServeServer } from "./serve-helpers.js";

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

test("serve smoke: API, resolve HEAD/GET, Range, bad paths", async () => {
  const small = Buffer.from('{"a":1}\n');
  const big = randomBytesSeeded(7, 3_000_000);
  const repo = makeRepo("org/model", [
    fileFromBuffer("config.json", small),
    fileFromBuffer("model.safetensors", big, { lfs: true }),
  ]);
  await withHub([repo], {}, async (hub) => {
    const dispatcher = createDispatcher({ timeoutMs: 10_000 });
    const logs: string[] = [];
    const srv = await startServer({
      upstreams: [hub.url],
      cacheDir: tempDir(),
      host: "127.0.0.1",
      port: 0,
      offline: false,
      revalidateMs: 60_000,
      engine: { connections: 4, maxFiles: 4, chunkSize: 1 << 20, retries: 2, timeoutMs: 10_000 },
      dispatcher,
      log: (l) => logs.push(l),
    });
    try {
      const commit = repo.commits[0]?.sha ?? "";
      const info = await fetch(`${srv.url}/api/models/org/model/revision/main`);
      assert.equal(info.status, 200, await info.clone().text());
      const infoJson = (await info.json()) as { sha: string };
      assert.equal(infoJson.sha, commit);

      const tree = await fetch(`${srv.url}/api/models/org/model/tree/${commit}?recursive=true`);
      assert.equal(tree.status, 200);
      const entries = (await tree.json()) as { path: string }[];
      assert.deepEqual(entries.map((e) => e.path).sort(), ["config.json", "model.safetensors"]);

      for (const [name, buf, lfs] of [
        ["config.json", small, false],
        ["model.safetensors", big, true],
      ] as const) {
        const url = `${srv.url}/org/model/resolve/main/${name}`;
        const head = await fetch(url, { method: "HEAD", redirect: "manual" });
        assert.equal(head.status, 200, name);
        assert.equal(head.headers.get("x-repo-commit"), commit);
        assert.ok(head.headers.get("etag"), `${name} etag`);
        assert.equal(head.headers.get("content-length"), String(buf.length));
        if (lfs) {
          assert.equal(head.headers.get("x-linked-etag")?.replaceAll('"', ""), sha256(buf));
          assert.equal(head.headers.get("x-linked-size"), String(buf.length));
        }
        const get = await fetch(url, { redirect: "manual" });
        assert.equal(get.status, 200, name);
        assert.equal(sha256(Buffer.from(await get.arrayBuffer())), sha256(buf), name);
      }

      const r = await fetch(`${srv.url}/org/model/resolve/main/model.safetensors`, {
        headers: { Range: "bytes=100-199" },
      });
      assert.equal(r.status, 206);
      assert.deepEqual(Buffer.from(await r.arrayBuffer()), big.subarray(100, 200));

      for (const bad of ["/org/model/resolve/main/..%2F..%2Fetc%2Fpasswd", "/org/model/resolve/main/a%2Fb"]) {
        const b = await fetch(`${srv.url}${bad}`);
        assert.equal(b.status, 400, bad);
        await b.arrayBuffer();
      }
      const dotdot = await new Promise<number>((res, rej) => {
        import("node:http").then(({ request }) => {
          // Options, not a URL string: a URL would resolve `..` away before sending.
          const u = new URL(srv.url);
          const req = request(
            { host: u.hostname, port: u.port, path: "/org/model/resolve/main/../../etc/passwd" },
            (resp) => {
              resp.resume();
              res(resp.statusCode ?? 0);
            },
          );
          req.on("error", rej);
          req.end();
        }, rej);
      });
      assert.equal(dotdot, 400);
      const cdnBytes = hub.log.filter((e) => e.server === "cdn").reduce((n, e) => n + e.bytesSent, 0);
      assert.ok(cdnBytes <= big.length * 1.1, `upstream CDN bytes ${cdnBytes}`);
      assert.ok(!logs.join("\n").includes("hf_testtoken"), "no token in logs");
    } finally {
      await srv.close(1000);
      await dispatcher.close();
    }
  });
});

/** The library server in front of `hub`, with test-sized engine settings; `fn` runs, then it closes. */
function withServer<T>(
  hub: FakeHub,
  extra: Partial<ServeOptions>,
  fn: (srv: ServeHandle, logs: string[], cacheDir: string) => Promise<T>,
): Promise<T> {
  return withServeServer([hub.url], extra, fn);
}

async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Buffer; headers: Headers }> {
  const r = await fetch(url, { headers, redirect: "manual" });
  return { status: r.status, body: Buffer.from(await r.arrayBuffer()), headers: r.headers };
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

test("hfget serve (CLI): URL alone on stdout, JSON request lines on stderr without tokens, SIGTERM stops it", async () => {
  const data = randomBytesSeeded(3, 200_000);
  const repo = makeRepo("org/gated", [fileFromBuffer("w.bin", data, { lfs: true })], { gated: true });
  await withHub([repo], {}, async (hub) => {
    const srv = await startServeProcess(
      ["--upstream", hub.url, "--cache-dir", tempDir(), "--token", TEST_TOKEN, "--connections", "2"],
      cleanEnv(),
    );
    let stopped = false;
    try {
      assert.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+$/, "listens on 127.0.0.1 by default");
      assert.equal((await get(`${srv.url}/healthz`)).status, 200);
      const r = await get(`${srv.url}/org/gated/resolve/main/w.bin`, bearer(TEST_TOKEN));
      assert.equal(r.status, 200);
      assert.equal(sha256(r.body), sha256(data));
      assert.equal((await get(`${srv.url}/org/gated/resolve/main/w.bin?x=${TEST_TOKEN}`)).status, 401);
      const s = await srv.stop();
      stopped = true;
      assert.equal(s.code, 0, srv.stderr());
      assert.ok(s.ms < 5000, `stopped in ${s.ms} ms`);
      assert.equal(srv.stdout(), `${srv.url}\n`, "stdout holds the URL line only");
      const lines = srv.stderr().trim().split("\n");
      const entries = lines.map((l) => JSON.parse(l) as { path: string; status: number; bytes: number });
      assert.ok(
        entries.some(
          (e) => e.path === "/org/gated/resolve/main/w.bin" && e.status === 200 && e.bytes === data.length,
        ),
        srv.stderr(),
      );
      assert.ok(!srv.stderr().includes(TEST_TOKEN), "no token in the request log");
    } finally {
      if (!stopped) await srv.stop();
    }
  });
  const help = await runCli(["--help"]);
  assert.match(help.stdout, /^\s+serve \[options\]/m, "listed in hfget --help");
  const serveHelp = await runCli(["help", "serve"]);
  assert.equal(serveHelp.code, 0);
  for (const flag of [
    "--upstream",
    "--cache-dir",
    "--host",
    "--port",
    "--token",
    "--offline",
    "--revalidate",
    "--access-tokens",
  ]) {
    assert.ok(serveHelp.stdout.includes(flag), `hfget help serve names ${flag}`);
  }
});

test("upstream unreachable: cached public files served to all, gated/private only to tokens it confirmed", async () => {
  const pub = Buffer.from("public weights\n".repeat(1000));
  const gated = randomBytesSeeded(11, 300_000);
  const priv = Buffer.from('{"private": true}\n');
  const repos = [
    makeRepo("org/pub", [fileFromBuffer("p.bin", pub, { lfs: true })]),
    makeRepo("org/gated", [fileFromBuffer("g.bin", gated, { lfs: true })], { gated: true }),
    makeRepo("org/priv", [fileFromBuffer("config.json", priv)], { private: true }),
  ];
  const commit = (i: number) => repos[i]?.commits[0]?.sha ?? "";
  await withHub(repos, {}, async (hub) => {
    await withServer(hub, { token: TEST_TOKEN }, async (srv) => {
      const tok = bearer(TEST_TOKEN);
      // Upstream up: each client checked there with its own token.
      assert.equal((await get(`${srv.url}/org/pub/resolve/main/p.bin`)).status, 200);
      assert.equal((await get(`${srv.url}/org/gated/resolve/main/g.bin`)).status, 401);
      assert.equal((await get(`${srv.url}/org/gated/resolve/main/g.bin`, bearer("hf_wrong"))).status, 403);
      assert.equal(sha256((await get(`${srv.url}/org/gated/resolve/main/g.bin`, tok)).body), sha256(gated));
      assert.deepEqual((await get(`${srv.url}/org/priv/resolve/main/config.json`, tok)).body, priv);
      assert.equal((await get(`${srv.url}/org/priv/resolve/main/config.json`)).status, 401);

      assert.equal((await get(`${srv.url}/api/models/org/pub`)).status, 200);
      assert.equal((await get(`${srv.url}/api/models/org/gated`)).status, 200);
      await hub.close();
      // API queries never asked before: from the disk for the repo upstream said is public, not for the gated one.
      const tree = await get(`${srv.url}/api/models/org/pub/tree/main?recursive=true`);
      assert.equal(tree.status, 200, tree.body.toString());
      assert.deepEqual(
        (JSON.parse(tree.body.toString()) as { path: string }[]).map((e) => e.path),
        ["p.bin"],
      );
      assert.equal((await get(`${srv.url}/api/models/org/gated/tree/main?recursive=true`)).status, 502);
      // Public: served to anyone, by branch and by commit.
      for (const rev of ["main", commit(0)]) {
        const r = await get(`${srv.url}/org/pub/resolve/${rev}/p.bin`);
        assert.equal(r.status, 200, rev);
        assert.deepEqual(r.body, pub, rev);
      }
      // Gated and private: nobody the upstream did not confirm, however the revision is named.
      let refused = 0;
      for (const [path, rev] of [
        ["org/gated/resolve/main/g.bin", "main"],
        [`org/gated/resolve/${commit(1)}/g.bin`, "commit"],
        ["org/priv/resolve/main/config.json", "main"],
        [`org/priv/resolve/${commit(2)}/config.json`, "commit"],
      ] as const) {
        for (const who of [{}, bearer("hf_wrong"), bearer("hf_never_seen")] as Record<string, string>[]) {
          const r = await get(`${srv.url}/${path}`, who);
          const what = `${path} (${rev}) as ${JSON.stringify(who)}: ${r.status} ${r.body}`;
          // A refusal the upstream gave this client minutes ago stands; else "cannot confirm".
          // No token: 401; a token: 403.
          assert.equal(r.status, who.authorization ? 403 : 401, what);
          const unconfirmed = /cannot confirm/.test(r.body.toString());
          if (unconfirmed) assert.match(r.headers.get("x-error-message") ?? "", /cannot confirm/, what);
          if (who.authorization === "Bearer hf_never_seen") assert.ok(unconfirmed, what);
          if (unconfirmed) refused++;
        }
      }
      assert.ok(refused >= 4, `never-seen clients told the upstream cannot confirm: ${refused}`);
      // The token the upstream accepted minutes ago: still served, bytes checked.
      const g = await get(`${srv.url}/org/gated/resolve/main/g.bin`, tok);
      assert.equal(g.status, 200);
      assert.equal(sha256(g.body), sha256(gated));
      assert.deepEqual((await get(`${srv.url}/org/priv/resolve/main/config.json`, tok)).body, priv);
    });
  });
});

test("AccessMemory: token grants last ttl and are per file; anonymous ones and public repo info are for everyone", () => {
  let now = 1_000_000;
  const m = new AccessMemory(300_000, () => now);
  const repo = { type: "model", id: "org/gated" } as const;
  m.granted("Bearer a", repo, "README.md");
  assert.equal(m.mayRead("Bearer a", repo, "README.md"), true);
  assert.equal(m.mayRead("Bearer a", repo, "model.bin"), false, "README access says nothing of weights");
  assert.equal(m.mayRead("Bearer b", repo, "README.md"), false);
  assert.equal(m.mayRead(undefined, repo, "README.md"), false);
  now += 300_001;
  assert.equal(m.mayRead("Bearer a", repo, "README.md"), false, "expired");
  m.granted(undefined, repo, "README.md");
  assert.equal(m.mayRead("Bearer zzz", repo, "README.md"), true);
  assert.equal(m.mayRead(undefined, repo, "model.bin"), false);
  m.repoIsPublic(repo);
  assert.equal(m.mayRead(undefined, repo, "model.bin"), true);
});

/** `name{labels} value` lines of a Prometheus text answer. */

test("resolve: If-None-Match -> 304, Range -> 206, bad range -> 416, /healthz, /metrics counts cache vs upstream", async () => {
  const data = randomBytesSeeded(31, 2_500_000);
  const repo = makeRepo("org/m", [fileFromBuffer("w.bin", data, { lfs: true })]);
  await withHub([repo], {}, async (hub) => {
    await withServer(hub, {}, async (srv) => {
      const url = `${srv.url}/org/m/resolve/main/w.bin`;
      const h = await get(`${srv.url}/healthz`);
      assert.equal(h.status, 200);
      assert.equal(h.body.toString(), "ok\n");
      const cold = await get(url);
      assert.equal(sha256(cold.body), sha256(data));
      const etag = cold.headers.get("etag") ?? "";
      assert.equal(etag, `"${sha256(data)}"`);
      const nm = await get(url, { "if-none-match": etag });
      assert.equal(nm.status, 304);
      assert.equal(nm.body.length, 0);
      assert.equal((await get(url, { "if-none-match": '"0000"' })).status, 200, "another etag: the body");
      for (const [range, start, end] of [
        ["bytes=0-0", 0, 0],
        ["bytes=1000-", 1000, data.length - 1],
        ["bytes=-500", data.length - 500, data.length - 1],
        ["bytes=2000000-99999999", 2_000_000, data.length - 1],
      ] as const) {
        const r = await get(url, { range });
        assert.equal(r.status, 206, range);
        assert.equal(r.headers.get("content-range"), `bytes ${start}-${end}/${data.length}`, range);
        assert.deepEqual(r.body, data.subarray(start, end + 1), range);
      }
      for (const range of [`bytes=${data.length}-`, "bytes=-0", "bytes=500-100"]) {
        const r = await get(url, { range });
        assert.equal(r.status, 416, range);
        assert.equal(r.headers.get("content-range"), `bytes */${data.length}`, range);
      }
      const m = await get(`${srv.url}/metrics`);
      assert.match(m.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      const text = m.body.toString();
      assert.match(text, /^# TYPE hfget_serve_requests_total counter$/m);
      assert.equal(metricValue(text, "hfget_serve_bytes_fetched_upstream_total"), data.length, text);
      assert.equal(metricValue(text, "hfget_serve_bytes_served_while_fetching_total"), data.length, text);
      // After the cold GET: one more whole body (the other etag) and the four 206 ranges, from cache.
      const ranged = 1 + (data.length - 1000) + 500 + (data.length - 2_000_000);
      assert.equal(
        metricValue(text, "hfget_serve_bytes_served_from_cache_total"),
        data.length + ranged,
        text,
      );
      assert.equal(metricValue(text, "hfget_serve_blob_hit_ratio"), 5 / 6, text);
      assert.match(text, /^hfget_serve_requests_total\{status="206"\} 4$/m);
      assert.match(text, /^hfget_serve_requests_total\{status="416"\} 3$/m);
      assert.equal(metricValue(text, "hfget_serve_fetches_in_flight"), 0);
    });
  });
});

test("--offline: serves what is cached, never asks upstream, 404 for the rest", async () => {
  const a = Buffer.from("cached\n".repeat(100));
  const b = randomBytesSeeded(41, 300_000);
  const repo = makeRepo("org/m", [fileFromBuffer("a.txt", a), fileFromBuffer("b.bin", b, { lfs: true })]);
  const commit = repo.commits[0]?.sha ?? "";
  await withHub([repo], {}, async (hub) => {
    const cacheDir = tempDir();
    await withServer(hub, { cacheDir }, async (srv) => {
      assert.deepEqual((await get(`${srv.url}/org/m/resolve/main/a.txt`)).body, a);
    });
    hub.clearLog();
    await withServer(hub, { cacheDir, offline: true }, async (srv) => {
      for (const rev of ["main", commit]) {
        const r = await get(`${srv.url}/org/m/resolve/${rev}/a.txt`);
        assert.equal(r.status, 200, rev);
        assert.deepEqual(r.body, a);
        assert.equal(r.headers.get("x-repo-commit"), commit);
      }
      const miss = await get(`${srv.url}/org/m/resolve/main/b.bin`);
      assert.equal(miss.status, 404);
      assert.equal(miss.headers.get("x-error-code"), "EntryNotFound");
      // The API from the cache on disk (a fresh process remembers nothing): what is cached, nothing else.
      const info = await get(`${srv.url}/api/models/org/m/revision/main?blobs=true`);
      assert.equal(info.status, 200, info.body.toString());
      const parsed = JSON.parse(info.body.toString()) as {
        sha: string;
        siblings: { rfilename: string; size: number }[];
      };
      assert.equal(parsed.sha, commit);
      assert.deepEqual(
        parsed.siblings.map((s) => [s.rfilename, s.size]),
        [["a.txt", a.length]],
      );
      const tree = await get(`${srv.url}/api/models/org/m/tree/${commit}?recursive=true`);
      assert.deepEqual(
        (JSON.parse(tree.body.toString()) as { path: string }[]).map((e) => e.path),
        ["a.txt"],
      );
      for (const [path, code] of [
        ["/api/models/org/other/revision/main", "RepoNotFound"],
        ["/api/models/org/m/revision/v9", "RevisionNotFound"],
        [`/api/models/org/m/tree/${commit}/nope`, "EntryNotFound"],
      ] as const) {
        const r = await get(`${srv.url}${path}`);
        assert.equal(r.status, 404, path);
        assert.equal(r.headers.get("x-error-code"), code, path);
      }
    });
    assert.deepEqual(hub.log, [], "offline: the upstream saw no request");
  });
});

test("corrupt bytes upstream: no client ends with a complete wrong file, nothing cached", async () => {
  const data = randomBytesSeeded(51, 3_000_000);
  const repo = makeRepo("org/m", [fileFromBuffer("w.bin", data, { lfs: true })]);
  await withHub([repo], {}, async (hub) => {
    hub.faults.push({ server: "cdn", times: 1000, fault: { type: "corrupt" } });
    await withServer(hub, {}, async (srv, _logs, cacheDir) => {
      const url = `${srv.url}/org/m/resolve/main/w.bin`;
      const results = await Promise.all(
        [0, 1, 2, 3].map(async () => {
          try {
            const r = await fetch(url);
            return { status: r.status, bytes: Buffer.from(await r.arrayBuffer()) };
          } catch (err) {
            return { status: -1, error: String(err) };
          }
        }),
      );
      for (const r of results) {
        if ("bytes" in r && r.bytes !== undefined) {
          // A 200 that completed would be a whole wrong (or right) file: it must be neither.
          assert.ok(r.status !== 200 || r.bytes.length < data.length, `complete body: ${r.status}`);
        }
      }
      assert.ok(
        results.some((r) => r.status === -1),
        `at least one client saw its body cut: ${JSON.stringify(results.map((r) => r.status))}`,
      );
      assert.equal(existsSync(`${cacheDir}/models--org--m/blobs/${sha256(data)}`), false, "no blob cached");
      assert.deepEqual(blobProblems(`${cacheDir}/models--org--m`), []);
      // Once upstream is healthy, the same server serves the right file.
      hub.faults.length = 0;
      const ok = await get(url);
      assert.equal(ok.status, 200);
      assert.equal(sha256(ok.body), sha256(data));
    });
  });
});

test("gated repo through the server: no token 401, token without access 403, the right token served", async () => {
  const data = randomBytesSeeded(61, 500_000);
  const repo = makeRepo("org/gated", [fileFromBuffer("w.bin", data, { lfs: true })], { gated: true });
  await withHub([repo], {}, async (hub) => {
    await withServer(hub, { token: TEST_TOKEN }, async (srv, logs) => {
      const url = `${srv.url}/org/gated/resolve/main/w.bin`;
      const none = await get(url);
      assert.equal(none.status, 401);
      assert.equal(none.headers.get("x-error-code"), "GatedRepo");
      const wrong = await get(url, bearer("hf_no_access"));
      assert.equal(wrong.status, 403);
      assert.equal(wrong.headers.get("x-error-code"), "GatedRepo");
      // Once cached, still refused to the others: the server's own token never lends them access.
      const right = await get(url, bearer(TEST_TOKEN));
      assert.equal(right.status, 200);
      assert.equal(sha256(right.body), sha256(data));
      assert.equal((await get(url)).status, 401);
      assert.equal((await get(url, bearer("hf_other"))).status, 403);
      assert.ok(!logs.join("\n").includes(TEST_TOKEN), "no token in logs");
    });
  });
});

test("four clients at once on a cold 64 MiB blob: one upstream fetch (~1.0x bytes), all get the right bytes", async () => {
  const size = 64 * 1024 * 1024;
  const data = randomBytesSeeded(71, size);
  const want = sha256(data);
  const repo = makeRepo("org/big", [fileFromBuffer("big.bin", data, { lfs: true })]);
  await withHub([repo], {}, async (hub) => {
    await withServer(
      hub,
      { engine: { connections: 4, maxFiles: 1, chunkSize: 4 << 20, retries: 2, timeoutMs: 20_000 } },
      async (srv) => {
        const url = `${srv.url}/org/big/resolve/main/big.bin`;
        const got = await Promise.all([0, 1, 2, 3].map(() => getHashed(url)));
        for (const g of got) assert.deepEqual(g, { n: size, hash: want });
        const cdn = hub.log.filter((e) => e.server === "cdn").reduce((n, e) => n + e.bytesSent, 0);
        // One fetch: the file's first range was asked once. The engine re-asks the last few MiB on
        // idle connections (tail hedging), so "about 1.0x" is a bound of 1.1x, not exactly 1.
        const firsts = hub.log.filter((e) => e.server === "cdn" && /^bytes=0-/.test(e.range ?? ""));
        assert.equal(firsts.length, 1, "the blob's first chunk fetched once");
        const ratio = cdn / size;
        console.log(`four clients, 64 MiB: upstream sent ${ratio.toFixed(3)}x the file`);
        assert.ok(ratio >= 1 && ratio <= 1.1, `upstream sent ${ratio.toFixed(3)}x the file`);
        assert.equal(metricValue(srv.metrics.render(), "hfget_serve_bytes_fetched_upstream_total"), size);
      },
    );
  });
});

test("request paths: .., encoded slashes and dots, NUL, absolute paths, backslashes -> 400", async () => {
  const repo = makeRepo("org/m", [fileFromBuffer("a.txt", Buffer.from("a"))]);
  await withHub([repo], {}, async (hub) => {
    await withServer(hub, {}, async (srv) => {
      const { request } = await import("node:http");
      const u = new URL(srv.url);
      // Raw paths (node:http sends them as given; fetch would normalize `..` away first).
      const status = (path: string) =>
        new Promise<number>((resolve, reject) => {
          const req = request({ host: u.hostname, port: u.port, path }, (resp) => {
            resp.resume();
            resolve(resp.statusCode ?? 0);
          });
          req.on("error", reject);
          req.end();
        });
      for (const path of [
        "/org/m/resolve/main/../../../etc/passwd",
        "/org/m/resolve/main/%2e%2e/%2e%2e/etc/passwd",
        "/org/m/resolve/main/sub%2F..%2F..%2Fa.txt",
        "/org/m/resolve/main/a%5c..%5ca.txt",
        "/org/m/resolve/main/a.txt%00.png",
        "/org/m/resolve/main//etc/passwd",
        "//etc/passwd",
        "/org%2Fm/resolve/main/a.txt",
        "/../org/m/resolve/main/a.txt",
        "/api/models/org/m/tree/main/%2e%2e",
        "/api/models/org/m/tree/main/a%00",
        "/org/m/resolve/ma%00in/a.txt",
      ]) {
        assert.equal(await status(path), 400, path);
      }
      assert.equal(await status("/org/m/resolve/main/a.txt"), 200, "the plain path works");
    });
  });
});

test("several upstreams: a dead first one is passed over for metadata and bytes; /metrics counts its errors", async () => {
  const data = randomBytesSeeded(81, 1_500_000);
  const repo = makeRepo("org/m", [fileFromBuffer("w.bin", data, { lfs: true })]);
  await withHub([repo], {}, async (hub) => {
    // A port that was just closed: connection refused, on 127.0.0.1 only.
    const { createServer } = await import("node:net");
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", () => r()));
    const deadPort = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const dead = `http://127.0.0.1:${deadPort}`;
    await withServer(hub, { upstreams: [dead, hub.url] }, async (srv) => {
      const info = await get(`${srv.url}/api/models/org/m/revision/main`);
      assert.equal(info.status, 200);
      const r = await get(`${srv.url}/org/m/resolve/main/w.bin`);
      assert.equal(r.status, 200);
      assert.equal(sha256(r.body), sha256(data));
      const text = srv.metrics.render();
      assert.ok(
        (metricValue(text, `hfget_serve_upstream_errors_total{endpoint=${JSON.stringify(dead)}}`) ?? 0) >= 2,
        text,
      );
    });
  });
});

test("--access-tokens: only listed clients are served, with what the server's token may read; none logged", async () => {
  const pub = Buffer.from("public\n");
  const gated = randomBytesSeeded(91, 200_000);
  const repos = [
    makeRepo("org/pub", [fileFromBuffer("a.txt", pub)]),
    makeRepo("org/gated", [fileFromBuffer("w.bin", gated, { lfs: true })], { gated: true }),
  ];
  await withHub(repos, {}, async (hub) => {
    const team = "team-token-7f3a";
    await withServer(hub, { token: TEST_TOKEN, accessTokens: new Set([team]) }, async (srv, logs) => {
      assert.equal((await get(`${srv.url}/org/pub/resolve/main/a.txt`)).status, 401);
      assert.equal((await get(`${srv.url}/org/pub/resolve/main/a.txt`, bearer("nope"))).status, 401);
      assert.equal((await get(`${srv.url}/api/models/org/pub`, bearer(TEST_TOKEN))).status, 401);
      assert.deepEqual((await get(`${srv.url}/org/pub/resolve/main/a.txt`, bearer(team))).body, pub);
      const g = await get(`${srv.url}/org/gated/resolve/main/w.bin`, bearer(team));
      assert.equal(g.status, 200);
      assert.equal(sha256(g.body), sha256(gated));
      assert.equal((await get(`${srv.url}/healthz`)).status, 200, "health checks need no token");
      const all = logs.join("\n");
      assert.ok(!all.includes(team) && !all.includes(TEST_TOKEN), "no token in logs");
      assert.ok(
        hub.log.every((e) => e.authorization !== "other"),
        "a client's server-local token never goes upstream",
      );
    });
  });
});

test("buildServeConfig: safe defaults, upstream forms, --access-tokens file, usage errors", () => {
  const d = buildServeConfig({}, {});
  assert.equal(d.host, "127.0.0.1");
  assert.equal(d.port, 8080);
  assert.equal(d.revalidateMs, 60_000);
  assert.deepEqual(d.upstreams, ["https://huggingface.co"]);
  assert.equal(d.accessTokens, undefined);
  assert.equal(d.offline, false);
  const env = { HF_ENDPOINT: "http://127.0.0.1:9/p/", HF_TOKEN: "hf_env" };
  assert.deepEqual(buildServeConfig({}, env).upstreams, ["http://127.0.0.1:9/p"]);
  assert.equal(buildServeConfig({}, env).token, "hf_env");
  const c = buildServeConfig({ upstream: ["hf-mirror.com", "http://10.0.0.1:8080/"], revalidate: "5" }, env);
  assert.deepEqual(c.upstreams, ["https://hf-mirror.com", "http://10.0.0.1:8080"]);
  // The forms of --mirror: comma-separated, repeated ones dropped, HFGET_MIRRORS before HF_ENDPOINT.
  assert.deepEqual(buildServeConfig({ upstream: ["a.example,b.example", "a.example"] }, env).upstreams, [
    "https://a.example",
    "https://b.example",
  ]);
  assert.deepEqual(
    buildServeConfig({}, { ...env, HFGET_MIRRORS: "http://127.0.0.1:7,c.example" }).upstreams,
    ["http://127.0.0.1:7", "https://c.example"],
  );
  assert.equal(c.revalidateMs, 5000);
  const file = `${tempDir()}/tokens`;
  writeFileSync(file, "# team\n  tok-a \n\ntok-b\n");
  assert.deepEqual(
    [...(buildServeConfig({ accessTokens: file }, {}).accessTokens ?? [])],
    ["tok-a", "tok-b"],
  );
  writeFileSync(file, "# nobody\n");
  assert.throws(() => buildServeConfig({ accessTokens: file }, {}), /lists no token/);
  assert.throws(
    () => buildServeConfig({ accessTokens: `${file}.missing` }, {}),
    /cannot read --access-tokens/,
  );
  assert.throws(() => buildServeConfig({ port: "99999" }, {}), /--port/);
  assert.throws(() => buildServeConfig({ upstream: ["ftp://x"] }, {}), /--upstream/);
});

test("publicRepoFromInfo: only a 200 repo info naming the same repo, private false and gated false", () => {
  const body = (o: object) => Buffer.from(JSON.stringify(o));
  const pub = { id: "org/m", private: false, gated: false };
  assert.deepEqual(publicRepoFromInfo("/api/models/org/m", 200, body(pub)), { type: "model", id: "org/m" });
  assert.deepEqual(publicRepoFromInfo("/api/datasets/org/m/revision/main", 200, body(pub)), {
    type: "dataset",
    id: "org/m",
  });
  assert.deepEqual(publicRepoFromInfo("/api/models/gpt2/revision/main", 200, body({ ...pub, id: "gpt2" })), {
    type: "model",
    id: "gpt2",
  });
  assert.equal(publicRepoFromInfo("/api/models/org/m", 200, body({ ...pub, gated: "auto" })), undefined);
  assert.equal(publicRepoFromInfo("/api/models/org/m", 200, body({ ...pub, private: true })), undefined);
  assert.equal(
    publicRepoFromInfo("/api/models/org/m", 200, body({ id: "org/m" })),
    undefined,
    "unknown: not public",
  );
  assert.equal(publicRepoFromInfo("/api/models/org/other", 200, body(pub)), undefined);
  assert.equal(publicRepoFromInfo("/api/models/org/m/tree/main", 200, body(pub)), undefined);
  assert.equal(publicRepoFromInfo("/api/models/org/m", 401, body(pub)), undefined);
  assert.equal(publicRepoFromInfo("/api/models/org/m", 200, Buffer.from("{")), undefined);
});

test("hfget serve (CLI): SIGTERM mid-transfer exits 0 within a few seconds, keeps resume state, the next server resumes", async () => {
  const size = 8 * 1024 * 1024;
  const data = randomBytesSeeded(95, size);
  const repo = makeRepo("org/m", [fileFromBuffer("w.bin", data, { lfs: true })]);
  await withHub([repo], {}, async (hub) => {
    hub.faults.push({ server: "cdn", times: 1000, fault: { type: "throttle", bytesPerSec: 1024 * 1024 } });
    const cacheDir = tempDir();
    const args = ["--upstream", hub.url, "--cache-dir", cacheDir, "--connections", "2", "--chunk-size", "1M"];
    const srv = await startServeProcess(args, cleanEnv());
    const client = fetch(`${srv.url}/org/m/resolve/main/w.bin`).then(
      async (r) => ({
        status: r.status,
        bytes: (await r.arrayBuffer().catch(() => new ArrayBuffer(0))).byteLength,
      }),
      () => ({ status: -1, bytes: 0 }),
    );
    const stateFile = `${cacheDir}/models--org--m/blobs/${sha256(data)}.hfget-partial.json`;
    const until = Date.now() + 20_000;
    // Wait until at least one chunk is done upstream (bounded).
    while (
      Date.now() < until &&
      hub.log.filter((e) => e.server === "cdn" && e.bytesSent >= 1 << 20).length < 1
    ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const s = await srv.stop();
    assert.equal(s.code, 0, srv.stderr());
    assert.ok(s.ms < 4000, `stopped in ${s.ms} ms`);
    const c = await client;
    assert.ok(c.bytes < size, `the client saw a cut body (${c.bytes} of ${size})`);
    assert.ok(existsSync(stateFile), "resume state kept");
    const firstRun = hub.log.filter((e) => e.server === "cdn").reduce((n, e) => n + e.bytesSent, 0);
    hub.faults.length = 0;
    hub.clearLog();
    const srv2 = await startServeProcess(args, cleanEnv());
    try {
      const r = await get(`${srv2.url}/org/m/resolve/main/w.bin`);
      assert.equal(sha256(r.body), sha256(data));
      const second = hub.log.filter((e) => e.server === "cdn").reduce((n, e) => n + e.bytesSent, 0);
      assert.ok(second < size, `resumed: fetched ${second} of ${size} (first run sent ${firstRun})`);
    } finally {
      await srv2.stop();
    }
  });
});

test("two hfget serve processes on one cache, both cold, two clients each on one blob: right bytes, fetched upstream about once, cache sound", async () => {
  const size = 24 * 1024 * 1024;
  const data = randomBytesSeeded(81, size);
  const want = sha256(data);
  const repo = makeRepo("org/shared", [fileFromBuffer("w.bin", data, { lfs: true })]);
  // A paced CDN so both servers' fetches overlap in time.
  await withHub([repo], {}, async (hub) => {
    hub.faults.push({ server: "cdn", times: 100_000, fault: { type: "throttle", bytesPerSec: 8 << 20 } });
    const cacheDir = tempDir();
    const args = ["--upstream", hub.url, "--cache-dir", cacheDir, "--connections", "4", "--chunk-size", "2M"];
    const servers = await Promise.all([startServeProcess(args), startServeProcess(args)]);
    try {
      const got = await Promise.all(
        [0, 1, 0, 1].map((i) => getHashed(`${servers[i]?.url}/org/shared/resolve/main/w.bin`)),
      );
      for (const g of got) assert.deepEqual(g, { n: size, hash: want });
      const cdn = hub.log.filter((e) => e.server === "cdn").reduce((n, e) => n + e.bytesSent, 0);
      const firsts = hub.log.filter((e) => e.server === "cdn" && /^bytes=0-/.test(e.range ?? ""));
      assert.equal(firsts.length, 1, "one server fetched the blob; the other waited on its lock");
      const ratio = cdn / size;
      console.log(`two servers, four clients, 24 MiB: upstream sent ${ratio.toFixed(3)}x the file`);
      assert.ok(ratio >= 1 && ratio <= 1.15, `upstream sent ${ratio.toFixed(3)}x the file`);
      const repoDir = join(cacheDir, "models--org--shared");
      assert.deepEqual(blobProblems(repoDir), []);
      assert.deepEqual(
        readdirSync(join(repoDir, "blobs")),
        [want],
        "one verified blob, no partial or state file left",
      );
      // A server logs a request when its response has finished, which may be just after the
      // client has read the last byte: wait (bounded) for both lines of each server.
      const wBinLines = (s: (typeof servers)[number]) =>
        s
          .stderr()
          .split("\n")
          .filter((l) => l.includes("/w.bin")).length;
      await waitFor(() => servers.every((s) => wBinLines(s) >= 2), 5000, "both request lines of each server");
      for (const s of servers) {
        const lines = s
          .stderr()
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as { path: string; status: number; complete: boolean });
        const gets = lines.filter((l) => l.path.endsWith("/w.bin"));
        assert.ok(gets.length >= 2 && gets.every((l) => l.status === 200 && l.complete), s.stderr());
      }
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  });
});

test("a client that stops reading does not stall another client of the same blob, and is cut when idle", async () => {
  const size = 16 * 1024 * 1024;
  const data = randomBytesSeeded(91, size);
  const repo = makeRepo("org/slow", [fileFromBuffer("w.bin", data, { lfs: true })]);
  await withHub([repo], {}, async (hub) => {
    hub.faults.push({ server: "cdn", times: 100_000, fault: { type: "throttle", bytesPerSec: 16 << 20 } });
    await withServer(hub, { idleTimeoutMs: 1500 }, async (srv, logs) => {
      const { request } = await import("node:http");
      const u = new URL(srv.url);
      // The stalled client: takes its headers and a first chunk, then never reads again.
      let stalledReq: ReturnType<typeof request> | undefined;
      await new Promise<void>((resolve, reject) => {
        const req = request(
          { host: u.hostname, port: u.port, path: "/org/slow/resolve/main/w.bin" },
          (res) => {
            res.once("data", () => {
              res.pause();
              resolve();
            });
          },
        );
        stalledReq = req;
        req.on("error", reject);
        req.end();
      });
      const t0 = Date.now();
      const other = await get(`${srv.url}/org/slow/resolve/main/w.bin`);
      assert.equal(other.status, 200);
      assert.equal(sha256(other.body), sha256(data), "the reading client got the whole file");
      const otherMs = Date.now() - t0;
      // The server cuts the stalled one once its socket is idle (1.5 s here); its log line says so.
      // (A paused client does not read its socket, so it cannot see the cut itself.) Bounded wait.
      type Line = { status: number; complete: boolean; bytes: number };
      const cutLine = (): Line | undefined =>
        logs.map((l) => JSON.parse(l) as Line).find((l) => l.status === 200 && !l.complete);
      for (let i = 0; i < 100 && cutLine() === undefined; i++) await new Promise((r) => setTimeout(r, 200));
      stalledReq?.on("error", () => undefined);
      stalledReq?.destroy();
      const cut = cutLine();
      assert.ok(cut, `the stalled response was cut by the server: ${logs.join("\n")}`);
      assert.ok(cut.bytes < size, `cut short: ${cut.bytes}`);
      console.log(
        `stalled client: the other finished in ${otherMs} ms, the stalled one cut by ${Date.now() - t0} ms`,
      );
    });
  });
});

test("a blob stream whose response is cut while its read is in flight returns and closes the file", async () => {
  const blob = join(tempDir(), "blob");
  writeFileSync(blob, Buffer.alloc(600_000, 1));
  // stream() uses only the metrics of the store's options and the placement's partial path.
  const store = new BlobStore({ metrics: new Metrics() } as unknown as BlobStoreOptions);
  const f = new Fetch(600_000, { incomplete: blob } as unknown as Placement, blob);
  f.state = "done";
  // f.cut() on a hash failure lands while fh.read is in flight: the write is refused and 'close'
  // was already emitted, so nothing will ever wake a wait for 'drain' or 'close'.
  const res = Object.assign(new EventEmitter(), {
    destroyed: false,
    writes: 0,
    write(): boolean {
      res.writes++;
      res.destroyed = true;
      res.emit("close");
      return false;
    },
    end(): void {},
    destroy(): void {
      res.destroyed = true;
    },
  });
  const fds = readdirSync("/proc/self/fd").length;
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    store.stream(f, res as unknown as ServerResponse, 0, 599_999).then(() => "returned"),
    new Promise<string>((r) => {
      timer = setTimeout(r, 3000, "hung");
    }),
  ]);
  clearTimeout(timer);
  assert.equal(outcome, "returned");
  assert.equal(res.writes, 1);
  assert.equal(readdirSync("/proc/self/fd").length, fds, "the blob's file handle is closed");
});
