import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { buildConfig } from "../src/config.js";
import { listFiles } from "../src/hub/list-files.js";
import { resolveRevision } from "../src/hub/resolve-revision.js";
import { openSession } from "../src/session.js";
import {
  type FakeFile,
  type FakeHub,
  fileFromBuffer,
  makeRepo,
  pushCommit,
  randomBytesSeeded,
  startFakeHub,
  TEST_TOKEN,
} from "./fakehub/index.js";
import { cleanEnv, runCli, runInProcess } from "./helpers.js";

function smallFiles(n: number, prefix = ""): FakeFile[] {
  return Array.from({ length: n }, (_, i) =>
    fileFromBuffer(`${prefix}d${i % 7}/sub${i % 3}/f${i}.txt`, Buffer.from(`file ${i}\n`)),
  );
}

describe("hub listing and hfget ls", () => {
  let hub: FakeHub;
  let mirrorHub: FakeHub;
  const model = makeRepo("org/model", [
    fileFromBuffer("config.json", Buffer.from('{"a":1}')),
    fileFromBuffer("weights/model.safetensors", randomBytesSeeded(7, 200_000), { lfs: true }),
  ]);
  const modelV2 = pushCommit(model, [fileFromBuffer("config.json", Buffer.from('{"a":2}'))], "dev");
  model.refs["v1.0"] = model.refs.main!;
  const prSha = pushCommit(model, [fileFromBuffer("pr.txt", Buffer.from("pr"))], "refs/pr/1");
  const dataset = makeRepo("org/big", smallFiles(3000), { type: "dataset" });
  const space = makeRepo("org/app", [fileFromBuffer("app.py", Buffer.from("print(1)"))], { type: "space" });
  const single = makeRepo("gpt2", [fileFromBuffer("README.md", Buffer.from("# gpt2"))]);
  const gated = makeRepo("org/gated", [fileFromBuffer("secret.txt", Buffer.from("s"))], { gated: true });
  const priv = makeRepo("org/private", [fileFromBuffer("p.txt", Buffer.from("p"))], { private: true });

  before(async () => {
    const repos = [model, dataset, space, single, gated, priv];
    hub = await startFakeHub({ repos, gateApi: true });
    // A mirror: next-links point at huggingface.co, which tests must never reach.
    mirrorHub = await startFakeHub({ repos, pageSize: 1000, nextLinkOrigin: "https://huggingface.co" });
  });
  after(async () => {
    await hub.close();
    await mirrorHub.close();
  });

  const ls = (args: string[], env: Record<string, string | undefined> = {}) =>
    runInProcess(["ls", ...args, "--mirror", hub.url, "--json"], cleanEnv(env));

  it("prints every file of a 3000-file dataset exactly once, across pages with mirror next-links", async () => {
    mirrorHub.clearLog();
    const r = await runCli(["ls", "datasets/org/big", "--mirror", mirrorHub.url, "--json"], {
      env: cleanEnv(),
      timeoutMs: 30_000,
    });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { files: { path: string }[] };
    assert.equal(out.files.length, 3000);
    assert.equal(new Set(out.files.map((f) => f.path)).size, 3000);
    const treeCalls = mirrorHub.log.filter((e) => e.url.includes("/tree/"));
    // 3000 files + 28 directory entries (the recursive tree lists folders too) = 4 pages of 1000.
    assert.equal(treeCalls.length, 4);
    assert.ok(treeCalls.slice(1).every((e) => e.url.includes("cursor=")));
  });

  it("follows small pages in the library generator", async () => {
    const small = await startFakeHub({ repos: [dataset], pageSize: 7 });
    try {
      const config = buildConfig({ repoId: "datasets/org/big", mirror: small.url }, cleanEnv());
      const session = openSession(config);
      const { commit } = await resolveRevision(session.hub, config.repo, "main");
      const seen = new Set<string>();
      let pages = 0;
      for await (const f of listFiles(session.hub, config.repo, commit, { onPage: () => pages++ }))
        seen.add(f.path);
      await session.close();
      assert.equal(seen.size, 3000);
      assert.equal(pages, Math.ceil(3028 / 7));
    } finally {
      await small.close();
    }
  });

  it("lists models, datasets and spaces, and one-segment ids", async () => {
    for (const [arg, path] of [
      ["org/model", "config.json"],
      ["datasets/org/big", "d0/sub0/f0.txt"],
      ["spaces/org/app", "app.py"],
      ["gpt2", "README.md"],
    ] as const) {
      const r = await ls([arg]);
      assert.equal(r.code, 0, `${arg}: ${r.stderr}`);
      const out = JSON.parse(r.stdout) as { files: { path: string }[] };
      assert.ok(
        out.files.some((f) => f.path === path),
        `${arg} lists ${path}`,
      );
    }
    const typed = await ls(["org/app", "--repo-type", "space"]);
    assert.equal(typed.code, 0, typed.stderr);
  });

  it("resolves branches, tags, commit shas and refs/pr/N", async () => {
    const cases: [string, string][] = [
      ["main", model.refs.main!],
      ["v1.0", model.refs.main!],
      ["dev", modelV2],
      ["refs/pr/1", prSha],
      [modelV2, modelV2],
    ];
    for (const [rev, sha] of cases) {
      const r = await ls(["org/model", "--revision", rev]);
      assert.equal(r.code, 0, `${rev}: ${r.stderr}`);
      assert.equal((JSON.parse(r.stdout) as { commit: string }).commit, sha, rev);
    }
    const pr = hub.log.find((e) => e.url.includes("/revision/refs%2Fpr%2F1"));
    assert.ok(pr, "refs/pr/1 is sent as one encoded segment");
  });

  it("shows size, LFS and the hash each file is checked against", async () => {
    const r = await runCli(["ls", "org/model", "--mirror", hub.url], { env: cleanEnv(), timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    const line = r.stdout.split("\n").find((l) => l.startsWith("weights/model.safetensors"));
    assert.ok(line);
    assert.match(line, /200 kB/);
    assert.match(line, /LFS/);
    assert.match(line, /sha256:[0-9a-f]{64}/);
    assert.match(r.stdout, /config\.json .* sha1:[0-9a-f]{40}/);
  });

  it("filters with --include/--exclude using fnmatch semantics", async () => {
    const r = await ls(["datasets/org/big", "--include", "d1/*", "--exclude", "*sub2*"]);
    assert.equal(r.code, 0, r.stderr);
    const paths = (JSON.parse(r.stdout) as { files: { path: string }[] }).files.map((f) => f.path);
    assert.ok(paths.length > 0);
    assert.ok(paths.every((p) => p.startsWith("d1/") && !p.includes("sub2")));
  });

  it("maps each not-found kind to exit code 3", async () => {
    const repo = await ls(["org/nope"]);
    assert.equal(repo.code, 3);
    assert.match(repo.stderr, /org\/nope.*repository not found/);
    const rev = await ls(["org/model", "--revision", "nope"]);
    assert.equal(rev.code, 3);
    assert.match(rev.stderr, /revision not found/);
    const file = await runCli(["org/model", "missing.bin", "--mirror", hub.url, "--quiet"], {
      env: cleanEnv(),
      timeoutMs: 30_000,
    });
    assert.equal(file.code, 3);
    assert.match(file.stderr, /missing\.bin/);
    assert.equal(file.stderr.trim().split("\n").length, 1, "one error line");
  });

  it("needs the token for gated and private repos (exit 4 / 3), and works with it", async () => {
    const noToken = await ls(["org/gated"]);
    assert.equal(noToken.code, 4);
    assert.match(noToken.stderr, /gated.*--token or set HF_TOKEN/);
    const withToken = await ls(["org/gated"], { HF_TOKEN: TEST_TOKEN });
    assert.equal(withToken.code, 0, withToken.stderr);
    const privNo = await ls(["org/private"]);
    assert.equal(privNo.code, 3);
    const privYes = await ls(["org/private", "--token", TEST_TOKEN]);
    assert.equal(privYes.code, 0, privYes.stderr);
    for (const r of [noToken, withToken, privNo, privYes]) {
      assert.ok(!r.stdout.includes(TEST_TOKEN) && !r.stderr.includes(TEST_TOKEN));
    }
  });

  it("refuses bad arguments with exit code 2 and one line", async () => {
    for (const args of [
      ["a/b/c"],
      [""],
      ["org/model", "--repo-type", "weights"],
      ["org/model", "--mirror", "ftp://x"],
    ]) {
      const r = await runCli(["ls", ...args], { env: cleanEnv(), timeoutMs: 10_000 });
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
  });
});
