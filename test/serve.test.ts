import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { createDispatcher } from "../src/hub/http.js";
import { startServer } from "../src/serve/server.js";
import { fileFromBuffer, makeRepo, randomBytesSeeded } from "./fakehub/index.js";
import { tempDir, withHub } from "./helpers.js";

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
