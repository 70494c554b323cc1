/**
 * Real clients, none written in this project, against `hfget serve` (the CLI process) in front of
 * the fake hub: huggingface_hub 1.28 and 0.36, @huggingface/hub, hfget itself, curl. Every file's
 * hash is checked where the client put it.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { downloadFile, listFiles, snapshotDownload } from "@huggingface/hub";
import {
  type FakeHub,
  fileFromBuffer,
  makeRepo,
  randomBytesSeeded,
  startFakeHub,
  TEST_TOKEN,
} from "./fakehub/index.js";
import { cacheProblems, cleanEnv, repoCacheDir, runCli, show, tempDir } from "./helpers.js";
import { HH_VERSIONS, runPython, skipWithoutPython } from "./pyclient.js";
import { type ServeProcess, startServeProcess } from "./serve-helpers.js";

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

const CONTENT = new Map<string, Buffer>([
  ["config.json", Buffer.from('{"model_type": "test"}\n')],
  ["sub/dir/notes.txt", Buffer.from("nested\n".repeat(50))],
  ["model.safetensors", randomBytesSeeded(21, 5_000_000)],
  ["tokenizer.bin", randomBytesSeeded(22, 700_000)],
]);
const FILES = [...CONTENT].map(([path, buf]) =>
  fileFromBuffer(path, buf, { lfs: path.endsWith(".bin") || path.endsWith(".safetensors") }),
);
const GATED_BYTES = randomBytesSeeded(23, 400_000);
const REPO = makeRepo("org/served", FILES);
const GATED = makeRepo("org/gated", [fileFromBuffer("w.bin", GATED_BYTES, { lfs: true })], {
  gated: true,
});
const COMMIT = REPO.commits[0]?.sha ?? "";

let hub: FakeHub;
let srv: ServeProcess;

before(async () => {
  hub = await startFakeHub({ repos: [REPO, GATED], pageSize: 2 });
  srv = await startServeProcess(
    ["--upstream", hub.url, "--cache-dir", tempDir(), "--token", TEST_TOKEN, "--chunk-size", "1M"],
    cleanEnv(),
  );
});

after(async () => {
  await srv?.stop();
  await hub?.close();
});

/** Each file of REPO under `dir` (a snapshot or local folder) has the right bytes. */
function assertTree(dir: string, what: string): void {
  for (const [path, content] of CONTENT) {
    assert.equal(sha256(readFileSync(join(dir, path))), sha256(content), `${what}: ${path}`);
  }
}

const PY_ALL = `
import json, sys
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.hf_api import RepoFile
a = json.loads(sys.argv[1])
api = HfApi()
info = api.model_info(a["repo_id"])
tree = sorted(f.path for f in api.list_repo_tree(a["repo_id"], recursive=True) if isinstance(f, RepoFile))
snap = snapshot_download(a["repo_id"])
one = hf_hub_download(a["repo_id"], a["filename"], revision=info.sha)
try:
    hf_hub_download(a["gated"], "w.bin", token=False)
    gated_anon = "served"
except Exception as e:
    gated_anon = type(e).__name__
gated = hf_hub_download(a["gated"], "w.bin", token=a["token"])
print("RESULT " + json.dumps({"sha": info.sha, "siblings": sorted(s.rfilename for s in info.siblings),
    "tree": tree, "snapshot": snap, "one": one, "gated_anon": gated_anon, "gated": gated}), flush=True)
`;

describe("huggingface_hub through hfget serve", { skip: skipWithoutPython() }, () => {
  for (const version of HH_VERSIONS) {
    test(`huggingface_hub ${version}: model_info, list_repo_tree, snapshot_download, hf_hub_download, gated`, async () => {
      const cache = tempDir();
      const r = await runPython(
        version,
        PY_ALL,
        [
          JSON.stringify({
            repo_id: "org/served",
            filename: "model.safetensors",
            gated: "org/gated",
            token: TEST_TOKEN,
          }),
        ],
        {
          env: cleanEnv({ HF_ENDPOINT: srv.url, HF_HUB_CACHE: cache, HF_HUB_DISABLE_PROGRESS_BARS: "1" }),
          timeoutMs: 90_000,
        },
      );
      assert.equal(r.code, 0, show(r));
      const line = r.stdout.split("\n").find((l) => l.startsWith("RESULT "));
      assert.ok(line, show(r));
      const out = JSON.parse(line.slice("RESULT ".length)) as {
        sha: string;
        siblings: string[];
        tree: string[];
        snapshot: string;
        one: string;
        gated_anon: string;
        gated: string;
      };
      const paths = [...CONTENT.keys()].sort();
      assert.equal(out.sha, COMMIT);
      assert.deepEqual(out.siblings, paths);
      assert.deepEqual(out.tree, paths, "list_repo_tree followed the server's own next-links");
      assert.ok(out.snapshot.startsWith(cache), out.snapshot);
      assertTree(out.snapshot, `snapshot_download ${version}`);
      assert.equal(
        sha256(readFileSync(out.one)),
        sha256(CONTENT.get("model.safetensors") ?? Buffer.alloc(0)),
      );
      assert.equal(out.gated_anon, "GatedRepoError", "no token: the gated file is refused");
      assert.equal(sha256(readFileSync(out.gated)), sha256(GATED_BYTES));
      assert.deepEqual(cacheProblems(repoCacheDir(cache, "model", "org/served"), COMMIT, FILES), []);
      assert.ok(!srv.stderr().includes(TEST_TOKEN), "no token in the server's log");
    });
  }
});

test("hfget --mirror <server>: parallel ranges through the server, cache layout and hashes right", async () => {
  const cache = tempDir();
  const before = srv.stderr().length;
  const r = await runCli(
    [
      "org/served",
      "--mirror",
      srv.url,
      "--cache-dir",
      cache,
      "--connections",
      "4",
      "--chunk-size",
      "1M",
      "--quiet",
    ],
    { env: cleanEnv(), timeoutMs: 60_000 },
  );
  assert.equal(r.code, 0, show(r));
  assert.deepEqual(cacheProblems(repoCacheDir(cache, "model", "org/served"), COMMIT, FILES), []);
  const log = srv
    .stderr()
    .slice(before)
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { path: string; status: number });
  const ranges = log.filter((e) => e.path.endsWith("/model.safetensors") && e.status === 206);
  assert.ok(ranges.length >= 4, `206 range requests for the 5 MB file: ${ranges.length}`);
});

test("curl through the server: Range -> 206 with those bytes, past the end -> 416", async () => {
  const big = CONTENT.get("model.safetensors") ?? Buffer.alloc(0);
  const url = `${srv.url}/org/served/resolve/${COMMIT}/model.safetensors`;
  const dir = tempDir();
  const out = join(dir, "part");
  const code = execFileSync("curl", ["-s", "-r", "1000-1999", "-o", out, "-w", "%{http_code}", url], {
    encoding: "utf8",
  });
  assert.equal(code, "206");
  assert.deepEqual(readFileSync(out), big.subarray(1000, 2000));
  const whole = join(dir, "whole");
  assert.equal(
    execFileSync("curl", ["-s", "-o", whole, "-w", "%{http_code}", url], { encoding: "utf8" }),
    "200",
  );
  assert.equal(sha256(readFileSync(whole)), sha256(big));
  const bad = execFileSync(
    "curl",
    ["-s", "-r", `${big.length + 10}-`, "-o", "/dev/null", "-D", "-", "-w", "%{http_code}", url],
    { encoding: "utf8" },
  );
  assert.match(bad, /416$/);
  assert.match(bad, new RegExp(`content-range: bytes \\*/${big.length}`, "i"));
});

test("@huggingface/hub through the server: listFiles, downloadFile, snapshotDownload", async () => {
  const listed: string[] = [];
  for await (const e of listFiles({ repo: "org/served", recursive: true, hubUrl: srv.url })) {
    if (e.type === "file") listed.push(e.path);
  }
  assert.deepEqual(listed.sort(), [...CONTENT.keys()].sort());
  for (const [path, content] of CONTENT) {
    const blob = await downloadFile({ repo: "org/served", path, hubUrl: srv.url, xet: false });
    assert.ok(blob, path);
    assert.equal(sha256(Buffer.from(await blob.arrayBuffer())), sha256(content), path);
  }
  const cache = tempDir();
  const snap = await snapshotDownload({ repo: "org/served", cacheDir: cache, hubUrl: srv.url });
  assertTree(snap, "snapshotDownload");
});

const PY_UPSTREAM_DOWN = `
import json, sys
from huggingface_hub import hf_hub_download
a = json.loads(sys.argv[1])
out = {"public": hf_hub_download(a["public"], "p.bin", token=False)}
for name, tok in (("anon", False), ("wrong", "hf_wrong_token"), ("right", a["token"])):
    try:
        out[name] = hf_hub_download(a["gated"], "w.bin", token=tok)
    except Exception as e:
        out[name] = "ERROR " + type(e).__name__ + " " + str(e)[:300]
print("RESULT " + json.dumps(out), flush=True)
`;

describe("huggingface_hub through hfget serve, upstream down", { skip: skipWithoutPython() }, () => {
  test("huggingface_hub 1.28: public cached file served; gated only to the token upstream accepted", async () => {
    const pubBytes = randomBytesSeeded(24, 300_000);
    const gatedBytes = randomBytesSeeded(25, 300_000);
    const repos = [
      makeRepo("org/pub", [fileFromBuffer("p.bin", pubBytes, { lfs: true })]),
      makeRepo("org/gated", [fileFromBuffer("w.bin", gatedBytes, { lfs: true })], { gated: true }),
    ];
    const down = await startFakeHub({ repos });
    const server = await startServeProcess([
      "--upstream",
      down.url,
      "--cache-dir",
      tempDir(),
      "--token",
      TEST_TOKEN,
    ]);
    try {
      // Prime the server's cache while the upstream is up: the public file anonymously, the gated one with the token.
      const p = await fetch(`${server.url}/org/pub/resolve/main/p.bin`);
      assert.equal(sha256(Buffer.from(await p.arrayBuffer())), sha256(pubBytes));
      const g = await fetch(`${server.url}/org/gated/resolve/main/w.bin`, {
        headers: { authorization: `Bearer ${TEST_TOKEN}` },
      });
      assert.equal(sha256(Buffer.from(await g.arrayBuffer())), sha256(gatedBytes));
      await down.close();
      const cache = tempDir();
      const r = await runPython(
        "1.28",
        PY_UPSTREAM_DOWN,
        [JSON.stringify({ public: "org/pub", gated: "org/gated", token: TEST_TOKEN })],
        {
          env: cleanEnv({ HF_ENDPOINT: server.url, HF_HUB_CACHE: cache, HF_HUB_DISABLE_PROGRESS_BARS: "1" }),
          timeoutMs: 90_000,
        },
      );
      assert.equal(r.code, 0, show(r));
      const line = r.stdout.split("\n").find((l) => l.startsWith("RESULT "));
      assert.ok(line, show(r));
      const out = JSON.parse(line.slice("RESULT ".length)) as Record<string, string>;
      assert.equal(sha256(readFileSync(out.public ?? "")), sha256(pubBytes));
      // Refused at once (a 401/403, which huggingface_hub does not retry), saying why.
      assert.match(out.anon ?? "", /^ERROR .*cannot confirm/s, `no token: ${out.anon}`);
      assert.match(out.wrong ?? "", /^ERROR /, `unconfirmed token: ${out.wrong}`);
      assert.equal(sha256(readFileSync(out.right ?? "")), sha256(gatedBytes));
    } finally {
      await server.stop();
      await down.close();
    }
  });
});

const PY_OFFLINE = `
import json, os, sys
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.hf_api import RepoFile
a = json.loads(sys.argv[1])
api = HfApi()
info = api.model_info(a["repo_id"], files_metadata=True)
rev = api.model_info(a["repo_id"], revision=info.sha)
tree = sorted(f.path for f in api.list_repo_tree(a["repo_id"], recursive=True) if isinstance(f, RepoFile))
top = sorted(f.path for f in api.list_repo_tree(a["repo_id"]))
pinfo = sorted((p.path, getattr(p, "size", 0)) for p in api.get_paths_info(a["repo_id"], ["config.json", "model.safetensors", "sub"]))
snap = snapshot_download(a["repo_id"])
one = hf_hub_download(a["repo_id"], "model.safetensors", revision=info.sha)
sizes = {s.rfilename: s.size for s in info.siblings}
lfs = {s.rfilename: (s.lfs.sha256 if s.lfs else None) for s in info.siblings}
print("RESULT " + json.dumps({"sha": info.sha, "rev_sha": rev.sha, "tree": tree, "top": top,
    "pinfo": pinfo, "snapshot": snap, "one": one, "sizes": sizes, "lfs": lfs}), flush=True)
`;

describe("huggingface_hub 1.28 against a fresh hfget serve --offline", { skip: skipWithoutPython() }, () => {
  test("caches filled by hfget and by huggingface_hub: model_info, tree, paths-info, snapshot_download from disk", async () => {
    const byHfget = tempDir();
    const fill = await runCli(["org/served", "--mirror", hub.url, "--cache-dir", byHfget, "--quiet"], {
      env: cleanEnv(),
      timeoutMs: 60_000,
    });
    assert.equal(fill.code, 0, show(fill));
    const byPython = tempDir();
    const pf = await runPython(
      "1.28",
      "from huggingface_hub import snapshot_download; snapshot_download('org/served')",
      [],
      {
        env: cleanEnv({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: byPython, HF_HUB_DISABLE_PROGRESS_BARS: "1" }),
        timeoutMs: 60_000,
      },
    );
    assert.equal(pf.code, 0, show(pf));
    for (const [who, cacheDir] of [
      ["hfget", byHfget],
      ["huggingface_hub", byPython],
    ] as const) {
      hub.clearLog();
      // A dead upstream too: nothing may be asked of it, and nothing of the fake hub either.
      const off = await startServeProcess(
        ["--offline", "--upstream", "http://127.0.0.1:9", "--cache-dir", cacheDir],
        cleanEnv(),
      );
      try {
        const client = tempDir();
        const r = await runPython("1.28", PY_OFFLINE, [JSON.stringify({ repo_id: "org/served" })], {
          env: cleanEnv({ HF_ENDPOINT: off.url, HF_HUB_CACHE: client, HF_HUB_DISABLE_PROGRESS_BARS: "1" }),
          timeoutMs: 90_000,
        });
        assert.equal(r.code, 0, `${who}: ${show(r)}\n--- server\n${off.stderr().slice(-3000)}`);
        const line = r.stdout.split("\n").find((l) => l.startsWith("RESULT "));
        assert.ok(line, show(r));
        const out = JSON.parse(line.slice("RESULT ".length)) as {
          sha: string;
          rev_sha: string;
          tree: string[];
          top: string[];
          pinfo: [string, number][];
          snapshot: string;
          one: string;
          sizes: Record<string, number>;
          lfs: Record<string, string | null>;
        };
        const paths = [...CONTENT.keys()].sort();
        assert.equal(out.sha, COMMIT, who);
        assert.equal(out.rev_sha, COMMIT, who);
        assert.deepEqual(out.tree, paths, who);
        assert.deepEqual(out.top, ["config.json", "model.safetensors", "sub", "tokenizer.bin"], who);
        assert.deepEqual(
          out.pinfo,
          [
            ["config.json", CONTENT.get("config.json")?.length],
            ["model.safetensors", CONTENT.get("model.safetensors")?.length],
            ["sub", 0],
          ],
          who,
        );
        for (const [path, content] of CONTENT) {
          assert.equal(out.sizes[path], content.length, `${who}: size of ${path}`);
          const isLfs = path.endsWith(".bin") || path.endsWith(".safetensors");
          assert.equal(out.lfs[path], isLfs ? sha256(content) : null, `${who}: lfs of ${path}`);
        }
        assert.ok(out.snapshot.startsWith(client), out.snapshot);
        assertTree(out.snapshot, `snapshot_download from an offline server on ${who}'s cache`);
        assert.equal(
          sha256(readFileSync(out.one)),
          sha256(CONTENT.get("model.safetensors") ?? Buffer.alloc(0)),
        );
        assert.deepEqual(cacheProblems(repoCacheDir(client, "model", "org/served"), COMMIT, FILES), [], who);
        assert.deepEqual(hub.log, [], `${who}: the offline server asked the hub nothing`);
        // What is not cached is still a clean 404 the clients understand.
        const miss = await fetch(`${off.url}/api/models/org/absent/revision/main`);
        assert.equal(miss.status, 404);
        assert.equal(miss.headers.get("x-error-code"), "RepoNotFound");
      } finally {
        await off.stop();
      }
    }
  });
});
