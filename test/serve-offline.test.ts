/**
 * `hfget serve` answering the hub API from disk (upstream killed, or `--offline`) as the upstream did:
 * tree pages with next-links to the server itself, folder oids that are git's, and the repo info
 * (private, gated, lastModified, ...) the upstream gave. Real clients: huggingface_hub 1.28 and 0.36,
 * @huggingface/hub; folder oids checked against git itself.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { listFiles } from "@huggingface/hub";
import { writeTree } from "../src/cache/tree-cache.js";
import { createDispatcher } from "../src/hub/http.js";
import { MEMO_DIR, treeOids } from "../src/serve/memo.js";
import { type ServeHandle, type ServeOptions, startServer } from "../src/serve/server.js";
import { fileFromBuffer, makeRepo, randomBytesSeeded, startFakeHub, TEST_TOKEN } from "./fakehub/index.js";
import { cleanEnv, repoCacheDir, show, tempDir, waitFor } from "./helpers.js";
import { HH_VERSIONS, runPython, skipWithoutPython } from "./pyclient.js";

test("treeOids: folder oids equal git's own (write-tree), names in git order", () => {
  const dir = tempDir();
  const names = [
    "a.b",
    "a-b",
    "a/x.txt",
    "a/deep/y.json",
    "a/deep/z",
    "a0",
    "b c.txt",
    "Z",
    "weights/model.safetensors",
    "weights/part-2.bin",
    "w/é.txt",
  ];
  for (const [i, n] of names.entries()) {
    mkdirSync(join(dir, ...n.split("/").slice(0, -1)), { recursive: true });
    writeFileSync(join(dir, ...n.split("/")), `content ${i} of ${n}\n`);
  }
  const git = (...args: string[]) =>
    execFileSync("git", args, {
      cwd: dir,
      encoding: "utf8",
      env: { ...process.env, GIT_CONFIG_NOSYSTEM: "1", HOME: dir },
    });
  git("init", "-q");
  git("add", "-A");
  const root = git("write-tree").trim();
  const blobs = new Map<string, string>();
  const trees = new Map<string, string>([["", root]]);
  for (const line of git("ls-tree", "-r", "-t", "-z", root).split("\0").filter(Boolean)) {
    const m = /^(\d+) (blob|tree) ([0-9a-f]{40})\t(.*)$/s.exec(line);
    assert.ok(m, line);
    (m[2] === "blob" ? blobs : trees).set(m[4] ?? "", m[3] ?? "");
  }
  assert.equal(blobs.size, names.length);
  const computed = treeOids(blobs);
  assert.deepEqual(new Map([...computed].sort()), new Map([...trees].sort()));
});

const FILES: [string, Buffer, boolean][] = [
  ["README.md", Buffer.from("# nested\n"), false],
  ["a.b", Buffer.from("a dot b\n"), false],
  ["a-b", Buffer.from("a dash b\n"), false],
  ["a/x.txt", Buffer.from("x\n".repeat(40)), false],
  ["a/deep/y.json", Buffer.from('{"y": 1}\n'), false],
  ["a/deep/z.bin", randomBytesSeeded(71, 50_000), true],
  ["a0.txt", Buffer.from("a zero\n"), false],
  ["weights/model.safetensors", randomBytesSeeded(72, 200_000), true],
  ["weights/part-2.bin", randomBytesSeeded(73, 10_000), true],
];
const PAGE = 3;

/** Every entry of a tree as [type, path, oid, size, lfs sha256 | null]: what the clients compare. */
type Row = [string, string, string | null, number, string | null];

const PY_TREE = `
import json, sys
from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoFile
a = json.loads(sys.argv[1])
api = HfApi()
def rows(it):
    out = []
    for f in it:
        if isinstance(f, RepoFile):
            out.append(["file", f.path, f.blob_id, f.size, f.lfs["sha256"] if f.lfs else None])
        else:
            out.append(["directory", f.path, f.tree_id, 0, None])
    return out
res = {
    "tree": rows(api.list_repo_tree(a["repo"], recursive=True)),
    "top": rows(api.list_repo_tree(a["repo"])),
    "sub": rows(api.list_repo_tree(a["repo"], path_in_repo="a/deep", recursive=True)),
    "expanded": len(list(api.list_repo_tree(a["repo"], recursive=True, expand=True))),
    "infos": {},
}
for rid, tok in a["infos"]:
    i = api.model_info(rid, token=tok if tok else False)
    res["infos"][rid] = {"private": i.private, "gated": i.gated, "sha": i.sha,
        "lastModified": i.last_modified.timestamp() if i.last_modified else None}
print("RESULT " + json.dumps(res), flush=True)
`;

const PY_ONLINE = `
import json, sys
from huggingface_hub import HfApi, hf_hub_download
a = json.loads(sys.argv[1])
api = HfApi()
api.model_info(a["repo"], token=False)
hf_hub_download(a["repo"], "a/x.txt", token=False)
api.model_info(a["secret"], token=a["token"])
hf_hub_download(a["secret"], "config.json", token=a["token"])
api.model_info(a["gated"], token=a["token"])
hf_hub_download(a["gated"], "w.bin", token=a["token"])
print("RESULT ok", flush=True)
`;

const PY_SCAN = `
from huggingface_hub import scan_cache_dir
import json, sys
info = scan_cache_dir(sys.argv[1])
print("RESULT " + json.dumps({"warnings": [str(w) for w in info.warnings],
    "repos": sorted(r.repo_id for r in info.repos)}), flush=True)
`;

function pyResult(r: { stdout: string }): unknown {
  const line = r.stdout.split("\n").find((l) => l.startsWith("RESULT "));
  assert.ok(line, `no RESULT line in ${r.stdout}`);
  return JSON.parse(line.slice("RESULT ".length));
}

function rowsOf(entries: readonly Record<string, unknown>[]): Row[] {
  return entries.map((e) => [
    String(e.type),
    String(e.path),
    (e.oid as string | null) ?? null,
    Number(e.size),
    ((e.lfs as { oid?: string } | undefined)?.oid as string | undefined) ?? null,
  ]);
}

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function startWith(extra: Partial<ServeOptions> & Pick<ServeOptions, "upstreams" | "cacheDir">) {
  const dispatcher = createDispatcher({ timeoutMs: 5_000 });
  const srv: ServeHandle = await startServer({
    host: "127.0.0.1",
    port: 0,
    offline: false,
    revalidateMs: 60_000,
    engine: { connections: 4, maxFiles: 4, chunkSize: 1 << 20, retries: 0, timeoutMs: 5_000 },
    dispatcher,
    log: () => {},
    treePageSize: PAGE,
    ...extra,
  });
  return {
    srv,
    close: async () => {
      await srv.close(1000);
      await dispatcher.destroy();
    },
  };
}

test("upstream killed, then --offline: huggingface_hub 1.28/0.36 list_repo_tree (pages of 3, nested folders) and model_info, @huggingface/hub listFiles, as the upstream answered", {
  skip: skipWithoutPython(),
}, async () => {
  const nested = makeRepo(
    "org/nested",
    FILES.map(([p, b, lfs]) => fileFromBuffer(p, b, { lfs })),
  );
  const secret = makeRepo(
    "org/secret",
    [
      fileFromBuffer("config.json", Buffer.from('{"s": 1}\n')),
      fileFromBuffer("sub/s.txt", Buffer.from("s\n")),
    ],
    { private: true },
  );
  const gated = makeRepo(
    "org/gated",
    [fileFromBuffer("w.bin", randomBytesSeeded(74, 9_000), { lfs: true })],
    {
      gated: true,
    },
  );
  const dates = ["2026-03-04T05:06:07.000Z", "2025-11-12T13:14:15.000Z", "2024-01-02T03:04:05.000Z"];
  for (const [i, r] of [nested, secret, gated].entries()) {
    const c = r.commits[0];
    const d = dates[i];
    if (c && d) c.date = d;
  }
  const commitOf = (r: typeof nested) => r.commits[0]?.sha ?? "";
  const hub = await startFakeHub({ repos: [nested, secret, gated], pageSize: PAGE });
  const cacheDir = tempDir();
  const auth = { authorization: `Bearer ${TEST_TOKEN}` };
  // What the upstream says, asked directly: the truth every answer from disk is held to.
  const truth = async (path: string, recursive: boolean) =>
    rowsOf(
      (await all(listFiles({ repo: "org/nested", hubUrl: hub.url, path, recursive }))) as unknown as Record<
        string,
        unknown
      >[],
    );
  const want = {
    tree: await truth("", true),
    top: await truth("", false),
    sub: await truth("a/deep", true),
  };
  const wantInfo: Record<string, unknown> = {};
  const wantIds: Record<string, string> = {};
  for (const r of [nested, secret, gated]) {
    const j = (await (await fetch(`${hub.url}/api/models/${r.id}`, { headers: auth })).json()) as {
      private: boolean;
      gated: boolean | string;
      lastModified: string;
      sha: string;
      _id: string;
    };
    wantIds[r.id] = j._id;
    wantInfo[r.id] = {
      private: j.private,
      gated: j.gated,
      sha: j.sha,
      lastModified: Date.parse(j.lastModified) / 1000,
    };
  }
  assert.equal(want.tree.length, FILES.length + 3, "9 files and folders a, a/deep, weights");
  assert.ok(want.tree.filter((r) => r[0] === "directory").every((r) => /^[0-9a-f]{40}$/.test(r[2] ?? "")));
  assert.deepEqual((wantInfo["org/secret"] as { private: boolean }).private, true);
  assert.deepEqual((wantInfo["org/gated"] as { gated: string }).gated, "auto");

  const online = await startWith({ upstreams: [hub.url], cacheDir, token: TEST_TOKEN });
  try {
    const py = cleanEnv({
      HF_ENDPOINT: online.srv.url,
      HF_HUB_CACHE: tempDir(),
      HF_HUB_DISABLE_PROGRESS_BARS: "1",
      HF_HUB_DISABLE_XET: "1",
    });
    // A first pass online: infos and one file only (no tree asked): the server keeps the listing itself.
    const r = await runPython(
      "1.28",
      PY_ONLINE,
      [JSON.stringify({ repo: "org/nested", secret: "org/secret", gated: "org/gated", token: TEST_TOKEN })],
      { env: py, timeoutMs: 60_000 },
    );
    assert.equal(r.code, 0, show(r));
    for (const repo of [nested, secret, gated]) {
      const memo = join(
        repoCacheDir(cacheDir, "model", repo.id),
        MEMO_DIR,
        "listing",
        `${commitOf(repo)}.json`,
      );
      await waitFor(() => existsSync(memo), 20_000, `the listing of ${repo.id} kept on disk`);
    }
    await hub.close(); // the upstream is gone from here on

    // Same process, upstream down: tree queries never asked before are answered from disk.
    for (const v of HH_VERSIONS) {
      const t = await runPython(
        v,
        PY_TREE,
        [JSON.stringify({ repo: "org/nested", infos: [["org/nested", null]] })],
        {
          env: { ...py, HF_HUB_CACHE: tempDir() },
          timeoutMs: 60_000,
        },
      );
      assert.equal(t.code, 0, `${v}: ${show(t)}`);
      const out = pyResult(t) as typeof want & { expanded: number; infos: Record<string, unknown> };
      assert.deepEqual(out.tree, want.tree, `${v}: recursive tree, upstream down`);
      assert.deepEqual(out.top, want.top, `${v}: top level, upstream down`);
      assert.deepEqual(out.sub, want.sub, `${v}: a/deep, upstream down`);
      assert.equal(out.expanded, want.tree.length, v);
      assert.deepEqual(out.infos["org/nested"], wantInfo["org/nested"], `${v}: model_info, upstream down`);
    }
    const js = rowsOf(
      (await all(
        listFiles({ repo: "org/nested", hubUrl: online.srv.url, recursive: true }),
      )) as unknown as Record<string, unknown>[],
    );
    assert.deepEqual(js, want.tree, "@huggingface/hub listFiles, upstream down");

    // The access rule holds with the upstream down: the private repo on disk is not listed, described
    // or served to a client the upstream never confirmed (none, or a token never seen).
    for (const who of [{}, { authorization: "Bearer hf_never_seen" }] as Record<string, string>[]) {
      for (const path of [
        "/api/models/org/secret",
        `/api/models/org/secret/revision/${commitOf(secret)}`,
        "/api/models/org/secret/tree/main?recursive=true",
        `/api/models/org/secret/tree/${commitOf(secret)}/sub`,
      ]) {
        const res = await fetch(`${online.srv.url}${path}`, { headers: who });
        const body = await res.text();
        assert.ok(res.status >= 400, `${path} as ${JSON.stringify(who)}: ${res.status} ${body}`);
        assert.doesNotMatch(body, /config\.json|s\.txt|"private"/, path);
      }
      const f = await fetch(`${online.srv.url}/org/secret/resolve/main/config.json`, { headers: who });
      assert.equal(f.status, who.authorization ? 403 : 401, JSON.stringify(who));
      await f.arrayBuffer();
    }
    // The token the upstream accepted minutes ago still reads the file it was granted.
    const granted = await fetch(`${online.srv.url}/org/secret/resolve/main/config.json`, { headers: auth });
    assert.equal(granted.status, 200);
    assert.equal(await granted.text(), '{"s": 1}\n');
  } finally {
    await online.close();
    await hub.close();
  }

  // A fresh --offline process on that cache: nothing in memory, everything from disk.
  const off = await startWith({ upstreams: ["http://127.0.0.1:9"], cacheDir, offline: true });
  try {
    const py = cleanEnv({
      HF_ENDPOINT: off.srv.url,
      HF_HUB_DISABLE_PROGRESS_BARS: "1",
      HF_HUB_DISABLE_XET: "1",
    });
    for (const v of HH_VERSIONS) {
      // Only the public repo: --offline serves what the upstream said is private or gated to no one
      // (checked below), unless --access-tokens restricts the server (the server after this one).
      const infos = [["org/nested", null]];
      const t = await runPython(v, PY_TREE, [JSON.stringify({ repo: "org/nested", infos })], {
        env: { ...py, HF_HUB_CACHE: tempDir() },
        timeoutMs: 60_000,
      });
      assert.equal(t.code, 0, `${v}: ${show(t)}`);
      const out = pyResult(t) as typeof want & { expanded: number; infos: Record<string, unknown> };
      assert.deepEqual(out.tree, want.tree, `${v}: recursive tree, --offline`);
      assert.deepEqual(out.top, want.top, `${v}: top level, --offline`);
      assert.deepEqual(out.sub, want.sub, `${v}: a/deep, --offline`);
      assert.deepEqual(
        out.infos,
        { "org/nested": wantInfo["org/nested"] },
        `${v}: model_info private/gated/lastModified/sha, --offline`,
      );
    }
    // No one can be confirmed offline: the private and gated repos are refused, token or not.
    for (const path of [
      "/api/models/org/secret",
      "/api/models/org/gated/revision/main",
      "/api/models/org/gated/tree/main",
      "/org/secret/resolve/main/config.json",
      "/org/gated/resolve/main/w.bin",
    ]) {
      for (const headers of [{}, auth]) {
        const res = await fetch(`${off.srv.url}${path}`, { headers });
        const body = await res.text();
        assert.equal(res.status, "authorization" in headers ? 403 : 401, `${path}: ${body}`);
        assert.equal(res.headers.get("x-error-code"), "GatedRepo", path);
        assert.match(body, /gated or private upstream.*--access-tokens/, path);
        assert.doesNotMatch(body, /config\.json"|w\.bin"|"private"/, path);
      }
    }
    const js = rowsOf(
      (await all(
        listFiles({ repo: "org/nested", hubUrl: off.srv.url, recursive: true }),
      )) as unknown as Record<string, unknown>[],
    );
    assert.deepEqual(js, want.tree, "@huggingface/hub listFiles, --offline");
    // Pages of 3, each next-link at the server itself, the last without one.
    let url: string | undefined = `${off.srv.url}/api/models/org/nested/tree/main?recursive=true`;
    const pages: number[] = [];
    while (url !== undefined && pages.length < 20) {
      const res = await fetch(url);
      assert.equal(res.status, 200, url);
      pages.push(((await res.json()) as unknown[]).length);
      const link = res.headers.get("link");
      url = link ? /<([^>]*)>;\s*rel="next"/.exec(link)?.[1] : undefined;
      if (url !== undefined)
        assert.ok(url.startsWith(`${off.srv.url}/api/models/org/nested/tree/main?`), url);
    }
    assert.deepEqual(pages, [3, 3, 3, 3]);
    const limited = await fetch(`${off.srv.url}/api/models/org/nested/tree/main?recursive=true&limit=2`);
    assert.equal(((await limited.json()) as unknown[]).length, 2, "limit below the page size");
    const expand = await fetch(`${off.srv.url}/api/models/org/nested?expand[]=lastModified&expand[]=private`);
    assert.deepEqual(await expand.json(), {
      _id: wantIds["org/nested"],
      id: "org/nested",
      lastModified: dates[0],
      private: false,
    });

    // Without the listing on disk the snapshot holds only a/x.txt: that file, and folder a with
    // no oid (it cannot be known from a part of the commit), flagged partial.
    rmSync(join(repoCacheDir(cacheDir, "model", "org/nested"), MEMO_DIR, "listing"), { recursive: true });
    const part = await fetch(`${off.srv.url}/api/models/org/nested/tree/main?recursive=true`);
    assert.equal(part.headers.get("x-hfget-listing"), "partial");
    assert.deepEqual(rowsOf((await part.json()) as Record<string, unknown>[]), [
      ["directory", "a", null, 0, null],
      want.tree.find((r) => r[1] === "a/x.txt"),
    ]);
    // With trees/<commit>.json instead (as hfget writes after a whole-repo download): folder oids
    // computed from the entries, equal to the upstream's real git tree oids.
    await writeTree(
      repoCacheDir(cacheDir, "model", "org/nested"),
      commitOf(nested),
      want.tree
        .filter((r) => r[0] === "file")
        .map(([, path, oid, size, sha256]) => ({
          path,
          size,
          gitOid: oid ?? "",
          ...(sha256 ? { lfs: { sha256 } } : {}),
        })),
    );
    const computed = await all(listFiles({ repo: "org/nested", hubUrl: off.srv.url, recursive: true }));
    assert.deepEqual(
      rowsOf(computed as unknown as Record<string, unknown>[]),
      want.tree,
      "folder oids computed from trees/<commit>.json",
    );
  } finally {
    await off.close();
  }

  // --offline with --access-tokens: the admin vouched for the listed clients, who get the private and
  // gated repos' infos as the upstream gave them (and the files); others get 401.
  const vouched = await startWith({
    upstreams: ["http://127.0.0.1:9"],
    cacheDir,
    offline: true,
    accessTokens: new Set([TEST_TOKEN]),
  });
  try {
    const py = cleanEnv({
      HF_ENDPOINT: vouched.srv.url,
      HF_TOKEN: TEST_TOKEN,
      HF_HUB_CACHE: tempDir(),
      HF_HUB_DISABLE_PROGRESS_BARS: "1",
      HF_HUB_DISABLE_XET: "1",
    });
    const infos = Object.keys(wantInfo).map((id) => [id, TEST_TOKEN]);
    const t = await runPython("1.28", PY_TREE, [JSON.stringify({ repo: "org/nested", infos })], {
      env: py,
      timeoutMs: 60_000,
    });
    assert.equal(t.code, 0, show(t));
    assert.deepEqual((pyResult(t) as { infos: unknown }).infos, wantInfo, "--offline --access-tokens: infos");
    const file = await fetch(`${vouched.srv.url}/org/gated/resolve/main/w.bin`, { headers: auth });
    assert.equal(file.status, 200);
    assert.equal((await file.arrayBuffer()).byteLength > 0, true);
    assert.equal((await fetch(`${vouched.srv.url}/api/models/org/nested`)).status, 401, "no listed token");
  } finally {
    await vouched.close();
  }

  // The memo folder is invisible to huggingface_hub's cache scan (both versions): no warnings.
  for (const v of HH_VERSIONS) {
    const s = await runPython(v, PY_SCAN, [cacheDir], { env: cleanEnv(), timeoutMs: 60_000 });
    assert.equal(s.code, 0, show(s));
    assert.deepEqual(pyResult(s), { warnings: [], repos: ["org/gated", "org/nested", "org/secret"] }, v);
  }
});

test("API paths: an encoded slash in a revision or tree path works online and from disk; encoded dot segments, backslashes -> 400", async () => {
  const repo = makeRepo("org/m", [
    fileFromBuffer("a.txt", Buffer.from("a\n")),
    fileFromBuffer("d/e/f.txt", Buffer.from("f\n")),
  ]);
  const commit = repo.commits[0]?.sha ?? "";
  repo.refs["refs/pr/1"] = commit;
  const hub = await startFakeHub({ repos: [repo] });
  const cacheDir = tempDir();
  const online = await startWith({ upstreams: [hub.url], cacheDir });
  const status = async (base: string, path: string): Promise<[number, string]> => {
    const { request } = await import("node:http");
    const u = new URL(base);
    // Raw paths, as sent (fetch would normalize some of them first).
    return new Promise((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path }, (resp) => {
        let body = "";
        resp.setEncoding("utf8").on("data", (d: string) => {
          body += d;
        });
        resp.on("end", () => resolve([resp.statusCode ?? 0, body]));
      });
      req.on("error", reject);
      req.end();
    });
  };
  const bad = [
    "/api/models/org/m/tree/main/..%2F..%2Fx",
    "/api/models/org/m/revision/..%2F..%2F..%2Fetc",
    "/api/models/org/m/tree/main/d%2F.%2Fe",
    "/api/models/org/m/tree/main/a%5cb",
    "/api/models/org/m/tree/main/a%00",
  ];
  try {
    for (const path of bad) assert.equal((await status(online.srv.url, path))[0], 400, path);
    const [s1, b1] = await status(online.srv.url, "/api/models/org/m/revision/refs%2Fpr%2F1");
    assert.equal(s1, 200, b1);
    assert.equal((JSON.parse(b1) as { sha: string }).sha, commit);
    const [s2, b2] = await status(online.srv.url, "/org/m/resolve/refs%2Fpr%2F1/d/e/f.txt");
    assert.equal(s2, 200, b2);
    assert.equal(b2, "f\n");
  } finally {
    await online.close();
    await hub.close();
  }
  const off = await startWith({ upstreams: ["http://127.0.0.1:9"], cacheDir, offline: true });
  try {
    for (const path of bad) assert.equal((await status(off.srv.url, path))[0], 400, path);
    const [s1, b1] = await status(off.srv.url, "/api/models/org/m/revision/refs%2Fpr%2F1");
    assert.equal(s1, 200, b1);
    assert.equal((JSON.parse(b1) as { sha: string }).sha, commit);
    const [s2, b2] = await status(off.srv.url, "/api/models/org/m/tree/refs%2Fpr%2F1/d%2Fe");
    assert.equal(s2, 200, b2);
    assert.deepEqual(
      (JSON.parse(b2) as { path: string }[]).map((e) => e.path),
      ["d/e/f.txt"],
    );
  } finally {
    await off.close();
  }
});
