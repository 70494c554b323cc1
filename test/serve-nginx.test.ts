/**
 * examples/nginx-hfget-serve.conf with a real nginx in front of two `hfget serve` processes on one
 * shared cache: huggingface_hub 1.28's snapshot_download through it gets the right bytes; a second
 * team member's download of the same commit is served by nginx's cache (hfget serve sees no request
 * for those files); files sent on a token are never kept; one instance down, the other answers.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  type FakeHub,
  fileFromBuffer,
  makeRepo,
  randomBytesSeeded,
  startFakeHub,
  TEST_TOKEN,
} from "./fakehub/index.js";
import { cleanEnv, ROOT, show, tempDir } from "./helpers.js";
import { pythonClientMissing, runPython } from "./pyclient.js";
import { type ServeProcess, startServeProcess } from "./serve-helpers.js";

const NGINX = "/usr/sbin/nginx";
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

function skipReason(): string | false {
  const why = !existsSync(NGINX)
    ? `${NGINX} not installed (apt-get install nginx-light)`
    : pythonClientMissing();
  if (why === undefined || process.env.CI === "true") return false;
  return `needs nginx and the real huggingface_hub: ${why}`;
}

const CONTENT = new Map<string, Buffer>([
  ["config.json", Buffer.from('{"model_type": "nginx"}\n')],
  ["sub/notes.txt", Buffer.from("through nginx\n".repeat(40))],
  ["model.safetensors", randomBytesSeeded(31, 3_000_000)],
  ["tokenizer.bin", randomBytesSeeded(32, 400_000)],
]);
const lfs = (p: string) => p.endsWith(".bin") || p.endsWith(".safetensors");
const REPO = makeRepo(
  "org/team",
  [...CONTENT].map(([p, b]) => fileFromBuffer(p, b, { lfs: lfs(p) })),
);
const GATED_BYTES = randomBytesSeeded(33, 200_000);
const GATED = makeRepo("org/gated", [fileFromBuffer("w.bin", GATED_BYTES, { lfs: true })], { gated: true });
const COMMIT = REPO.commits[0]?.sha ?? "";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

let hub: FakeHub;
let servers: ServeProcess[] = [];
let nginx: ChildProcess | undefined;
let nginxUrl = "";
let dir = "";

interface Access {
  status: number;
  method: string;
  uri: string;
  cache: string;
}

function accessLog(): Access[] {
  const text = existsSync(join(dir, "hfget-access.log"))
    ? readFileSync(join(dir, "hfget-access.log"), "utf8")
    : "";
  return text
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [, status, method, uri, , cache] = l.split(" ");
      return { status: Number(status), method: method ?? "", uri: uri ?? "", cache: cache ?? "" };
    });
}

/** Resolve requests the hfget serve processes logged (JSON lines on stderr). */
function serveResolves(): { method: string; path: string; status: number }[] {
  return servers.flatMap((s) =>
    s
      .stderr()
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { method: string; path: string; status: number })
      .filter((e) => e.path.includes("/resolve/")),
  );
}

describe("nginx (examples/nginx-hfget-serve.conf) in front of two hfget serve instances", {
  skip: skipReason(),
}, () => {
  before(async () => {
    hub = await startFakeHub({ repos: [REPO, GATED] });
    const cacheDir = tempDir();
    const args = [
      "--upstream",
      hub.url,
      "--cache-dir",
      cacheDir,
      "--token",
      TEST_TOKEN,
      "--chunk-size",
      "1M",
    ];
    servers = await Promise.all([startServeProcess(args), startServeProcess(args)]);
    dir = tempDir("hfget-nginx-");
    for (const d of [
      "cache",
      "cache-tmp/client_body",
      "cache-tmp/proxy",
      "cache-tmp/fastcgi",
      "cache-tmp/uwsgi",
      "cache-tmp/scgi",
    ])
      mkdirSync(join(dir, d), { recursive: true });
    const port = await freePort();
    const hostOf = (s: ServeProcess) => new URL(s.url).host;
    let conf = readFileSync(join(ROOT, "examples", "nginx-hfget-serve.conf"), "utf8");
    for (const [from, to] of [
      ["/var/cache/nginx/hfget", join(dir, "cache")],
      ["/var/log/nginx/", `${dir}/`],
      ["listen 8080;", `listen 127.0.0.1:${port};`],
      ["127.0.0.1:8081", hostOf(servers[0]!)],
      ["127.0.0.1:8082", hostOf(servers[1]!)],
      [
        "worker_processes auto;",
        `worker_processes 1;\ndaemon off;${process.getuid?.() === 0 ? "\nuser root;" : ""}`,
      ],
    ] as const) {
      assert.ok(conf.includes(from), `the example config has ${from}`);
      conf = conf.split(from).join(to);
    }
    writeFileSync(join(dir, "nginx.conf"), conf);
    nginx = spawn(NGINX, ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    nginx.stderr?.setEncoding("utf8").on("data", (d: string) => {
      err += d;
    });
    nginxUrl = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`${nginxUrl}/healthz`)).status === 200) break;
      } catch {
        // not listening yet
      }
      if (i >= 100 || nginx.exitCode !== null)
        throw new Error(`nginx did not start: ${err}\n${readFileSync(join(dir, "error.log"), "utf8")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  after(async () => {
    if (nginx && nginx.exitCode === null) {
      const exited = new Promise((r) => nginx?.once("exit", r));
      nginx.kill("SIGQUIT");
      const t = setTimeout(() => nginx?.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    }
    await Promise.all(servers.map((s) => s.stop()));
    await hub?.close();
  });

  const PY = `
import json, sys
from huggingface_hub import snapshot_download
print("RESULT " + json.dumps(snapshot_download("org/team")), flush=True)
`;

  async function snapshot(what: string): Promise<void> {
    const cache = tempDir();
    const r = await runPython("1.28", PY, [], {
      env: cleanEnv({ HF_ENDPOINT: nginxUrl, HF_HUB_CACHE: cache, HF_HUB_DISABLE_PROGRESS_BARS: "1" }),
      timeoutMs: 90_000,
    });
    assert.equal(r.code, 0, `${what}: ${show(r)}`);
    const line = r.stdout.split("\n").find((l) => l.startsWith("RESULT "));
    assert.ok(line, show(r));
    const snap = JSON.parse(line.slice("RESULT ".length)) as string;
    assert.ok(snap.startsWith(cache), snap);
    for (const [path, content] of CONTENT)
      assert.equal(sha256(readFileSync(join(snap, path))), sha256(content), `${what}: ${path}`);
  }

  test("snapshot_download twice: right hashes; the second is served from nginx's cache by commit", async () => {
    await snapshot("first download");
    const byCommit = (e: { uri: string }) => e.uri.includes(`/resolve/${COMMIT}/`);
    const serveBefore = serveResolves().filter((e) => e.path.includes(`/resolve/${COMMIT}/`)).length;
    assert.ok(serveBefore >= CONTENT.size, `the first download reached hfget serve: ${serveBefore}`);
    const mark = accessLog().length;
    await snapshot("second download");
    const second = accessLog().slice(mark).filter(byCommit);
    assert.ok(second.length >= CONTENT.size, JSON.stringify(second));
    assert.deepEqual(
      second.filter((e) => e.cache !== "HIT"),
      [],
      "every by-commit request of the second download was an nginx cache hit",
    );
    const serveAfter = serveResolves().filter((e) => e.path.includes(`/resolve/${COMMIT}/`)).length;
    assert.equal(serveAfter, serveBefore, "hfget serve saw no by-commit request during the second download");
    const per = servers.map(
      (s) =>
        s
          .stderr()
          .split("\n")
          .filter((l) => l.includes("/resolve/")).length,
    );
    console.log(
      `nginx: second download ${second.length} by-commit requests, all HIT; resolves per instance ${per.join(", ")}`,
    );
  });

  test("a gated file fetched with a token is never kept by nginx; no token still gets 401", async () => {
    const gatedCommit = GATED.commits[0]?.sha ?? "";
    const url = `${nginxUrl}/org/gated/resolve/${gatedCommit}/w.bin`;
    for (let i = 0; i < 2; i++) {
      const r = await fetch(url, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
      assert.equal(r.status, 200);
      assert.match(r.headers.get("cache-control") ?? "", /private/);
      assert.notEqual(r.headers.get("x-cache-status"), "HIT", `request ${i + 1} with a token`);
      assert.equal(sha256(Buffer.from(await r.arrayBuffer())), sha256(GATED_BYTES));
    }
    const anon = await fetch(url);
    assert.equal(anon.status, 401, "no token: refused by hfget serve, not served from nginx's cache");
    await anon.arrayBuffer();
  });

  test("one instance stopped: nginx sends every request to the other", async () => {
    await servers[0]?.stop();
    for (let i = 0; i < 4; i++) {
      const r = await fetch(`${nginxUrl}/api/models/org/team/revision/main`);
      assert.equal(r.status, 200, `request ${i + 1}`);
      assert.equal(((await r.json()) as { sha: string }).sha, COMMIT);
    }
    const r = await fetch(`${nginxUrl}/org/team/resolve/main/config.json`);
    assert.equal(r.status, 200);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), CONTENT.get("config.json"));
  });
});
