// Security: hostile listings, planted symlinks, where the token goes, redirects, oversize answers.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  type FakeFile,
  type FakeHub,
  type FakeRepo,
  fileFromBuffer,
  makeRepo,
  type RequestLogEntry,
  randomBytesSeeded,
  TEST_TOKEN,
} from "./fakehub/index.js";
import {
  type CliRun,
  cacheProblems,
  cleanEnv,
  filesContaining,
  peakRssKiB,
  repoCacheDir,
  runCli,
  runInProcess,
  selfSignedCert,
  show,
  tempDir,
  walk,
  withHub,
} from "./helpers.js";

const EXIT = { OK: 0, AUTH: 4, NETWORK: 6, DISK: 7, PROTOCOL: 8 } as const;
const OID = "0123456789abcdef0123456789abcdef01234567";

function showLog(log: readonly RequestLogEntry[]): string {
  return log
    .map(
      (e) =>
        `${e.server} ${e.method} ${e.status} ${e.host ?? ""} ${e.url.replace(/\?.*/, "?...")} auth=${e.authorization}`,
    )
    .join("\n");
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

function smallRepo(id: string, opts: { gated?: boolean } = {}): { repo: FakeRepo; files: FakeFile[] } {
  const files = [
    fileFromBuffer("config.json", Buffer.from('{"model_type":"sec"}\n')),
    fileFromBuffer("sub/file.txt", Buffer.from("inside\n")),
    // Over 1 MiB, so an interrupted download of it keeps resume state (smaller files do not).
    fileFromBuffer("model.safetensors", randomBytesSeeded(71, 1_500_000), { lfs: true }),
  ];
  return { repo: makeRepo(id, files, opts.gated === true ? { gated: true } : {}), files };
}

// ---------------------------------------------------------------------------------------------

describe("security: hostile listings", () => {
  const marker = `pwned-${randomBytes(4).toString("hex")}`;
  const sandbox = tempDir("hfget-sandbox-");
  const hostile: Array<[string, string]> = [
    ["parent", `../${marker}`],
    ["absolute /etc", `/etc/${marker}`],
    ["absolute into the sandbox", `${sandbox}/${marker}`],
    ["a/../../", `a/../../${marker}`],
    ["deep a/b/../../../", `a/b/../../../${marker}`],
    ["backslashes", `..\\..\\${marker}`],
    ["backslash inside", `a\\..\\..\\${marker}`],
    ["NUL", `ok.txt\u0000/../../${marker}`],
    ["300-char segment", `${"a".repeat(300)}/${marker}`],
    ["dot segment", `./${marker}`],
    ["empty segment", `a//${marker}`],
    ["drive letter", `C:/${marker}`],
    ["newline", `${marker}\n`],
  ];

  it("refuses every hostile path with exit 8 and writes nothing outside the target", {
    timeout: 60_000,
  }, async () => {
    const { repo } = smallRepo("org/hostile");
    await withHub([repo], {}, async (hub) => {
      for (const [name, path] of hostile) {
        const listing = JSON.stringify([
          { type: "file", oid: OID, size: 3, path: "good.txt" },
          { type: "directory", oid: OID, size: 0, path: "a" },
          { type: "file", oid: OID, size: 3, path },
        ]);
        for (const mode of ["cache", "local"] as const) {
          const base = join(sandbox, `${name.replace(/\W+/g, "_")}-${mode}`);
          const target = join(base, "one", "two");
          mkdirSync(target, { recursive: true });
          hub.faults.length = 0;
          hub.faults.push({ server: "hub", pathIncludes: "/tree/", fault: { type: "body", body: listing } });
          hub.clearLog();
          const where = mode === "cache" ? ["--cache-dir", target] : ["--local-dir", target];
          // In-process: 26 process starts took over 60 s on a loaded machine; the exit code is main's.
          const r = await runInProcess(["org/hostile", "--mirror", hub.url, ...where]);
          const what = `${name} (${JSON.stringify(path)}, ${mode})`;
          assert.equal(r.code, EXIT.PROTOCOL, `${what}\n${show(r)}`);
          assert.match(r.stderr, /unsafe file path/, what);
          assert.equal(r.stderr.includes("internal error"), false, what);
          // Refused before any download.
          assert.deepEqual(
            hub.log.filter((e) => e.url.includes("/resolve/")).map((e) => e.url),
            [],
            what,
          );
          // Nothing anywhere but inside the target.
          const outside = walk(base).filter((p) => !p.startsWith(join("one", "two")) && p !== "one");
          assert.deepEqual(outside, [], what);
          assert.deepEqual(
            walk(target).filter((p) => p.includes(marker)),
            [],
            what,
          );
        }
      }
      assert.deepEqual(
        walk(sandbox).filter((p) => p.includes(marker)),
        [],
      );
      assert.equal(existsSync(`/etc/${marker}`), false);
      assert.equal(existsSync(`/${marker}`), false);
    });
  });

  it("refuses a listing that names a path twice, or as a file and a folder", {
    timeout: 20_000,
  }, async () => {
    const { repo } = smallRepo("org/dupes");
    await withHub([repo], {}, async (hub) => {
      for (const entries of [
        [
          { type: "file", oid: OID, size: 3, path: "x.txt" },
          { type: "file", oid: OID, size: 3, path: "x.txt" },
        ],
        [
          { type: "file", oid: OID, size: 3, path: "x" },
          { type: "file", oid: OID, size: 3, path: "x/y.txt" },
        ],
      ]) {
        hub.faults.length = 0;
        hub.faults.push({
          server: "hub",
          pathIncludes: "/tree/",
          fault: { type: "body", body: JSON.stringify(entries) },
        });
        const r = await runCli(["org/dupes", "--mirror", hub.url, "--local-dir", tempDir()], {
          timeoutMs: 15_000,
        });
        assert.equal(r.code, EXIT.PROTOCOL, show(r));
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe("security: planted symlinks in --local-dir", () => {
  it("a file symlink (config.json -> outside) is replaced, not written through; so are metadata and .incomplete links", {
    timeout: 30_000,
  }, async () => {
    const { repo, files } = smallRepo("org/links");
    await withHub([repo], {}, async (hub) => {
      const outside = tempDir("hfget-outside-");
      const planted = {
        config: join(outside, "x"),
        meta: join(outside, "meta"),
        incomplete: join(outside, "incomplete"),
        state: join(outside, "state"),
        stateTmp: join(outside, "stateTmp"),
      };
      for (const p of Object.values(planted)) writeFileSync(p, "ORIGINAL");
      const local = tempDir("hfget-local-");
      const meta = join(local, ".cache", "huggingface", "download");
      mkdirSync(meta, { recursive: true });
      symlinkSync(planted.config, join(local, "config.json"));
      symlinkSync(planted.meta, join(meta, "config.json.metadata"));
      symlinkSync(planted.incomplete, join(meta, "model.safetensors.hfget-partial"));
      symlinkSync(planted.state, join(meta, "model.safetensors.hfget-partial.json"));
      symlinkSync(planted.stateTmp, join(meta, "model.safetensors.hfget-partial.json.tmp"));

      const r = await runCli(
        ["org/links", "--mirror", hub.url, "--local-dir", local, "--chunk-size", "256K"],
        {
          timeoutMs: 20_000,
        },
      );
      for (const [what, p] of Object.entries(planted)) {
        assert.equal(
          readFileSync(p, "utf8"),
          "ORIGINAL",
          `${what}: written through a planted symlink\n${show(r)}`,
        );
      }
      assert.deepEqual(
        walk(outside).sort(),
        Object.keys(planted)
          .map((k) => (k === "config" ? "x" : k))
          .sort(),
      );
      assert.equal(r.code, EXIT.OK, show(r));
      for (const f of files) {
        const p = join(local, ...f.path.split("/"));
        assert.ok(lstatSync(p).isFile(), `${f.path} is not a regular file`);
      }
      assert.equal(readFileSync(join(local, "config.json"), "utf8"), '{"model_type":"sec"}\n');
      assert.ok(lstatSync(join(meta, "config.json.metadata")).isFile());
    });
  });

  it("a folder symlink (sub -> outside) is never written through", { timeout: 30_000 }, async () => {
    const { repo } = smallRepo("org/dirlink");
    await withHub([repo], {}, async (hub) => {
      const outside = tempDir("hfget-outside-");
      const local = tempDir("hfget-local-");
      symlinkSync(outside, join(local, "sub"));
      const r = await runCli(["org/dirlink", "--mirror", hub.url, "--local-dir", local], {
        timeoutMs: 20_000,
      });
      assert.deepEqual(walk(outside), [], show(r));
      if (r.code === EXIT.OK) {
        // Acceptable only if the link was replaced by a real folder.
        assert.ok(lstatSync(join(local, "sub")).isDirectory(), show(r));
        assert.equal(readFileSync(join(local, "sub", "file.txt"), "utf8"), "inside\n");
      } else {
        assert.equal(r.code, EXIT.DISK, show(r));
        assert.match(r.stderr, /outside/, show(r));
      }
    });
  });

  it("a symlinked .cache folder (download state -> outside) is never written through", {
    timeout: 30_000,
  }, async () => {
    const { repo } = smallRepo("org/cachelink");
    await withHub([repo], {}, async (hub) => {
      const outside = tempDir("hfget-outside-");
      const local = tempDir("hfget-local-");
      symlinkSync(outside, join(local, ".cache"));
      const r = await runCli(["org/cachelink", "--mirror", hub.url, "--local-dir", local], {
        timeoutMs: 20_000,
      });
      assert.deepEqual(walk(outside), [], show(r));
      assert.ok(r.code === EXIT.OK || r.code === EXIT.DISK, show(r));
    });
  });

  it("a planted symlink at a cache blob's .incomplete is not written through", {
    timeout: 30_000,
  }, async () => {
    const { repo, files } = smallRepo("org/bloblink");
    await withHub([repo], {}, async (hub) => {
      const outside = tempDir("hfget-outside-");
      const cache = tempDir();
      const repoDir = repoCacheDir(cache, "model", "org/bloblink");
      const sha = files[2]?.lfs?.sha256 ?? "";
      mkdirSync(join(repoDir, "blobs"), { recursive: true });
      writeFileSync(join(outside, "x"), "ORIGINAL");
      symlinkSync(join(outside, "x"), join(repoDir, "blobs", `${sha}.hfget-partial`));
      const r = await runCli(
        ["org/bloblink", "--mirror", hub.url, "--cache-dir", cache, "--chunk-size", "256K"],
        {
          timeoutMs: 20_000,
        },
      );
      assert.equal(readFileSync(join(outside, "x"), "utf8"), "ORIGINAL", show(r));
      assert.equal(r.code, EXIT.OK, show(r));
      assert.deepEqual(cacheProblems(repoDir, repo.refs.main ?? "", files), []);
      assert.ok(lstatSync(join(repoDir, "blobs", sha)).isFile(), "the blob is a symlink");
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe("security: the token", () => {
  function assertNoToken(texts: Record<string, string>, dirs: readonly string[]): void {
    for (const [what, text] of Object.entries(texts)) {
      assert.equal(text.includes(TEST_TOKEN), false, `the token is in ${what}:\n${text}`);
    }
    for (const d of dirs)
      assert.deepEqual(filesContaining(d, TEST_TOKEN), [], `the token is in a file under ${d}`);
  }

  it("goes to the endpoint only: never to the CDN, never to another host, never in any output", {
    timeout: 30_000,
  }, async () => {
    const gated = smallRepo("org/gated", { gated: true });
    const open = smallRepo("org/open");
    await withHub([gated.repo, open.repo], {}, async (hub) => {
      // 1. A gated repo: the token is needed (so really sent) to the hub, and never to the CDN.
      const env = cleanEnv({ HF_TOKEN: TEST_TOKEN });
      const cache = tempDir();
      const r = await runCli(
        ["org/gated", "--mirror", hub.url, "--cache-dir", cache, "--json", "--chunk-size", "256K"],
        {
          env,
          timeoutMs: 20_000,
        },
      );
      assert.equal(r.code, EXIT.OK, show(r));
      const repoDir = repoCacheDir(cache, "model", "org/gated");
      assert.deepEqual(cacheProblems(repoDir, gated.repo.refs.main ?? "", gated.files), []);
      const cdn = hub.log.filter((e) => e.server === "cdn");
      assert.ok(cdn.length > 0);
      assert.deepEqual(
        cdn.filter((e) => e.authorization !== "none").map((e) => e.url),
        [],
        showLog(hub.log),
      );
      const resolves = hub.log.filter((e) => e.server === "hub" && e.url.includes("/resolve/"));
      assert.ok(resolves.length >= 3 && resolves.every((e) => e.authorization === "token"), showLog(hub.log));
      const json = JSON.parse(r.stdout) as unknown;
      assert.equal(typeof json, "object");
      assertNoToken({ stdout: r.stdout, stderr: r.stderr }, [cache, env.HF_HOME ?? ""]);

      // 2. Redirects from the hub to another origin: a second server, and the hub under another name.
      const seen: Array<string | undefined> = [];
      const other = createServer((req: IncomingMessage, res: ServerResponse) => {
        seen.push(req.headers.authorization);
        const body = Buffer.from('{"model_type":"sec"}\n');
        res.writeHead(200, { "content-length": String(body.length) });
        res.end(body);
      });
      const otherPort = await listen(other);
      try {
        const port = new URL(hub.url).port;
        hub.clearLog();
        hub.faults.push(
          {
            server: "hub",
            pathIncludes: "/config.json",
            method: "GET",
            times: 1,
            fault: { type: "redirect", location: `http://127.0.0.1:${otherPort}/config.json` },
          },
          {
            server: "hub",
            pathIncludes: "sub/file.txt",
            times: 1,
            fault: {
              type: "redirect",
              location: `http://localhost:${port}/org/open/resolve/${open.repo.refs.main}/sub/file.txt`,
            },
          },
        );
        const cache2 = tempDir();
        const r2 = await runCli(
          ["org/open", "--mirror", hub.url, "--cache-dir", cache2, "--token", TEST_TOKEN],
          {
            timeoutMs: 20_000,
          },
        );
        assert.equal(r2.code, EXIT.OK, show(r2));
        assert.deepEqual(seen, [undefined], "the other host got an Authorization header");
        const viaLocalhost = hub.log.filter((e) => (e.host ?? "").startsWith("localhost:"));
        assert.equal(viaLocalhost.length, 1, showLog(hub.log));
        assert.equal(viaLocalhost[0]?.authorization, "none", showLog(hub.log));
        assert.ok(
          hub.log.some((e) => e.authorization === "token"),
          "the token was not used at all",
        );
        assertNoToken({ stdout: r2.stdout, stderr: r2.stderr }, [cache2]);
      } finally {
        await closeServer(other);
      }
    });
  });

  it("is not sent after a redirect from https to http", { timeout: 30_000 }, async (t) => {
    const cert = selfSignedCert();
    if (cert === undefined) {
      t.skip("openssl is not available to make a certificate for the https endpoint");
      return;
    }
    const open = smallRepo("org/tls");
    await withHub([open.repo], {}, async (hub) => {
      const hubPort = Number(new URL(hub.url).port);
      const authAtTls: Array<string | undefined> = [];
      // An https endpoint: the API is proxied to the fake hub; downloads redirect to plain http.
      const tls = createHttpsServer({ key: cert.key, cert: cert.cert }, (req, res) => {
        authAtTls.push(req.headers.authorization);
        const url = req.url ?? "/";
        if (url.includes("/resolve/")) {
          res.writeHead(302, { location: `http://localhost:${hubPort}${url}`, "content-length": "0" });
          res.end();
          return;
        }
        const headers = { ...req.headers, host: `127.0.0.1:${hubPort}` };
        const up = httpRequest(
          { host: "127.0.0.1", port: hubPort, path: url, method: req.method, headers },
          (ur) => {
            res.writeHead(ur.statusCode ?? 502, ur.headers);
            ur.pipe(res);
          },
        );
        up.on("error", () => res.destroy());
        req.pipe(up);
      });
      const tlsPort = await listen(tls);
      try {
        const env = cleanEnv({ HF_TOKEN: TEST_TOKEN, NODE_EXTRA_CA_CERTS: cert.certPath });
        const cache = tempDir();
        const r = await runCli(
          ["org/tls", "--mirror", `https://localhost:${tlsPort}`, "--cache-dir", cache],
          {
            env,
            timeoutMs: 20_000,
          },
        );
        assert.equal(r.code, EXIT.OK, show(r));
        assert.ok(
          authAtTls.includes(`Bearer ${TEST_TOKEN}`),
          "the token did not even reach the https endpoint",
        );
        const downgraded = hub.log.filter(
          (e) => e.url.includes("/resolve/") && (e.host ?? "").startsWith("localhost"),
        );
        assert.ok(downgraded.length >= 3, showLog(hub.log));
        assert.deepEqual(
          downgraded.filter((e) => e.authorization !== "none").map((e) => e.url),
          [],
          showLog(hub.log),
        );
        assert.deepEqual(
          cacheProblems(repoCacheDir(cache, "model", "org/tls"), open.repo.refs.main ?? "", open.files),
          [],
        );
      } finally {
        await closeServer(tls);
      }
    });
  });

  it("never appears in stdout, stderr, --json, resume state or error messages of failing runs", {
    timeout: 30_000,
  }, async () => {
    const gated = smallRepo("org/gated-fail", { gated: true });
    await withHub([gated.repo], {}, async (hub) => {
      const echo = JSON.stringify({ error: `invalid credentials: Bearer ${TEST_TOKEN}` });
      const env = cleanEnv({ HF_TOKEN: TEST_TOKEN });
      const runs: Record<string, string> = {};
      const dirs: string[] = [env.HF_HOME ?? ""];

      // a) the API fails with a body that echoes the token
      hub.faults.push({
        server: "hub",
        pathIncludes: "/revision/",
        fault: { type: "status", status: 500, body: echo },
      });
      const c1 = tempDir();
      dirs.push(c1);
      const r1 = await runCli(
        ["org/gated-fail", "--mirror", hub.url, "--cache-dir", c1, "--retries", "1", "--json"],
        {
          env,
          timeoutMs: 15_000,
        },
      );
      assert.equal(r1.code, EXIT.NETWORK, show(r1));
      assert.match(r1.stderr, /invalid credentials/, "the server's message should still be shown");
      runs.r1 = r1.stdout + r1.stderr;

      // b) the CDN fails mid-download with such a body: resume state is left behind
      hub.faults.length = 0;
      hub.faults.push(
        { server: "cdn", times: 1, fault: { type: "throttle", bytesPerSec: 1e12 } },
        { server: "cdn", fault: { type: "status", status: 503, body: echo } },
      );
      const c2 = tempDir();
      dirs.push(c2);
      const r2 = await runCli(
        [
          "org/gated-fail",
          "--mirror",
          hub.url,
          "--cache-dir",
          c2,
          "--retries",
          "1",
          "--chunk-size",
          "256K",
          "--json",
        ],
        { env, timeoutMs: 15_000 },
      );
      assert.equal(r2.code, EXIT.NETWORK, show(r2));
      assert.ok(
        walk(c2).some((p) => p.endsWith(".hfget-partial.json")),
        `no resume state was left to scan\n${walk(c2).join("\n")}`,
      );
      runs.r2 = r2.stdout + r2.stderr;

      // c) a redirect to an unreachable URL that carries the token in its path
      hub.faults.length = 0;
      const dead = createServer();
      const deadPort = await listen(dead);
      await closeServer(dead);
      hub.faults.push({
        server: "hub",
        pathIncludes: "/resolve/",
        fault: {
          type: "redirect",
          location: `http://127.0.0.1:${deadPort}/${TEST_TOKEN}/x?sig=${TEST_TOKEN}`,
        },
      });
      const c3 = tempDir();
      dirs.push(c3);
      const r3 = await runCli(
        ["org/gated-fail", "--mirror", hub.url, "--cache-dir", c3, "--retries", "1", "--token", TEST_TOKEN],
        {
          env: cleanEnv(),
          timeoutMs: 15_000,
        },
      );
      assert.equal(r3.code, EXIT.NETWORK, show(r3));
      runs.r3 = r3.stdout + r3.stderr;

      // d) the token refused (a wrong one is "other"; ours is refused by a hub with another token)
      const c4 = tempDir();
      dirs.push(c4);
      const r4 = await withHub(
        [smallRepo("org/gated2", { gated: true }).repo],
        { token: "hf_other" },
        (hub2) => runCli(["org/gated2", "--mirror", hub2.url, "--cache-dir", c4], { env, timeoutMs: 15_000 }),
      );
      assert.equal(r4.code, EXIT.AUTH, show(r4));
      runs.r4 = r4.stdout + r4.stderr;

      assertNoToken(runs, dirs);
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe("security: redirects", () => {
  const files = [fileFromBuffer("config.json", Buffer.from('{"model_type":"redir"}\n'))];
  const lfsFiles = [fileFromBuffer("model.safetensors", randomBytesSeeded(81, 300_000), { lfs: true })];

  async function runWith(
    hubFaults: (hub: FakeHub, resolveUrl: string) => void,
    lfs = false,
  ): Promise<{ r: CliRun; log: RequestLogEntry[]; cache: string; repo: FakeRepo }> {
    const repo = makeRepo("org/redir", lfs ? lfsFiles : files);
    return withHub([repo], {}, async (hub) => {
      const path = lfs ? "model.safetensors" : "config.json";
      hubFaults(hub, `${hub.url}/org/redir/resolve/${repo.refs.main}/${path}`);
      const cache = tempDir();
      const r = await runCli(["org/redir", "--mirror", hub.url, "--cache-dir", cache, "--retries", "1"], {
        timeoutMs: 15_000,
      });
      return { r, log: [...hub.log], cache, repo };
    });
  }

  /** resolve -> /chain/1 -> ... -> /chain/(n-1) -> resolve?final: n redirects in all. */
  function chain(n: number) {
    return (hub: FakeHub, resolveUrl: string) => {
      hub.faults.push({
        server: "hub",
        pathIncludes: "/resolve/",
        times: 1,
        fault: { type: "redirect", location: `${hub.url}/chain/1` },
      });
      for (let i = 1; i < n; i++) {
        const location = i === n - 1 ? `${resolveUrl}?final=1` : `${hub.url}/chain/${i + 1}`;
        hub.faults.push({
          server: "hub",
          pathIncludes: `/chain/${i}`,
          fault: { type: "redirect", location },
        });
      }
    };
  }

  it("a redirect chain of 5 is followed", { timeout: 20_000 }, async () => {
    const { r, log, cache, repo } = await runWith(chain(5));
    assert.equal(r.code, EXIT.OK, `${show(r)}\n${showLog(log)}`);
    assert.deepEqual(
      cacheProblems(repoCacheDir(cache, "model", "org/redir"), repo.refs.main ?? "", files),
      [],
    );
  });

  it("a redirect chain longer than 5 is refused (exit 8)", { timeout: 20_000 }, async () => {
    const { r, log } = await runWith(chain(6));
    assert.equal(r.code, EXIT.PROTOCOL, `${show(r)}\n${showLog(log)}`);
    assert.match(r.stderr, /redirects/);
    assert.equal(log.filter((e) => e.url.includes("final=1")).length, 0, showLog(log));
  });

  it("a redirect to itself, and a two-step loop, are refused (exit 8)", { timeout: 20_000 }, async () => {
    const self = await runWith((hub, resolveUrl) => {
      hub.faults.push({
        server: "hub",
        pathIncludes: "/resolve/",
        fault: { type: "redirect", location: resolveUrl },
      });
    });
    assert.equal(self.r.code, EXIT.PROTOCOL, show(self.r));
    assert.match(self.r.stderr, /loop/);
    assert.ok(self.log.length < 10, showLog(self.log));
    const two = await runWith((hub) => {
      hub.faults.push(
        {
          server: "hub",
          pathIncludes: "/resolve/",
          fault: { type: "redirect", location: `${hub.url}/loop/a` },
        },
        {
          server: "hub",
          pathIncludes: "/loop/a",
          fault: { type: "redirect", location: `${hub.url}/loop/b`, status: 307 },
        },
        {
          server: "hub",
          pathIncludes: "/loop/b",
          fault: { type: "redirect", location: `${hub.url}/loop/a`, status: 301 },
        },
      );
    });
    assert.equal(two.r.code, EXIT.PROTOCOL, show(two.r));
    assert.match(two.r.stderr, /loop|redirects/);
  });

  for (const location of [
    "file:///etc/passwd",
    "ftp://127.0.0.1/x",
    "data:text/plain,hello",
    "gopher://127.0.0.1/x",
  ]) {
    it(`a redirect to ${location.split(":")[0]}: is refused (exit 8)`, { timeout: 20_000 }, async () => {
      const { r } = await runWith((hub) => {
        hub.faults.push({ server: "hub", pathIncludes: "/resolve/", fault: { type: "redirect", location } });
      });
      assert.equal(r.code, EXIT.PROTOCOL, show(r));
      assert.match(r.stderr, /refused a redirect/);
    });
  }

  it("a CDN that redirects to file: is refused too (exit 8)", { timeout: 20_000 }, async () => {
    const { r } = await runWith((hub) => {
      hub.faults.push({ server: "cdn", fault: { type: "redirect", location: "file:///etc/passwd" } });
    }, true);
    assert.equal(r.code, EXIT.PROTOCOL, show(r));
    assert.match(r.stderr, /refused a redirect/);
  });

  it("a redirect without a Location is refused (exit 8)", { timeout: 20_000 }, async () => {
    const { r } = await runWith((hub) => {
      hub.faults.push({ server: "hub", pathIncludes: "/resolve/", fault: { type: "status", status: 302 } });
    });
    assert.equal(r.code, EXIT.PROTOCOL, show(r));
    assert.match(r.stderr, /Location/);
  });
});

// ---------------------------------------------------------------------------------------------

describe("security: oversize and malformed API answers", () => {
  async function runAgainst(
    pathIncludes: string,
    fault: Parameters<FakeHub["faults"]["push"]>[0]["fault"],
  ): Promise<{ r: CliRun; ms: number; peakKiB: number }> {
    const { repo } = smallRepo("org/json");
    return withHub([repo], {}, async (hub) => {
      hub.faults.push({ server: "hub", pathIncludes, fault });
      let peakKiB = 0;
      let poll: NodeJS.Timeout | undefined;
      const t0 = Date.now();
      const r = await runCli(["org/json", "--mirror", hub.url, "--cache-dir", tempDir(), "--retries", "1"], {
        timeoutMs: 25_000,
        onSpawn: (child) => {
          poll = setInterval(() => {
            const kib = child.pid === undefined ? undefined : peakRssKiB(child.pid);
            if (kib !== undefined) peakKiB = Math.max(peakKiB, kib);
          }, 5);
        },
      });
      clearInterval(poll);
      return { r, ms: Date.now() - t0, peakKiB };
    });
  }

  for (const where of ["/tree/", "/revision/"]) {
    it(`a 40 MB never-ending JSON answer from ${where}: exit 8, bounded memory and time`, {
      timeout: 30_000,
    }, async () => {
      const { r, ms, peakKiB } = await runAgainst(where, { type: "hugeBody", bytes: 40_000_000 });
      assert.equal(r.code, EXIT.PROTOCOL, show(r));
      assert.match(r.stderr, /too large/);
      assert.equal(r.stderr.includes("internal error"), false, show(r));
      assert.ok(ms < 20_000, `${ms} ms`);
      assert.ok(peakKiB > 0, "memory was never sampled");
      assert.ok(peakKiB < 256 * 1024, `peak RSS ${Math.round(peakKiB / 1024)} MiB`);
    });
  }

  it("a 40 MB answer announced by Content-Length is refused without reading it", {
    timeout: 30_000,
  }, async () => {
    const { r, peakKiB } = await runAgainst("/tree/", { type: "body", body: Buffer.alloc(40_000_000, 0x20) });
    assert.equal(r.code, EXIT.PROTOCOL, show(r));
    assert.match(r.stderr, /too large/);
    assert.ok(peakKiB < 256 * 1024, `peak RSS ${Math.round(peakKiB / 1024)} MiB`);
  });

  const malformed: Array<[string, string, string]> = [
    ["truncated JSON listing", "/tree/", '[{"type":"file","path":"a.txt",'],
    ["a listing that is not an array", "/tree/", '{"files":[]}'],
    ["HTML instead of JSON", "/tree/", "<html><body>Welcome to nginx!</body></html>"],
    ["a negative size", "/tree/", `[{"type":"file","oid":"${OID}","size":-1,"path":"a.txt"}]`],
    ["a fractional size", "/tree/", `[{"type":"file","oid":"${OID}","size":1.5,"path":"a.txt"}]`],
    ["a bad oid", "/tree/", '[{"type":"file","oid":"zz","size":1,"path":"a.txt"}]'],
    [
      "a bad LFS oid",
      "/tree/",
      `[{"type":"file","oid":"${OID}","size":1,"path":"a.bin","lfs":{"oid":"x","size":1}}]`,
    ],
    ["a path that is not a string", "/tree/", `[{"type":"file","oid":"${OID}","size":1,"path":7}]`],
    ["malformed revision JSON", "/revision/", '{"sha": '],
    ["a revision without a sha", "/revision/", '{"id":"org/json"}'],
    ["a revision sha that is not hex", "/revision/", '{"sha":"../../../../etc/passwd"}'],
  ];
  for (const [name, where, body] of malformed) {
    it(`${name}: exit 8, a clear error, no crash`, { timeout: 20_000 }, async () => {
      const { r } = await runAgainst(where, { type: "body", body });
      assert.equal(r.code, EXIT.PROTOCOL, show(r));
      assert.match(r.stderr, /^hfget: error: /m);
      assert.equal(r.stderr.includes("internal error"), false, show(r));
      assert.equal(r.stderr.includes("    at "), false, `a stack trace:\n${r.stderr}`);
    });
  }
});
