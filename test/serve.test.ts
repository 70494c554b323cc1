import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { createDispatcher } from "../src/hub/http.js";
import { AccessMemory } from "../src/serve/access.js";
import { type ServeHandle, type ServeOptions, startServer } from "../src/serve/server.js";
import { type FakeHub, fileFromBuffer, makeRepo, randomBytesSeeded, TEST_TOKEN } from "./fakehub/index.js";
import { cleanEnv, tempDir, withHub } from "./helpers.js";
import { startServeProcess } from "./serve-helpers.js";

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
async function withServer<T>(
  hub: FakeHub,
  extra: Partial<ServeOptions>,
  fn: (srv: ServeHandle, logs: string[], cacheDir: string) => Promise<T>,
): Promise<T> {
  const dispatcher = createDispatcher({ timeoutMs: 10_000 });
  const logs: string[] = [];
  const cacheDir = extra.cacheDir ?? tempDir();
  const srv = await startServer({
    upstreams: [hub.url],
    cacheDir,
    host: "127.0.0.1",
    port: 0,
    offline: false,
    revalidateMs: 60_000,
    engine: { connections: 4, maxFiles: 4, chunkSize: 1 << 20, retries: 1, timeoutMs: 10_000 },
    dispatcher,
    log: (l) => logs.push(l),
    ...extra,
  });
  try {
    return await fn(srv, logs, cacheDir);
  } finally {
    await srv.close(1000);
    await dispatcher.destroy();
  }
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

      await hub.close();
      // Public: served to anyone, by branch and by commit.
      for (const rev of ["main", commit(0)]) {
        const r = await get(`${srv.url}/org/pub/resolve/${rev}/p.bin`);
        assert.equal(r.status, 200, rev);
        assert.deepEqual(r.body, pub, rev);
      }
      // Gated and private: nobody the upstream did not confirm, however the revision is named.
      const refused: Record<number, number> = {};
      for (const [path, rev] of [
        ["org/gated/resolve/main/g.bin", "main"],
        [`org/gated/resolve/${commit(1)}/g.bin`, "commit"],
        ["org/priv/resolve/main/config.json", "main"],
        [`org/priv/resolve/${commit(2)}/config.json`, "commit"],
      ] as const) {
        for (const who of [{}, bearer("hf_wrong"), bearer("hf_never_seen")]) {
          const r = await get(`${srv.url}/${path}`, who);
          const what = `${path} (${rev}) as ${JSON.stringify(who)}: ${r.status} ${r.body}`;
          // A refusal the upstream gave this client minutes ago stands (401/403); else 503.
          assert.ok([401, 403, 503].includes(r.status), what);
          if (!("authorization" in who) || who.authorization === "Bearer hf_never_seen") {
            assert.equal(r.status, "authorization" in who ? 503 : r.status, what);
          }
          if (r.status === 503) assert.match(r.body.toString(), /cannot confirm/, what);
          refused[r.status] = (refused[r.status] ?? 0) + 1;
        }
      }
      assert.ok((refused[503] ?? 0) >= 4, `never-seen clients get 503: ${JSON.stringify(refused)}`);
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
