// Tests of the fake hub itself (test/fakehub), so engine tests can rely on it.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { downloadFile, listFiles } from "@huggingface/hub";
import { request } from "undici";
import {
  type FakeHub,
  type FakeRepo,
  fileFromBuffer,
  fileFromDisk,
  gitBlobSha1,
  lfsPointer,
  makeCommitSha,
  makeRepo,
  parseRange,
  pushCommit,
  randomBytesSeeded,
  type StartOptions,
  sha256Hex,
  startFakeHub,
  TEST_TOKEN,
  writeSeededFile,
} from "./fakehub/index.js";

const T = { timeout: 15_000 };
const SMALL = Buffer.from('{"model_type":"gpt2"}\n');
const BIG = randomBytesSeeded(7, 300_000);
const BIG_SHA = sha256Hex(BIG);
const NOTES = Buffer.from("notes\n");

function modelRepo(): FakeRepo {
  const repo = makeRepo("org/model", [
    fileFromBuffer("config.json", SMALL),
    fileFromBuffer("model.safetensors", BIG, { lfs: true }),
    fileFromBuffer("sub/dir/notes.txt", NOTES),
    fileFromBuffer("sub/b.bin", randomBytesSeeded(8, 5000)),
  ]);
  const first = repo.refs.main ?? "";
  repo.refs["v1.0"] = first;
  pushCommit(repo, [fileFromBuffer("config.json", Buffer.from("{}"))], "refs/pr/1");
  return repo;
}

async function withHub(opts: Partial<StartOptions>, fn: (hub: FakeHub) => Promise<void>): Promise<void> {
  const hub = await startFakeHub({ repos: [modelRepo()], ...opts });
  try {
    await fn(hub);
  } finally {
    await hub.close();
  }
}

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

async function get(
  url: string,
  opts: { method?: "GET" | "HEAD" | "POST"; headers?: Record<string, string>; body?: string } = {},
): Promise<Res> {
  const res = await request(url, {
    method: opts.method ?? "GET",
    headers: opts.headers ?? {},
    body: opts.body ?? null,
    signal: AbortSignal.timeout(8000),
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

const json = (r: Res): unknown => JSON.parse(r.body.toString("utf8"));
const auth = { authorization: `Bearer ${TEST_TOKEN}` };

async function cdnLocation(hub: FakeHub, path = "model.safetensors"): Promise<string> {
  const r = await get(`${hub.url}/org/model/resolve/main/${path}`);
  assert.equal(r.status, 302);
  return String(r.headers.location);
}

/** Raw HTTP/1.1 GET that reports exactly what came over the wire, bounded by idleMs of silence. */
function rawGet(
  url: string,
  headers: Record<string, string> = {},
  idleMs = 1500,
): Promise<{ head: string; body: Buffer; closedByServer: boolean }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname);
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const all = Buffer.concat(chunks);
      const sep = all.indexOf("\r\n\r\n");
      if (sep < 0) return resolve({ head: all.toString("latin1"), body: Buffer.alloc(0), closedByServer });
      resolve({ head: all.subarray(0, sep).toString("latin1"), body: all.subarray(sep + 4), closedByServer });
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(false), idleMs);
    };
    sock.on("connect", () => {
      const lines = [`GET ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`, "Connection: keep-alive"];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      sock.write(`${lines.join("\r\n")}\r\n\r\n`);
      arm();
    });
    sock.on("data", (c: Buffer) => {
      chunks.push(c);
      arm();
    });
    sock.on("end", () => finish(true));
    sock.on("close", () => finish(true));
    sock.on("error", (err) => {
      if (chunks.length > 0) finish(true);
      else reject(err);
    });
  });
}

function headerOf(head: string, name: string): string | undefined {
  for (const line of head.split("\r\n").slice(1)) {
    const i = line.indexOf(":");
    if (line.slice(0, i).trim().toLowerCase() === name) return line.slice(i + 1).trim();
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------

describe("fakehub model", () => {
  it("computes git and LFS hashes like git", T, () => {
    const f = fileFromBuffer("a.txt", Buffer.from("hello\n"));
    assert.equal(f.gitOid, "ce013625030ba8dba906f756967f9e9ca394464a"); // git hash-object
    const l = fileFromBuffer("w.bin", BIG, { lfs: true });
    assert.equal(l.lfs?.sha256, BIG_SHA);
    const pointer = lfsPointer(BIG_SHA, BIG.length);
    assert.equal(l.lfs?.pointerSize, Buffer.byteLength(pointer));
    assert.equal(l.gitOid, gitBlobSha1(Buffer.from(pointer)));
    assert.match(makeCommitSha("x"), /^[0-9a-f]{40}$/);
    assert.equal(makeCommitSha("x"), makeCommitSha("x"));
    assert.notEqual(makeCommitSha("x"), makeCommitSha("y"));
  });

  it("randomBytesSeeded is deterministic and incompressible-looking", T, () => {
    const a = randomBytesSeeded(1, 100_000);
    assert.ok(a.equals(randomBytesSeeded(1, 100_000)));
    assert.ok(!a.equals(randomBytesSeeded(2, 100_000)));
    assert.ok(randomBytesSeeded(1, 1000).equals(a.subarray(0, 1000)));
    const counts = new Array<number>(256).fill(0);
    for (const b of a) counts[b] = (counts[b] ?? 0) + 1;
    assert.ok(Math.max(...counts) < 600);
  });

  it(
    "fileFromDisk matches fileFromBuffer and reads ranges; writeSeededFile streams seeded bytes",
    T,
    async () => {
      const dir = await mkdtemp(join(tmpdir(), "fakehub-"));
      try {
        const p = join(dir, "blob");
        const { sha256, size } = await writeSeededFile(p, 3, 3 * 1024 * 1024 + 17);
        const mem = randomBytesSeeded(3, size);
        assert.equal(sha256, sha256Hex(mem));
        const lfs = await fileFromDisk("x.bin", p, { lfs: true });
        assert.deepEqual(lfs.lfs, fileFromBuffer("x.bin", mem, { lfs: true }).lfs);
        assert.equal(lfs.gitOid, fileFromBuffer("x.bin", mem, { lfs: true }).gitOid);
        const reg = await fileFromDisk("x.bin", p, { lfs: false });
        assert.equal(reg.gitOid, gitBlobSha1(mem));
        const chunks: Buffer[] = [];
        for await (const c of reg.read(1000, 2_000_000)) chunks.push(Buffer.from(c));
        assert.ok(Buffer.concat(chunks).equals(mem.subarray(1000, 2_000_000)));
        const empty: Buffer[] = [];
        for await (const c of reg.read(5, 5)) empty.push(Buffer.from(c));
        assert.equal(Buffer.concat(empty).length, 0);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it("parseRange handles the single-range forms", T, () => {
    assert.deepEqual(parseRange("bytes=0-9", 100), { kind: "range", start: 0, end: 9 });
    assert.deepEqual(parseRange("bytes=90-", 100), { kind: "range", start: 90, end: 99 });
    assert.deepEqual(parseRange("bytes=-10", 100), { kind: "range", start: 90, end: 99 });
    assert.deepEqual(parseRange("bytes=-1000", 100), { kind: "range", start: 0, end: 99 });
    assert.deepEqual(parseRange("bytes=50-1000", 100), { kind: "range", start: 50, end: 99 });
    assert.deepEqual(parseRange("bytes=100-", 100), { kind: "unsatisfiable" });
    assert.deepEqual(parseRange("bytes=-0", 100), { kind: "unsatisfiable" });
    assert.deepEqual(parseRange("bytes=9-3", 100), { kind: "none" });
    assert.deepEqual(parseRange("bytes=0-1,5-6", 100), { kind: "none" });
    assert.deepEqual(parseRange(undefined, 100), { kind: "none" });
  });
});

describe("fakehub revision endpoint", () => {
  it("resolves branch, tag, sha and refs/pr/1", T, async () => {
    await withHub({}, async (hub) => {
      const repo = hub.repos[0];
      assert.ok(repo);
      const first = repo.commits[0]?.sha;
      const pr = repo.commits[1]?.sha;
      for (const [rev, sha] of [
        ["main", first],
        ["v1.0", first],
        [first, first],
        [encodeURIComponent("refs/pr/1"), pr],
      ] as const) {
        const r = await get(`${hub.url}/api/models/org/model/revision/${rev}`);
        assert.equal(r.status, 200, String(rev));
        const info = json(r) as {
          sha: string;
          id: string;
          siblings: Array<{ rfilename: string }>;
          gated: unknown;
        };
        assert.equal(info.sha, sha);
        assert.equal(info.id, "org/model");
        assert.equal(info.gated, false);
      }
      const info = json(await get(`${hub.url}/api/models/org/model`)) as { sha: string };
      assert.equal(info.sha, first);
    });
  });

  it("serves one-segment ids, datasets and spaces", T, async () => {
    const files = [fileFromBuffer("a.txt", Buffer.from("a"))];
    const repos = [
      makeRepo("gpt2", files),
      makeRepo("org/data", files, { type: "dataset" }),
      makeRepo("space1", files, { type: "space" }),
    ];
    const hub = await startFakeHub({ repos });
    try {
      assert.equal((await get(`${hub.url}/api/models/gpt2/revision/main`)).status, 200);
      assert.equal((await get(`${hub.url}/api/datasets/org/data/revision/main`)).status, 200);
      assert.equal((await get(`${hub.url}/api/spaces/space1/revision/main`)).status, 200);
      assert.equal((await get(`${hub.url}/api/models/org/data/revision/main`)).status, 401);
      assert.deepEqual((await get(`${hub.url}/gpt2/resolve/main/a.txt`)).body.toString(), "a");
      assert.deepEqual((await get(`${hub.url}/datasets/org/data/resolve/main/a.txt`)).body.toString(), "a");
      assert.deepEqual((await get(`${hub.url}/spaces/space1/resolve/main/a.txt`)).body.toString(), "a");
      assert.equal((await get(`${hub.url}/org/data/resolve/main/a.txt`)).status, 401);
    } finally {
      await hub.close();
    }
  });

  it("sees a ref moved between runs", T, async () => {
    await withHub({}, async (hub) => {
      const repo = hub.repos[0];
      assert.ok(repo);
      const sha = pushCommit(repo, [fileFromBuffer("config.json", Buffer.from("v2"))]);
      const info = json(await get(`${hub.url}/api/models/org/model/revision/main`)) as { sha: string };
      assert.equal(info.sha, sha);
      const r = await get(`${hub.url}/org/model/resolve/main/config.json`);
      assert.equal(r.body.toString(), "v2");
      assert.equal(r.headers["x-repo-commit"], sha);
    });
  });
});

describe("fakehub tree endpoint", () => {
  it("paginates with absolute Link next URLs (3 pages)", T, async () => {
    await withHub({ pageSize: 2 }, async (hub) => {
      const sha = hub.repos[0]?.commits[0]?.sha ?? "";
      let url: string | undefined = `${hub.url}/api/models/org/model/tree/${sha}?recursive=true`;
      const entries: Array<{ type: string; path: string; oid: string; size: number; lfs?: unknown }> = [];
      let pages = 0;
      while (url !== undefined) {
        const r = await get(url);
        assert.equal(r.status, 200);
        entries.push(...(json(r) as typeof entries));
        pages++;
        const link = r.headers.link;
        const m = typeof link === "string" ? /<([^>]+)>;\s*rel="next"/.exec(link) : null;
        url = m?.[1];
        if (url !== undefined) assert.ok(url.startsWith(`${hub.url}/api/models/org/model/tree/`));
      }
      assert.equal(pages, 3);
      assert.deepEqual(
        entries.map((e) => `${e.type}:${e.path}`),
        [
          "file:config.json",
          "file:model.safetensors",
          "directory:sub",
          "file:sub/b.bin",
          "directory:sub/dir",
          "file:sub/dir/notes.txt",
        ],
      );
      const lfs = entries.find((e) => e.path === "model.safetensors");
      assert.deepEqual(lfs?.lfs, {
        oid: BIG_SHA,
        size: BIG.length,
        pointerSize: lfsPointer(BIG_SHA, 300000).length,
      });
      assert.equal(lfs?.size, BIG.length);
      const cfg = entries.find((e) => e.path === "config.json");
      assert.equal(cfg?.oid, gitBlobSha1(SMALL));
      const dir = entries.find((e) => e.path === "sub");
      assert.match(dir?.oid ?? "", /^[0-9a-f]{40}$/);
      assert.equal(dir?.size, 0);
    });
  });

  it("uses nextLinkOrigin for Link next, and the path still works on the fake", T, async () => {
    await withHub({ pageSize: 2, nextLinkOrigin: "https://huggingface.co" }, async (hub) => {
      const r = await get(`${hub.url}/api/models/org/model/tree/main?recursive=true`);
      const link = String(r.headers.link);
      const m = /<([^>]+)>;\s*rel="next"/.exec(link);
      assert.ok(m?.[1]?.startsWith("https://huggingface.co/api/models/org/model/tree/main?"), link);
      const next = new URL(m?.[1] ?? "");
      assert.equal(next.searchParams.get("recursive"), "true");
      const r2 = await get(`${hub.url}${next.pathname}${next.search}`);
      assert.equal(r2.status, 200);
      assert.equal((json(r2) as unknown[]).length, 2);
    });
  });

  it("lists one level without recursive, and a subpath", T, async () => {
    await withHub({}, async (hub) => {
      const top = json(await get(`${hub.url}/api/models/org/model/tree/main`)) as Array<{ path: string }>;
      assert.deepEqual(
        top.map((e) => e.path),
        ["config.json", "model.safetensors", "sub"],
      );
      const sub = json(await get(`${hub.url}/api/models/org/model/tree/main/sub?recursive=false`)) as Array<{
        path: string;
      }>;
      assert.deepEqual(
        sub.map((e) => e.path),
        ["sub/b.bin", "sub/dir"],
      );
      const missing = await get(`${hub.url}/api/models/org/model/tree/main/nope`);
      assert.equal(missing.status, 404);
      assert.equal(missing.headers["x-error-code"], "EntryNotFound");
    });
  });

  it("serves a 3000-file dataset in pages of 1000; siblings are capped", T, async () => {
    const files = Array.from({ length: 3000 }, (_, i) =>
      fileFromBuffer(`data/${"abc"[i % 3]}/f${String(i).padStart(4, "0")}.txt`, Buffer.from(`row ${i}\n`)),
    );
    const hub = await startFakeHub({ repos: [makeRepo("org/big", files, { type: "dataset" })] });
    try {
      let url: string | undefined = `${hub.url}/api/datasets/org/big/tree/main?recursive=true`;
      let pages = 0;
      let fileCount = 0;
      while (url !== undefined) {
        const r = await get(url);
        const page = json(r) as Array<{ type: string }>;
        assert.ok(page.length <= 1000);
        fileCount += page.filter((e) => e.type === "file").length;
        pages++;
        url = /<([^>]+)>;\s*rel="next"/.exec(String(r.headers.link ?? ""))?.[1];
      }
      assert.equal(fileCount, 3000);
      assert.equal(pages, 4); // 3000 files + 4 directories
      const info = json(await get(`${hub.url}/api/datasets/org/big/revision/main`)) as {
        siblings: unknown[];
      };
      assert.equal(info.siblings.length, 1000);
      // The official JS client agrees with the fake's listing format and pagination.
      let viaClient = 0;
      for await (const e of listFiles({
        repo: { type: "dataset", name: "org/big" },
        recursive: true,
        hubUrl: hub.url,
      })) {
        if (e.type === "file") viaClient++;
      }
      assert.equal(viaClient, 3000);
    } finally {
      await hub.close();
    }
  });

  it("answers paths-info", T, async () => {
    await withHub({}, async (hub) => {
      const r = await get(`${hub.url}/api/models/org/model/paths-info/main`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "paths=config.json&paths=sub&paths=missing",
      });
      assert.equal(r.status, 200);
      assert.deepEqual(
        (json(r) as Array<{ path: string; type: string }>).map((e) => `${e.type}:${e.path}`),
        ["file:config.json", "directory:sub"],
      );
    });
  });
});

describe("fakehub auth and not-found", () => {
  it(
    "gated: resolve is 401 anonymous, 403 wrong token, 200 with the token; metadata stays public",
    T,
    async () => {
      const repo = makeRepo("org/gated", [fileFromBuffer("w.bin", BIG), fileFromBuffer("README.md", NOTES)], {
        gated: true,
      });
      const hub = await startFakeHub({ repos: [repo] });
      try {
        const url = `${hub.url}/org/gated/resolve/main/w.bin`;
        const anon = await get(url);
        assert.equal(anon.status, 401);
        assert.equal(anon.headers["x-error-code"], "GatedRepo");
        assert.match(String((json(anon) as { error: string }).error), /restricted/);
        const wrong = await get(url, { headers: { authorization: "Bearer hf_wrong" } });
        assert.equal(wrong.status, 403);
        assert.equal(wrong.headers["x-error-code"], "GatedRepo");
        const ok = await get(url, { headers: auth });
        assert.equal(ok.status, 200);
        assert.ok(ok.body.equals(BIG));
        assert.equal((await get(`${hub.url}/org/gated/resolve/main/README.md`)).status, 200);
        const info = await get(`${hub.url}/api/models/org/gated/revision/main`);
        assert.equal(info.status, 200);
        assert.equal((json(info) as { gated: unknown }).gated, "auto");
        assert.deepEqual(
          hub.log.map((e) => e.authorization),
          ["none", "other", "token", "none", "none"],
        );
      } finally {
        await hub.close();
      }
    },
  );

  it("gateApi: gates the API too", T, async () => {
    const repo = makeRepo("org/gated", [fileFromBuffer("a", NOTES)], { gated: true });
    const hub = await startFakeHub({ repos: [repo], gateApi: true });
    try {
      const r = await get(`${hub.url}/api/models/org/gated/tree/main`);
      assert.equal(r.status, 401);
      assert.equal(r.headers["x-error-code"], "GatedRepo");
      assert.equal((await get(`${hub.url}/api/models/org/gated/tree/main`, { headers: auth })).status, 200);
    } finally {
      await hub.close();
    }
  });

  it("private and missing repos", T, async () => {
    const repo = makeRepo("org/secret", [fileFromBuffer("a", NOTES)], { private: true });
    const hub = await startFakeHub({ repos: [repo] });
    try {
      for (const path of ["/api/models/org/secret/revision/main", "/org/secret/resolve/main/a"]) {
        const anon = await get(`${hub.url}${path}`);
        assert.equal(anon.status, 401, path);
        assert.equal(anon.headers["x-error-code"], "RepoNotFound");
        const wrong = await get(`${hub.url}${path}`, { headers: { authorization: "Bearer nope" } });
        assert.equal(wrong.status, 401);
        assert.equal((await get(`${hub.url}${path}`, { headers: auth })).status, 200);
      }
      const missingAnon = await get(`${hub.url}/api/models/org/none/revision/main`);
      assert.equal(missingAnon.status, 401);
      assert.equal(missingAnon.headers["x-error-code"], "RepoNotFound");
      const missingTok = await get(`${hub.url}/org/none/resolve/main/a`, { headers: auth });
      assert.equal(missingTok.status, 404);
      assert.equal(missingTok.headers["x-error-code"], "RepoNotFound");
      assert.deepEqual(json(missingTok), { error: "Repository not found" });
    } finally {
      await hub.close();
    }
  });

  it("revision, entry and route not found", T, async () => {
    await withHub({}, async (hub) => {
      for (const path of [
        "/api/models/org/model/revision/nope",
        "/api/models/org/model/tree/nope?recursive=true",
        "/org/model/resolve/nope/config.json",
        `/api/models/org/model/revision/${"a".repeat(40)}`,
      ]) {
        const r = await get(`${hub.url}${path}`);
        assert.equal(r.status, 404, path);
        assert.equal(r.headers["x-error-code"], "RevisionNotFound", path);
        assert.match((json(r) as { error: string }).error, /^Invalid rev id: /);
      }
      const entry = await get(`${hub.url}/org/model/resolve/main/missing.bin`);
      assert.equal(entry.status, 404);
      assert.equal(entry.headers["x-error-code"], "EntryNotFound");
      assert.equal(entry.headers["x-repo-commit"], hub.repos[0]?.refs.main);
      const dirAsFile = await get(`${hub.url}/org/model/resolve/main/sub`);
      assert.equal(dirAsFile.headers["x-error-code"], "EntryNotFound");
      for (const path of [
        "/",
        "/api/whatever",
        "/api/models/org/model/bogus/main",
        "/org/model/blob/main/x",
      ]) {
        const r = await get(`${hub.url}${path}`);
        assert.equal(r.status, 404, path);
        assert.equal(r.headers["x-error-code"], undefined, path);
      }
    });
  });
});

describe("fakehub resolve and CDN", () => {
  it("regular file: headers, body, 206, 416, HEAD", T, async () => {
    await withHub({}, async (hub) => {
      const url = `${hub.url}/org/model/resolve/main/config.json`;
      const r = await get(url);
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(SMALL));
      assert.equal(r.headers.etag, `"${gitBlobSha1(SMALL)}"`);
      assert.equal(r.headers["x-repo-commit"], hub.repos[0]?.refs.main);
      assert.equal(r.headers["accept-ranges"], "bytes");
      assert.equal(r.headers["content-length"], String(SMALL.length));
      assert.equal(r.headers["x-linked-etag"], undefined);
      const part = await get(url, { headers: { range: "bytes=2-5" } });
      assert.equal(part.status, 206);
      assert.equal(part.headers["content-range"], `bytes 2-5/${SMALL.length}`);
      assert.ok(part.body.equals(SMALL.subarray(2, 6)));
      const bad = await get(url, { headers: { range: "bytes=1000-" } });
      assert.equal(bad.status, 416);
      assert.equal(bad.headers["content-range"], `bytes */${SMALL.length}`);
      const head = await get(url, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(head.headers["content-length"], String(SMALL.length));
      assert.equal(head.body.length, 0);
      const pr = await get(`${hub.url}/org/model/resolve/${encodeURIComponent("refs/pr/1")}/config.json`);
      assert.equal(pr.body.toString(), "{}");
    });
  });

  it("LFS file: 302 to the CDN with linked headers; GET and HEAD", T, async () => {
    await withHub({}, async (hub) => {
      for (const method of ["GET", "HEAD"] as const) {
        const r = await get(`${hub.url}/org/model/resolve/main/model.safetensors`, { method });
        assert.equal(r.status, 302);
        assert.equal(r.headers["x-linked-etag"], `"${BIG_SHA}"`);
        assert.equal(r.headers["x-linked-size"], String(BIG.length));
        assert.equal(r.headers.etag, `"${BIG_SHA}"`);
        assert.equal(r.headers["x-repo-commit"], hub.repos[0]?.refs.main);
        assert.ok(Number(r.headers["content-length"]) < 1000);
        const loc = String(r.headers.location);
        assert.ok(loc.startsWith(`${hub.cdnUrl}/lfs/${BIG_SHA}?expires=`), loc);
      }
      const loc = await cdnLocation(hub);
      const full = await get(loc);
      assert.equal(full.status, 200);
      assert.ok(full.body.equals(BIG));
      assert.equal(full.headers.etag, `"${BIG_SHA}"`);
      assert.equal(full.headers["accept-ranges"], "bytes");
      const head = await get(loc, { method: "HEAD" });
      assert.equal(head.headers["content-length"], String(BIG.length));
      // The official JS client follows the redirect and gets the bytes.
      const blob = await downloadFile({
        repo: "org/model",
        path: "model.safetensors",
        hubUrl: hub.url,
        xet: false,
      });
      assert.ok(blob);
      assert.ok(Buffer.from(await blob.arrayBuffer()).equals(BIG));
    });
  });

  it("CDN ranges: a-b, a-, -n, 416, If-Range", T, async () => {
    await withHub({}, async (hub) => {
      const loc = await cdnLocation(hub);
      const n = BIG.length;
      for (const [range, start, end] of [
        ["bytes=0-99", 0, 99],
        ["bytes=299990-", 299990, n - 1],
        ["bytes=-10", n - 10, n - 1],
        ["bytes=100-999999", 100, n - 1],
      ] as const) {
        const r = await get(loc, { headers: { range } });
        assert.equal(r.status, 206, range);
        assert.equal(r.headers["content-range"], `bytes ${start}-${end}/${n}`);
        assert.equal(r.headers["content-length"], String(end - start + 1));
        assert.ok(r.body.equals(BIG.subarray(start, end + 1)));
      }
      const bad = await get(loc, { headers: { range: `bytes=${n}-` } });
      assert.equal(bad.status, 416);
      assert.equal(bad.headers["content-range"], `bytes */${n}`);
      const stale = await get(loc, { headers: { range: "bytes=0-9", "if-range": '"other"' } });
      assert.equal(stale.status, 200);
      const fresh = await get(loc, { headers: { range: "bytes=0-9", "if-range": `"${BIG_SHA}"` } });
      assert.equal(fresh.status, 206);
      const log = hub.log.filter((e) => e.server === "cdn");
      assert.equal(log[0]?.range, "bytes=0-99");
      assert.equal(log[0]?.status, 206);
      assert.equal(log[0]?.bytesSent, 100);
      assert.equal(log[0]?.authorization, "none");
    });
  });

  it("CDN: tampered signature and expired URL are 403", T, async () => {
    await withHub({ cdnUrlTtlMs: 150 }, async (hub) => {
      const loc = await cdnLocation(hub);
      const tampered = loc.replace(/sig=([0-9a-f])/, (_m, c: string) => `sig=${c === "0" ? "1" : "0"}`);
      const t = await get(tampered);
      assert.equal(t.status, 403);
      assert.match(t.body.toString(), /<Code>AccessDenied<\/Code>/);
      const u = new URL(loc);
      u.searchParams.set("expires", String(Number(u.searchParams.get("expires")) + 100000));
      assert.equal((await get(u.toString())).status, 403);
      assert.equal((await get(`${hub.cdnUrl}/lfs/${BIG_SHA}`)).status, 403);
      assert.equal((await get(loc, { headers: { range: "bytes=0-0" } })).status, 206);
      await new Promise((r) => setTimeout(r, 250));
      const expired = await get(loc);
      assert.equal(expired.status, 403);
      assert.match(expired.body.toString(), /expired/);
      const again = await get(await cdnLocation(hub));
      assert.equal(again.status, 200);
    });
  });

  it("URL-encoded path segments and odd revisions", T, async () => {
    const path = "sub dir/ünï #1?.txt";
    const repo = makeRepo("org/odd", [fileFromBuffer(path, NOTES)]);
    const hub = await startFakeHub({ repos: [repo] });
    try {
      const enc = path.split("/").map(encodeURIComponent).join("/");
      const r = await get(`${hub.url}/org/odd/resolve/main/${enc}`);
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(NOTES));
      const tree = json(
        await get(`${hub.url}/api/models/org/odd/tree/main/${encodeURIComponent("sub dir")}`),
      );
      assert.deepEqual(
        (tree as Array<{ path: string }>).map((e) => e.path),
        [path],
      );
      const rev = await get(`${hub.url}/api/models/org/odd/revision/${encodeURIComponent("brånch/ü")}`);
      assert.equal(rev.status, 404);
      assert.equal(rev.headers["x-error-code"], "RevisionNotFound");
    } finally {
      await hub.close();
    }
  });

  it("cdnBaseUrl: redirects to an external server by sha256", T, async () => {
    await withHub({ cdnBaseUrl: "http://127.0.0.1:9/blobs/" }, async (hub) => {
      assert.equal(await cdnLocation(hub), `http://127.0.0.1:9/blobs/${BIG_SHA}`);
    });
  });

  it("serves a 2 GiB on-disk file by range without reading it whole", T, async () => {
    const dir = await mkdtemp(join(tmpdir(), "fakehub-"));
    try {
      const p = join(dir, "huge.bin");
      await writeFile(p, "");
      const size = 2 * 1024 * 1024 * 1024;
      await truncate(p, size); // sparse: zeros
      const sha = createHash("sha256").update("not the real hash of 2 GiB of zeros").digest("hex");
      const file = await fileFromDisk("huge.bin", p, { lfs: true, sha256: sha });
      const hub = await startFakeHub({ repos: [makeRepo("org/huge", [file])] });
      try {
        const r = await get(`${hub.url}/org/huge/resolve/main/huge.bin`);
        assert.equal(r.headers["x-linked-size"], String(size));
        const loc = String(r.headers.location);
        const tail = await get(loc, { headers: { range: `bytes=${size - 1000}-` } });
        assert.equal(tail.status, 206);
        assert.equal(tail.headers["content-range"], `bytes ${size - 1000}-${size - 1}/${size}`);
        assert.ok(tail.body.equals(Buffer.alloc(1000)));
        const mid = await get(loc, { headers: { range: "bytes=1073741824-1082130431" } });
        assert.equal(mid.body.length, 8 * 1024 * 1024);
        // A full GET streams: read 4 MiB of it and hang up.
        const full = await request(loc, { signal: AbortSignal.timeout(5000) });
        assert.equal(full.headers["content-length"], String(size));
        let got = 0;
        for await (const c of full.body) {
          got += (c as Buffer).length;
          if (got > 4 * 1024 * 1024) break;
        }
        assert.ok(got > 4 * 1024 * 1024);
      } finally {
        await hub.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("fakehub faults", () => {
  it("status: 500 then 429 with Retry-After, limited by times", T, async () => {
    await withHub({}, async (hub) => {
      hub.faults.push(
        { server: "hub", pathIncludes: "/revision/", times: 1, fault: { type: "status", status: 500 } },
        {
          pathIncludes: "/revision/",
          times: 1,
          fault: { type: "status", status: 429, headers: { "retry-after": "1" } },
        },
      );
      const url = `${hub.url}/api/models/org/model/revision/main`;
      assert.equal((await get(url)).status, 500);
      const r429 = await get(url);
      assert.equal(r429.status, 429);
      assert.equal(r429.headers["retry-after"], "1");
      assert.equal((await get(url)).status, 200);
      assert.equal(hub.faults[0]?.times, 0);
      assert.deepEqual(
        hub.log.map((e) => e.status),
        [500, 429, 200],
      );
    });
  });

  it("matches on server, method and pathIncludes", T, async () => {
    await withHub({}, async (hub) => {
      hub.faults.push({ server: "cdn", method: "HEAD", fault: { type: "status", status: 503 } });
      const loc = await cdnLocation(hub);
      assert.equal((await get(loc, { method: "HEAD" })).status, 503);
      assert.equal((await get(loc, { headers: { range: "bytes=0-0" } })).status, 206);
      assert.equal(
        (await get(`${hub.url}/org/model/resolve/main/config.json`, { method: "HEAD" })).status,
        200,
      );
      hub.faults = [{ pathIncludes: "config.json", fault: { type: "status", status: 502 } }];
      assert.equal((await get(`${hub.url}/org/model/resolve/main/config.json`)).status, 502);
      assert.equal((await get(`${hub.url}/api/models/org/model/revision/main`)).status, 200);
    });
  });

  it("probability is reproducible per seed", T, async () => {
    const run = async (): Promise<number[]> => {
      const statuses: number[] = [];
      await withHub({}, async (hub) => {
        hub.faults.push({ probability: 0.5, seed: 42, fault: { type: "status", status: 500 } });
        for (let i = 0; i < 20; i++) {
          statuses.push((await get(`${hub.url}/api/models/org/model/revision/main`)).status);
        }
      });
      return statuses;
    };
    const a = await run();
    assert.deepEqual(await run(), a);
    assert.ok(a.includes(500) && a.includes(200), a.join());
  });

  it("drop: exactly afterBytes body bytes, then the socket closes", T, async () => {
    await withHub({}, async (hub) => {
      const loc = await cdnLocation(hub);
      hub.faults.push({ server: "cdn", times: 2, fault: { type: "drop", afterBytes: 70_001 } });
      const r = await rawGet(loc, { Range: "bytes=1000-" });
      assert.match(r.head, /^HTTP\/1\.1 206 /);
      assert.equal(headerOf(r.head, "content-length"), String(BIG.length - 1000));
      assert.equal(r.body.length, 70_001);
      assert.ok(r.body.equals(BIG.subarray(1000, 71_001)));
      assert.ok(r.closedByServer);
      // Through undici: a premature close error.
      await assert.rejects(async () => get(loc));
      hub.faults = [{ server: "cdn", fault: { type: "drop", afterBytes: 0 } }];
      const zero = await rawGet(loc);
      assert.match(zero.head, /^HTTP\/1\.1 200 /);
      assert.equal(zero.body.length, 0);
      assert.ok(zero.closedByServer);
      const entry = hub.log.at(-1);
      assert.equal(entry?.status, 200);
      assert.equal(entry?.bytesSent, 0);
    });
  });

  it("stall: with ms it resumes; without, it sends afterBytes then silence until close()", T, async () => {
    const hub = await startFakeHub({ repos: [modelRepo()] });
    let closed = false;
    try {
      const loc = await cdnLocation(hub);
      hub.faults.push({ server: "cdn", times: 1, fault: { type: "stall", afterBytes: 100, ms: 300 } });
      const t0 = Date.now();
      const r = await get(loc);
      assert.ok(Date.now() - t0 >= 280);
      assert.ok(r.body.equals(BIG));
      hub.faults.push({ server: "cdn", times: 1, fault: { type: "stall", afterBytes: 5000 } });
      const stalled = await rawGet(loc, {}, 400);
      assert.equal(stalled.body.length, 5000);
      assert.ok(!stalled.closedByServer);
      // A stalled response held open by a client must not make close() hang.
      hub.faults.push({ server: "cdn", times: 1, fault: { type: "stall", afterBytes: 10 } });
      const res = await request(loc, { signal: AbortSignal.timeout(10_000) });
      assert.equal(res.statusCode, 200);
      const t1 = Date.now();
      await hub.close();
      closed = true;
      assert.ok(Date.now() - t1 < 2000);
      await assert.rejects(res.body.arrayBuffer());
    } finally {
      if (!closed) await hub.close();
    }
  });

  it("ignoreRange: 200 with the full body", T, async () => {
    await withHub({}, async (hub) => {
      hub.faults.push({ server: "cdn", fault: { type: "ignoreRange" } });
      const r = await get(await cdnLocation(hub), { headers: { range: "bytes=10-19" } });
      assert.equal(r.status, 200);
      assert.equal(r.headers["content-range"], undefined);
      assert.ok(r.body.equals(BIG));
    });
  });

  it("wrongContentRange: 206 for shifted offsets", T, async () => {
    await withHub({}, async (hub) => {
      hub.faults.push({ server: "cdn", fault: { type: "wrongContentRange", shift: 100 } });
      const r = await get(await cdnLocation(hub), { headers: { range: "bytes=0-99" } });
      assert.equal(r.status, 206);
      assert.equal(r.headers["content-range"], `bytes 100-199/${BIG.length}`);
      assert.ok(r.body.equals(BIG.subarray(100, 200)));
    });
  });

  it("corrupt: same length and headers, some bytes flipped", T, async () => {
    await withHub({}, async (hub) => {
      const loc = await cdnLocation(hub);
      hub.faults.push({ server: "cdn", fault: { type: "corrupt" } });
      const r = await get(loc, { headers: { range: "bytes=1000-" } });
      assert.equal(r.status, 206);
      assert.equal(r.headers.etag, `"${BIG_SHA}"`);
      const want = BIG.subarray(1000);
      assert.equal(r.body.length, want.length);
      let diff = 0;
      for (let i = 0; i < want.length; i++) if (r.body[i] !== want[i]) diff++;
      assert.equal(diff, Math.ceil(want.length / 65536));
      assert.notEqual(r.body[0], want[0]);
      hub.faults = [{ server: "hub", fault: { type: "corrupt" } }];
      const c = await get(`${hub.url}/org/model/resolve/main/config.json`);
      assert.equal(c.body.length, SMALL.length);
      assert.ok(!c.body.equals(SMALL));
    });
  });

  it("extraBytes: more bytes than Content-Length, or chunked past the size", T, async () => {
    await withHub({}, async (hub) => {
      const loc = await cdnLocation(hub);
      hub.faults.push({ server: "cdn", times: 1, fault: { type: "extraBytes", count: 7 } });
      const r = await rawGet(loc, { Range: "bytes=0-99" });
      assert.equal(headerOf(r.head, "content-length"), "100");
      assert.equal(r.body.length, 107);
      assert.ok(r.body.subarray(0, 100).equals(BIG.subarray(0, 100)));
      assert.ok(r.closedByServer);
      hub.faults.push({ server: "hub", times: 1, fault: { type: "extraBytes", count: 5, chunked: true } });
      const c = await get(`${hub.url}/org/model/resolve/main/config.json`);
      assert.equal(c.status, 200);
      assert.equal(c.headers["content-length"], undefined);
      assert.equal(c.body.length, SMALL.length + 5);
      assert.ok(c.body.subarray(0, SMALL.length).equals(SMALL));
    });
  });

  it("changeContent: different bytes and ETag on CDN and hub", T, async () => {
    await withHub({}, async (hub) => {
      const loc = await cdnLocation(hub);
      hub.faults.push({ fault: { type: "changeContent" } });
      const r = await get(loc, { headers: { range: "bytes=0-999" } });
      assert.equal(r.status, 206);
      assert.match(String(r.headers.etag), /^"[0-9a-f]{64}"$/);
      assert.notEqual(r.headers.etag, `"${BIG_SHA}"`);
      assert.ok(r.body.equals(Buffer.from(BIG.subarray(0, 1000).map((b) => b ^ 0xff))));
      const reg = await get(`${hub.url}/org/model/resolve/main/config.json`);
      assert.match(String(reg.headers.etag), /^"[0-9a-f]{40}"$/);
      assert.notEqual(reg.headers.etag, `"${gitBlobSha1(SMALL)}"`);
      assert.equal(reg.body.length, SMALL.length);
      assert.ok(!reg.body.equals(SMALL));
      const lfs = await get(`${hub.url}/org/model/resolve/main/model.safetensors`);
      assert.equal(lfs.status, 302);
      assert.notEqual(lfs.headers["x-linked-etag"], `"${BIG_SHA}"`);
    });
  });

  it("throttle: paces the body", T, async () => {
    await withHub({}, async (hub) => {
      const loc = await cdnLocation(hub);
      hub.faults.push({ server: "cdn", fault: { type: "throttle", bytesPerSec: 100_000 } });
      const t0 = Date.now();
      const r = await get(loc, { headers: { range: "bytes=0-49999" } });
      const elapsed = Date.now() - t0;
      assert.ok(r.body.equals(BIG.subarray(0, 50_000)));
      assert.ok(elapsed >= 400 && elapsed < 5000, String(elapsed));
    });
  });

  it("redirect: any status and location", T, async () => {
    await withHub({}, async (hub) => {
      const url = `${hub.url}/org/model/resolve/main/config.json`;
      hub.faults.push({ times: 1, fault: { type: "redirect", location: url } });
      hub.faults.push({
        times: 1,
        fault: { type: "redirect", location: "ftp://example.com/x", status: 307 },
      });
      const loop = await get(url);
      assert.equal(loop.status, 302);
      assert.equal(loop.headers.location, url);
      const ftp = await get(url);
      assert.equal(ftp.status, 307);
      assert.equal(ftp.headers.location, "ftp://example.com/x");
    });
  });

  it("body: raw malformed JSON", T, async () => {
    await withHub({}, async (hub) => {
      hub.faults.push({ pathIncludes: "/tree/", fault: { type: "body", body: '[{"type":"file",' } });
      const r = await get(`${hub.url}/api/models/org/model/tree/main`);
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), '[{"type":"file",');
      assert.throws(() => json(r));
      hub.faults = [
        { fault: { type: "body", status: 503, contentType: "text/html", body: "<html>busy</html>" } },
      ];
      const h = await get(`${hub.url}/api/models/org/model/tree/main`);
      assert.equal(h.status, 503);
      assert.equal(h.headers["content-type"], "text/html");
    });
  });

  it("hugeBody: streams never-closed JSON of the given size", T, async () => {
    await withHub({}, async (hub) => {
      hub.faults.push({ fault: { type: "hugeBody", bytes: 3_000_001 } });
      const r = await get(`${hub.url}/api/models/org/model/tree/main?recursive=true`);
      assert.equal(r.status, 200);
      assert.equal(r.body.length, 3_000_001);
      assert.equal(r.body.subarray(0, 2).toString(), "[{");
      assert.throws(() => json(r));
    });
  });

  it("latencyMs delays hub answers only", T, async () => {
    await withHub({ latencyMs: 200 }, async (hub) => {
      let t0 = Date.now();
      const loc = await cdnLocation(hub);
      assert.ok(Date.now() - t0 >= 190);
      t0 = Date.now();
      await get(loc, { headers: { range: "bytes=0-0" } });
      assert.ok(Date.now() - t0 < 190);
    });
  });
});

describe("fakehub log", () => {
  it(
    "records server, method, url, range, authorization, status, bytes, host; clearLog empties it",
    T,
    async () => {
      await withHub({}, async (hub) => {
        const loc = await cdnLocation(hub);
        await get(loc, { headers: { range: "bytes=0-9", ...auth } });
        await get(`${hub.url}/api/models/org/model/revision/main`, {
          headers: { authorization: "Bearer x" },
        });
        const [a, b, c] = hub.log;
        assert.equal(a?.server, "hub");
        assert.equal(a?.url, "/org/model/resolve/main/model.safetensors");
        assert.equal(a?.status, 302);
        assert.equal(b?.server, "cdn");
        assert.equal(b?.authorization, "token");
        assert.equal(b?.range, "bytes=0-9");
        assert.equal(b?.bytesSent, 10);
        assert.equal(b?.host, new URL(hub.cdnUrl).host);
        assert.equal(c?.authorization, "other");
        assert.equal(c?.method, "GET");
        assert.ok((a?.time ?? 0) <= (b?.time ?? 0));
        hub.clearLog();
        assert.equal(hub.log.length, 0);
      });
    },
  );

  it("close() is idempotent and ends kept-alive connections", T, async () => {
    const hub = await startFakeHub({ repos: [modelRepo()] });
    await get(`${hub.url}/api/models/org/model/revision/main`);
    await Promise.all([hub.close(), hub.close()]);
    await assert.rejects(get(`${hub.url}/api/models/org/model/revision/main`));
  });
});
