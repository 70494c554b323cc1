// Proxies: a real Debian tinyproxy, with Debian's default CONNECT policy (ports 443 and 563 only), in
// front of the fake hub and its CDN (both plain http on 127.0.0.1). Plain-http targets must go through
// it as absolute-form requests, not CONNECT tunnels (issue 8 item 7).
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, connect as netConnect } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { type FakeHub, fileFromBuffer, makeRepo, randomBytesSeeded, TEST_TOKEN } from "./fakehub/index.js";
import { cacheProblems, cleanEnv, repoCacheDir, runCli, show, tempDir, withHub } from "./helpers.js";

const TINYPROXY = "/usr/bin/tinyproxy";

interface Proxy {
  readonly url: string;
  readonly port: number;
  log(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  await new Promise<void>((r) => server.close(() => r()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** tinyproxy in the foreground with a generated config; tinyproxy has no "port 0". */
async function startTinyproxy(basicAuth?: { user: string; password: string }): Promise<Proxy> {
  const dir = tempDir("hfget-tinyproxy-");
  const port = await freePort();
  const logFile = join(dir, "tinyproxy.log");
  const conf = join(dir, "tinyproxy.conf");
  writeFileSync(
    conf,
    [
      `Port ${port}`,
      "Listen 127.0.0.1",
      "Timeout 60",
      "Allow 127.0.0.1",
      // Debian's default: CONNECT to the https and snews ports only.
      "ConnectPort 443",
      "ConnectPort 563",
      "MaxClients 100",
      `LogFile "${logFile}"`,
      "LogLevel Info",
      ...(basicAuth ? [`BasicAuth ${basicAuth.user} ${basicAuth.password}`] : []),
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn(TINYPROXY, ["-d", "-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  let exited = false;
  const exitedP = new Promise<void>((r) => child.once("exit", () => r()));
  child.once("exit", () => {
    exited = true;
  });
  const until = Date.now() + 10_000;
  while (!(await canConnect(port))) {
    if (exited || Date.now() > until) {
      child.kill("SIGKILL");
      throw new Error(`tinyproxy did not start on ${port}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    log: () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : ""),
    stop: async () => {
      if (exited) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exitedP;
      clearTimeout(timer);
    },
  };
}

async function withProxy<T>(
  fn: (proxy: Proxy) => Promise<T>,
  basicAuth?: { user: string; password: string },
): Promise<T> {
  const proxy = await startTinyproxy(basicAuth);
  try {
    return await fn(proxy);
  } finally {
    await proxy.stop();
  }
}

const FILES = [
  fileFromBuffer("config.json", Buffer.from('{"model_type":"proxy"}\n')),
  fileFromBuffer("model.safetensors", randomBytesSeeded(81, 3_000_000), { lfs: true }),
];

function repos() {
  // Private, so the download only works if the token reaches the hub through the proxy.
  return [makeRepo("org/proxied", FILES, { private: true })];
}

/** The tinyproxy log lines naming a request ("Request (file descriptor N): GET http://... HTTP/1.1"). */
function requestLines(log: string): string[] {
  return log.split("\n").filter((l) => /Request \(file descriptor \d+\): /.test(l));
}

function checkCache(home: string, hub: FakeHub): void {
  const repo = hub.repos[0];
  const commit = repo?.commits[0];
  assert.ok(repo && commit);
  const problems = cacheProblems(repoCacheDir(join(home, "hub"), "model", "org/proxied"), commit.sha, FILES);
  assert.deepEqual(problems, []);
}

// Outside CI a machine without tinyproxy skips (saying why); under CI=true a missing one fails.
const skip =
  existsSync(TINYPROXY) || process.env.CI === "true"
    ? false
    : `${TINYPROXY} is not installed (apt-get install tinyproxy; .ci/run does)`;

describe("proxy", { skip }, () => {
  it("sends http targets through tinyproxy as absolute-form requests, token to the hub only", async () => {
    await withProxy(async (proxy) => {
      await withHub(repos(), {}, async (hub) => {
        const env = cleanEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: TEST_TOKEN, HTTP_PROXY: proxy.url });
        const r = await runCli(["org/proxied", "--quiet"], { env, timeoutMs: 60_000 });
        assert.equal(r.code, 0, `${show(r)}\n--- proxy log\n${proxy.log()}`);
        checkCache(env.HF_HOME as string, hub);

        const lines = requestLines(proxy.log());
        assert.ok(!lines.some((l) => / CONNECT /.test(l)), `a CONNECT was sent:\n${lines.join("\n")}`);
        const hubOrigin = new URL(hub.url).origin;
        const cdnOrigin = new URL(hub.cdnUrl).origin;
        // Every request either server received came through the proxy, in absolute form.
        assert.ok(hub.log.length > 0);
        for (const e of hub.log) {
          const origin = e.server === "hub" ? hubOrigin : cdnOrigin;
          const want = `: ${e.method} ${origin}${e.url} HTTP/1.1`;
          assert.ok(
            lines.some((l) => l.endsWith(want)),
            `not in the proxy log: ${want}\n${lines.join("\n")}`,
          );
        }
        assert.ok(
          hub.log.some((e) => e.server === "cdn"),
          "the LFS redirect to the CDN was followed",
        );
        // The hub got the token through the proxy; the CDN (another origin) never did.
        for (const e of hub.log) {
          assert.equal(
            e.authorization,
            e.server === "hub" ? "token" : "none",
            `${e.server} ${e.method} ${e.url}`,
          );
        }
        assert.ok(!proxy.log().includes(TEST_TOKEN), "the token is in the proxy log");
        assert.ok(!`${r.stdout}${r.stderr}`.includes(TEST_TOKEN));
      });
    });
  });

  it("lowercase http_proxy is honoured too", async () => {
    await withProxy(async (proxy) => {
      await withHub(repos(), {}, async (hub) => {
        const env = cleanEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: TEST_TOKEN, http_proxy: proxy.url });
        const r = await runCli(["org/proxied", "--quiet"], { env, timeoutMs: 60_000 });
        assert.equal(r.code, 0, show(r));
        checkCache(env.HF_HOME as string, hub);
        const lines = requestLines(proxy.log());
        assert.ok(
          lines.some((l) => l.includes(`GET ${new URL(hub.cdnUrl).origin}/lfs/`)),
          lines.join("\n"),
        );
      });
    });
  });

  it("NO_PROXY=127.0.0.1 goes direct, the proxy sees nothing", async () => {
    await withProxy(async (proxy) => {
      await withHub(repos(), {}, async (hub) => {
        const env = cleanEnv({
          HF_ENDPOINT: hub.url,
          HF_TOKEN: TEST_TOKEN,
          HTTP_PROXY: proxy.url,
          HTTPS_PROXY: proxy.url,
          NO_PROXY: "example.invalid,127.0.0.1",
        });
        const r = await runCli(["org/proxied", "--quiet"], { env, timeoutMs: 60_000 });
        assert.equal(r.code, 0, show(r));
        checkCache(env.HF_HOME as string, hub);
        assert.ok(hub.log.some((e) => e.server === "cdn"));
        assert.deepEqual(requestLines(proxy.log()), []);
      });
    });
  });

  it("Proxy-Authorization comes from the proxy URL's userinfo", async () => {
    const auth = { user: "proxyuser", password: "proxySECRETpw" };
    await withProxy(async (proxy) => {
      await withHub(repos(), {}, async (hub) => {
        const withCreds = `http://${auth.user}:${auth.password}@127.0.0.1:${proxy.port}`;
        const env = cleanEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: TEST_TOKEN, HTTP_PROXY: withCreds });
        const r = await runCli(["org/proxied", "--quiet"], { env, timeoutMs: 60_000 });
        assert.equal(r.code, 0, `${show(r)}\n--- proxy log\n${proxy.log()}`);
        checkCache(env.HF_HOME as string, hub);
        assert.ok(hub.log.some((e) => e.server === "cdn"));
        assert.ok(!`${r.stdout}${r.stderr}`.includes(auth.password));

        // Without the userinfo tinyproxy answers 407: a clear failure, nothing reaches the hub.
        hub.clearLog();
        const before = requestLines(proxy.log()).length;
        const env2 = cleanEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: TEST_TOKEN, HTTP_PROXY: proxy.url });
        // Default retries: a 407 is not retried (another attempt would get the same answer).
        const r2 = await runCli(["org/proxied", "--quiet"], { env: env2, timeoutMs: 60_000 });
        assert.equal(r2.code, 6, show(r2));
        assert.match(r2.stderr, /407/, show(r2));
        assert.match(r2.stderr, /credentials/, show(r2));
        const tried = requestLines(proxy.log()).slice(before);
        // One attempt: the revision, and the listing's first page asked for beside it.
        assert.equal(
          tried.filter((l) => l.includes("/revision/")).length,
          1,
          `one attempt, no retries:\n${tried.join("\n")}`,
        );
        assert.ok(tried.length <= 2, `one attempt, no retries:\n${tried.join("\n")}`);
        assert.equal(hub.log.length, 0);
      });
    }, auth);
  });

  it("https targets still go through a CONNECT tunnel (HTTPS_PROXY, else HTTP_PROXY)", async () => {
    await withProxy(async (proxy) => {
      // Nothing listens there: the proxy refuses CONNECT to a port other than 443/563 anyway.
      const port = await freePort();
      for (const name of ["HTTPS_PROXY", "HTTP_PROXY"]) {
        const before = requestLines(proxy.log()).length;
        const env = cleanEnv({
          HF_ENDPOINT: `https://127.0.0.1:${port}`,
          HF_TOKEN: TEST_TOKEN,
          [name]: proxy.url,
        });
        const r = await runCli(["org/proxied", "--quiet", "--retries", "0"], { env, timeoutMs: 60_000 });
        assert.equal(r.code, 6, `${name}: ${show(r)}`);
        const lines = requestLines(proxy.log()).slice(before);
        assert.ok(lines.length > 0, `${name}: the proxy saw nothing`);
        for (const l of lines) assert.ok(l.endsWith(`: CONNECT 127.0.0.1:${port} HTTP/1.1`), `${name}: ${l}`);
      }
      assert.ok(!proxy.log().includes(TEST_TOKEN));
    });
  });

  it("a proxy that is down is a network error naming the target, not a hang", async () => {
    const port = await freePort();
    await withHub(repos(), {}, async (hub) => {
      const env = cleanEnv({
        HF_ENDPOINT: hub.url,
        HF_TOKEN: TEST_TOKEN,
        HTTP_PROXY: `http://127.0.0.1:${port}`,
      });
      const r = await runCli(["org/proxied", "--quiet", "--retries", "0"], { env, timeoutMs: 60_000 });
      assert.equal(r.code, 6, show(r));
      assert.equal(hub.log.length, 0, "nothing reached the hub directly");
      assert.ok(!r.stderr.includes(TEST_TOKEN));
    });
  });
});
