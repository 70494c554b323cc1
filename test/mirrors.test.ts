// Several endpoints (issue 9): metadata from the first that answers, the token only to listed
// origins, and `hfget mirrors`. Two or three fake hubs on 127.0.0.1 serve the same repo.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { buildConfig } from "../src/config.js";
import { probeMirrors } from "../src/mirrors.js";
import { openSession } from "../src/session.js";
import {
  type FakeHub,
  type FakeRepo,
  fileFromBuffer,
  makeRepo,
  pushCommit,
  randomBytesSeeded,
  startFakeHub,
  TEST_TOKEN,
} from "./fakehub/index.js";
import { cacheProblems, cleanEnv, repoCacheDir, runCli, show, tempDir } from "./helpers.js";

const v1 = [
  fileFromBuffer("config.json", Buffer.from('{"v":1}\n')),
  fileFromBuffer("README.md", Buffer.from("# model\n")),
  fileFromBuffer("model.safetensors", randomBytesSeeded(91, 600_000), { lfs: true }),
];
const v2 = [v1[1]!, v1[2]!, fileFromBuffer("config.json", Buffer.from('{"v":2}\n'))];

/** The up-to-date repo (main at its second commit) and a lagging copy (main at the first). */
function repos(): { fresh: FakeRepo; lagging: FakeRepo; old: string; sha: string } {
  const fresh = makeRepo("org/model", v1);
  const sha = pushCommit(fresh, v2);
  fresh.commits[0]!.date = "2026-01-01T00:00:00.000Z";
  fresh.commits[1]!.date = "2026-11-30T00:00:00.000Z";
  const lagging = makeRepo("org/model", v1);
  lagging.commits[0]!.date = "2026-01-01T00:00:00.000Z";
  return { fresh, lagging, old: lagging.refs.main!, sha };
}

/** A 127.0.0.1 URL where nothing listens (connection refused). */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

function listen(s: Server): Promise<number> {
  return new Promise((r) => s.listen(0, "127.0.0.1", () => r((s.address() as AddressInfo).port)));
}

const api = (hub: FakeHub) => hub.log.filter((e) => e.server === "hub" && e.url.startsWith("/api/"));
/** One per metadata attempt (the listing's first page is asked for beside each, see openSpeculating). */
const revisions = (hub: FakeHub) => api(hub).filter((e) => e.url.includes("/revision/"));
const resolves = (hub: FakeHub) => hub.log.filter((e) => e.server === "hub" && e.url.includes("/resolve/"));

describe("several endpoints: metadata from the first that answers", () => {
  const { fresh, lagging, sha } = repos();
  let a: FakeHub;
  let b: FakeHub;
  let lag: FakeHub;
  let dead: string;
  let dead2: string;
  const gated = makeRepo(
    "org/gated",
    [fileFromBuffer("w.bin", randomBytesSeeded(5, 300_000), { lfs: true })],
    {
      gated: true,
    },
  );
  before(async () => {
    a = await startFakeHub({ repos: [fresh, gated] });
    b = await startFakeHub({ repos: [fresh] });
    lag = await startFakeHub({ repos: [lagging] });
    dead = await deadUrl();
    dead2 = await deadUrl();
  });
  after(async () => {
    await Promise.all([a.close(), b.close(), lag.close()]);
  });
  const reset = () => {
    for (const h of [a, b, lag]) {
      h.clearLog();
      h.faults.length = 0;
    }
  };
  const run = (args: string[], env: Record<string, string | undefined> = {}) => {
    const cache = tempDir();
    return runCli(["org/model", "--cache-dir", cache, "--retries", "1", ...args], {
      env: cleanEnv(env),
      timeoutMs: 40_000,
    }).then((r) => ({ r, cache }));
  };
  const intact = (cache: string, commit: string, files: typeof v1) =>
    cacheProblems(repoCacheDir(cache, "model", "org/model"), commit, files);

  it("the first is down: listing and files from the second, with a notice naming the first", {
    timeout: 60_000,
  }, async () => {
    reset();
    const { r, cache } = await run(["--mirror", `${dead},${a.url}`]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stderr, new RegExp(`set aside ${dead} \\(cannot reach.*; trying ${a.url}`));
    assert.deepEqual(intact(cache, sha, v2), []);
    assert.ok(api(a).length >= 2, "the revision and the listing came from the second");
  });

  it("the first lags (no such commit): the second gives it; the laggard is asked once, fetched from never", {
    timeout: 60_000,
  }, async () => {
    reset();
    const { r, cache } = await run(["--mirror", lag.url, "--mirror", a.url, "--revision", sha]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stderr, new RegExp(`set aside ${lag.url} \\(.*(not found|404)`));
    assert.deepEqual(intact(cache, sha, v2), []);
    assert.deepEqual(
      api(lag).map((e) => e.status),
      [404],
      "one tree request at the sha, answered 404, no retries",
    );
    assert.equal(resolves(lag).length, 0);
  });

  it("a branch only the second has (RevisionNotFound on the first) comes from the second", {
    timeout: 60_000,
  }, async () => {
    reset();
    fresh.refs.dev = sha;
    const { r, cache } = await run(["--mirror", `${lag.url},${a.url}`, "--revision", "dev"]);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(intact(cache, sha, v2), []);
    assert.equal(api(lag)[0]?.status, 404);
  });

  it("the first answers 5xx: set aside after one request (no backoff), the second serves", {
    timeout: 60_000,
  }, async () => {
    reset();
    a.faults.push({
      server: "hub",
      pathIncludes: "/api/",
      times: 100,
      fault: { type: "status", status: 503 },
    });
    const { r, cache } = await run(["--mirror", `${a.url},${b.url}`, "--retries", "3"]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stderr, new RegExp(`set aside ${a.url} \\(.*503`));
    assert.deepEqual(intact(cache, sha, v2), []);
    assert.equal(revisions(a).length, 1, "the first was asked once, not retried while the second answers");
    assert.equal(resolves(a).length, 0);
  });

  it("all down: exit 6, naming what each endpoint answered, within the retry budget", {
    timeout: 60_000,
  }, async () => {
    reset();
    a.faults.push({ server: "hub", pathIncludes: "/api/", fault: { type: "status", status: 500 } });
    const { r } = await run(["--mirror", dead, "--mirror", `${a.url},${dead2}`, "--retries", "2"]);
    assert.equal(r.code, 6, show(r));
    assert.match(r.stderr, /no endpoint answered/);
    for (const ep of [dead, a.url, dead2])
      assert.ok(r.stderr.includes(`${ep}: `), `${ep} not named\n${r.stderr}`);
    assert.match(r.stderr, /server error \(500\)/);
    // Round one asks each once; round two retries each with the budget: 1 + (1 + 1).
    assert.equal(revisions(a).length, 3, "the 5xx endpoint: one try, then the retry round of --retries 2");
  });

  it("a 403 gated answer from a listed endpoint is reported as gated, not taken for an expired CDN URL", {
    timeout: 60_000,
  }, async () => {
    reset();
    const cache = tempDir();
    const r = await runCli(
      ["org/gated", "--cache-dir", cache, "--mirror", `${dead},${a.url}`, "--retries", "1"],
      {
        env: cleanEnv({ HF_TOKEN: "hf_wrong_token_0000" }),
        timeoutMs: 30_000,
      },
    );
    // Exit 4: the gated answer outranks the dead endpoint's network error (exit 6), whichever was
    // asked last, as in the metadata step.
    assert.equal(r.code, 4, show(r));
    assert.ok(r.stderr.includes(`${a.url}: org/gated: the repository is gated`), show(r));
    assert.ok(!r.stderr.includes("resolving it again"), r.stderr);
  });

  it("not found anywhere: exit 3 (the hub's answer), not a network error", { timeout: 60_000 }, async () => {
    reset();
    const cache = tempDir();
    const r = await runCli(["org/nope", "--cache-dir", cache, "--mirror", `${lag.url},${a.url}`], {
      env: cleanEnv(),
      timeoutMs: 30_000,
    });
    assert.equal(r.code, 3, show(r));
    assert.match(r.stderr, /no endpoint answered.*repository not found/);
  });

  it("HFGET_MIRRORS gives the list; --mirror wins over it", { timeout: 60_000 }, async () => {
    reset();
    const one = await run([], { HFGET_MIRRORS: `${dead}, ${a.url}`, HF_ENDPOINT: b.url });
    assert.equal(one.r.code, 0, show(one.r));
    assert.match(one.r.stderr, new RegExp(`set aside ${dead}`));
    assert.ok(api(a).length >= 2);
    assert.equal(b.log.length, 0, "HF_ENDPOINT is not used when HFGET_MIRRORS is set");
    reset();
    const two = await run(["--mirror", b.url], { HFGET_MIRRORS: a.url });
    assert.equal(two.r.code, 0, show(two.r));
    assert.equal(a.log.length, 0);
    assert.ok(api(b).length >= 2);
  });

  it("ls takes several endpoints too", { timeout: 60_000 }, async () => {
    reset();
    const r = await runCli(["ls", "org/model", "--mirror", `${dead},${a.url}`, "--json"], {
      env: cleanEnv(),
      timeoutMs: 30_000,
    });
    assert.equal(r.code, 0, show(r));
    const j = JSON.parse(r.stdout) as { commit: string; files: { path: string }[] };
    assert.equal(j.commit, sha);
    assert.equal(j.files.length, 3);
    assert.match(r.stderr, /set aside/);
  });

  it("the token goes to every listed origin, never to a CDN, never after a redirect (even to a listed origin)", {
    timeout: 60_000,
  }, async () => {
    reset();
    const seen: Array<string | undefined> = [];
    const readme = v2[0]!;
    const other = createServer((req: IncomingMessage, res: ServerResponse) => {
      seen.push(req.headers.authorization);
      const body = Buffer.from("# model\n");
      res.writeHead(200, { "content-length": String(body.length) });
      res.end(body);
    });
    const otherPort = await listen(other);
    try {
      // The first endpoint refuses the revision (so it is set aside, after getting the token once).
      a.faults.push({
        server: "hub",
        pathIncludes: "/revision/",
        times: 1,
        fault: { type: "status", status: 500 },
      });
      // The second redirects config.json to the first (a listed origin) and README.md elsewhere.
      b.faults.push(
        {
          server: "hub",
          pathIncludes: "config.json",
          times: 1,
          method: "GET",
          fault: { type: "redirect", location: `${a.url}/org/model/resolve/${sha}/config.json` },
        },
        {
          server: "hub",
          pathIncludes: readme.path,
          times: 1,
          fault: { type: "redirect", location: `http://127.0.0.1:${otherPort}/${readme.path}` },
        },
      );
      const { r, cache } = await run(["--mirror", `${a.url},${b.url}`, "--retries", "0"], {
        HF_TOKEN: TEST_TOKEN,
      });
      assert.equal(r.code, 0, show(r));
      assert.deepEqual(intact(cache, sha, v2), []);
      assert.equal(api(a)[0]?.authorization, "token", "the first listed endpoint got the token");
      assert.ok(
        api(b).length >= 2 && api(b).every((e) => e.authorization === "token"),
        "the second listed endpoint got the token",
      );
      const bounced = resolves(a);
      assert.equal(bounced.length, 1, "config.json was redirected to the first endpoint");
      assert.equal(bounced[0]?.authorization, "none", "a listed origin reached by a redirect got the token");
      assert.deepEqual(seen, [undefined], "an unlisted origin reached by a redirect got the token");
      const cdn = [...a.log, ...b.log].filter((e) => e.server === "cdn");
      assert.ok(cdn.length > 0);
      assert.deepEqual(
        cdn.filter((e) => e.authorization !== "none").map((e) => e.url),
        [],
      );
      assert.ok(!r.stderr.includes(TEST_TOKEN) && !r.stdout.includes(TEST_TOKEN));
    } finally {
      await new Promise<void>((res) => other.close(() => res()));
    }
  });
});

describe("hfget mirrors", () => {
  const { fresh, lagging, old, sha } = repos();
  let a: FakeHub;
  let lag: FakeHub;
  let dead: string;
  before(async () => {
    a = await startFakeHub({ repos: [fresh] });
    lag = await startFakeHub({ repos: [lagging] });
    dead = await deadUrl();
  });
  after(async () => {
    await Promise.all([a.close(), lag.close()]);
  });

  it("in-process: answers, commits (lagging shows its older one), latency, a bounded read; fastest first", {
    timeout: 60_000,
  }, async () => {
    const config = buildConfig(
      { repoId: "org/model", mirror: [dead, lag.url, a.url], retries: 0 },
      cleanEnv(),
    );
    const session = openSession(config);
    try {
      const r = await probeMirrors(config, session, { readBytes: 256 * 1024, readMs: 5000 });
      // The lagging endpoint is the first that answers, so its commit is what a download would pin.
      assert.equal(r.commit, old);
      const by = new Map(r.endpoints.map((p) => [p.endpoint, p]));
      assert.equal(by.get(lag.url)?.status, "ok");
      assert.equal(by.get(a.url)?.status, "ahead");
      assert.equal(by.get(a.url)?.commit, sha);
      assert.equal(by.get(dead)?.status, "down");
      assert.equal(by.get(dead)?.commit, undefined);
      assert.match(by.get(dead)?.error ?? "", /cannot reach/);
      assert.equal(r.endpoints.at(-1)?.endpoint, dead, "one that does not answer sorts last");
      for (const ep of [lag.url, a.url]) {
        const p = by.get(ep)!;
        assert.ok(p.latencyMs !== undefined && p.latencyMs >= 0);
        assert.equal(p.read?.path, "model.safetensors", "the largest file is read");
        assert.equal(p.read?.bytes, 256 * 1024, "the read is bounded");
        assert.ok((p.read?.bytesPerSec ?? 0) > 0);
        assert.equal(p.read?.servedBy, new URL(ep === a.url ? a.cdnUrl : lag.cdnUrl).origin, "via its CDN");
      }
      const speeds = r.endpoints.filter((p) => p.read).map((p) => p.read!.bytesPerSec);
      assert.deepEqual(
        speeds,
        [...speeds].sort((x, y) => y - x),
        "sorted by speed",
      );
      const cdnRanges = a.log.filter((e) => e.server === "cdn").map((e) => e.range);
      assert.deepEqual(cdnRanges, [`bytes=0-${256 * 1024 - 1}`]);
    } finally {
      await session.close();
    }
  });

  it("in-process: the fresh one first; the laggard shows its older commit and cannot serve the pinned one", {
    timeout: 60_000,
  }, async () => {
    const config = buildConfig({ repoId: "org/model", mirror: [a.url, lag.url] }, cleanEnv());
    const session = openSession(config);
    try {
      const r = await probeMirrors(config, session, { readBytes: 64 * 1024 });
      assert.equal(r.commit, sha);
      const laggard = r.endpoints.find((p) => p.endpoint === lag.url)!;
      assert.equal(laggard.status, "lagging");
      assert.equal(laggard.commit, old);
      assert.equal(laggard.lastModified, "2026-01-01T00:00:00.000Z");
      assert.equal(laggard.read, undefined);
      assert.match(laggard.error ?? "", /no model\.safetensors at the pinned commit \(404/);
      assert.equal(r.endpoints[0]?.endpoint, a.url);
    } finally {
      await session.close();
    }
  });

  it("CLI: a table on stdout, --json for scripts; exit 6 when none answers", {
    timeout: 60_000,
  }, async () => {
    const env = cleanEnv();
    const table = await runCli(
      ["mirrors", "org/model", "--mirror", `${a.url},${lag.url}`, "--mirror", dead],
      {
        env,
        timeoutMs: 30_000,
      },
    );
    assert.equal(table.code, 0, show(table));
    const lines = table.stdout.trimEnd().split("\n");
    assert.match(lines[0] ?? "", /^ENDPOINT\s+STATUS\s+COMMIT\s+LATENCY\s+SPEED\s+NOTE$/);
    assert.equal(lines.length, 4);
    assert.match(table.stdout, new RegExp(`${lag.url}\\s+lagging\\s+${old.slice(0, 12)}`));
    assert.match(table.stdout, new RegExp(`${dead}\\s+down\\s+-`));
    assert.match(table.stderr, /1 of 3 endpoints have org\/model@main/);
    const json = await runCli(["mirrors", "org/model", "--mirror", `${a.url},${lag.url}`, "--json"], {
      env,
      timeoutMs: 30_000,
    });
    assert.equal(json.code, 0, show(json));
    const j = JSON.parse(json.stdout) as {
      commit: string;
      endpoints: { endpoint: string; status: string }[];
    };
    assert.equal(j.commit, sha);
    assert.deepEqual(j.endpoints.map((p) => p.status).sort(), ["lagging", "ok"]);
    const none = await runCli(["mirrors", "org/model", "--mirror", dead], { env, timeoutMs: 30_000 });
    assert.equal(none.code, 6, show(none));
  });
});

describe("several endpoints: the download fails over (CLI, two or three fake hubs)", () => {
  const small = fileFromBuffer("config.json", Buffer.from('{"big":true}\n'));
  const mid = fileFromBuffer("tokenizer.bin", randomBytesSeeded(71, 300_000), { lfs: true });
  const big = fileFromBuffer("big.safetensors", randomBytesSeeded(72, 3 * 1024 * 1024), { lfs: true });
  const files = [small, mid, big];
  const bigSha = big.lfs!.sha256;
  const repo = () => makeRepo("org/big", files);
  const started: FakeHub[] = [];
  const hubs = async (n: number, r: FakeRepo = repo()): Promise<FakeHub[]> => {
    const out: FakeHub[] = [];
    for (let i = 0; i < n; i++) out.push(await startFakeHub({ repos: [r] }));
    started.push(...out);
    return out;
  };
  after(async () => {
    await Promise.all(started.map((h) => h.close()));
  });
  /** The big file's CDN answers on `hub` paced at `bytesPerSec`. */
  const throttle = (hub: FakeHub, bytesPerSec: number) =>
    hub.faults.push({
      server: "cdn",
      pathIncludes: bigSha,
      times: 10_000,
      fault: { type: "throttle", bytesPerSec },
    });
  const cdnBytes = (hub: FakeHub) =>
    hub.log.filter((e) => e.server === "cdn").reduce((n, e) => n + e.bytesSent, 0);
  const runBig = (mirrors: readonly string[], extra: string[] = []) => {
    const cache = tempDir();
    const t0 = Date.now();
    const child = runCli(
      [
        "org/big",
        "--cache-dir",
        cache,
        "--mirror",
        mirrors.join(","),
        "--chunk-size",
        "256K",
        "--connections",
        "4",
        "--retries",
        "2",
        ...extra,
      ],
      { env: cleanEnv(), timeoutMs: 50_000 },
    );
    return { cache, child: child.then((r) => ({ r, ms: Date.now() - t0 })) };
  };
  const intact = (cache: string, commit: string) =>
    cacheProblems(repoCacheDir(cache, "model", "org/big"), commit, files);
  /** Polls (bounded) until `cond` holds; false if it never did. */
  const waitFor = async (cond: () => boolean, ms = 20_000): Promise<boolean> => {
    for (const end = Date.now() + ms; Date.now() < end; ) {
      if (cond()) return true;
      await new Promise((r) => setTimeout(r, 10));
    }
    return cond();
  };
  const inFlight = (hub: FakeHub) =>
    hub.log.some((e) => e.server === "cdn" && e.url.includes(bigSha) && e.bytesSent > 0);

  it("one of three killed while a throttled chunk of the large file is in flight: the others finish it", {
    timeout: 60_000,
  }, async () => {
    const [a, b, c] = await hubs(3);
    for (const h of [a!, b!, c!]) throttle(h, 400_000);
    const { cache, child } = runBig([a!.url, b!.url, c!.url]);
    let done = false;
    void child.then(() => {
      done = true;
    });
    assert.ok(await waitFor(() => done || inFlight(a!)), "the first endpoint never served a byte");
    assert.ok(!done, "the run ended before the kill");
    await a!.close();
    const { r } = await child;
    assert.equal(r.code, 0, show(r));
    const commit = makeRepo("org/big", files).refs.main!;
    assert.deepEqual(intact(cache, commit), []);
    assert.match(r.stderr, new RegExp(`${a!.url} (set aside|down for a while) \\(`), r.stderr);
    assert.ok(cdnBytes(b!) > 0 && cdnBytes(c!) > 0, "both survivors served bytes");
    // The final line names what each endpoint served.
    const last = r.stderr.trimEnd().split("\n").at(-1) ?? "";
    assert.match(
      last,
      new RegExp(`^hfget: finished 3/3 files.*; from .*${b!.url}: .*, ${c!.url}: `),
      r.stderr,
    );
  });

  it("the second lags (no such commit): every file from the first, the laggard named and never fetched from", {
    timeout: 60_000,
  }, async () => {
    const fresh = makeRepo("org/big", [small, mid]);
    const sha = pushCommit(fresh, files);
    const [a] = await hubs(1, fresh);
    const [lag] = await hubs(1, makeRepo("org/big", [small, mid]));
    const { cache, child } = runBig([a!.url, lag!.url]);
    const { r } = await child;
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(intact(cache, sha), []);
    assert.match(r.stderr, new RegExp(`${lag!.url} set aside \\(.*(not found|404)`), r.stderr);
    assert.equal(cdnBytes(lag!), 0);
  });

  it("one answers 308 to an origin not listed: taken as not having it, the redirect is not followed", {
    timeout: 60_000,
  }, async () => {
    const [a, b] = await hubs(2);
    const hits: string[] = [];
    const other = createServer((req, res) => {
      hits.push(req.url ?? "");
      res.writeHead(500).end();
    });
    const otherPort = await listen(other);
    try {
      const commit = b!.repos[0]!.refs.main!;
      b!.faults.push({
        server: "hub",
        pathIncludes: "/resolve/",
        times: 10_000,
        fault: {
          type: "redirect",
          status: 308,
          location: `http://127.0.0.1:${otherPort}/org/big/resolve/${commit}/big.safetensors`,
        },
      });
      const { cache, child } = runBig([a!.url, b!.url]);
      const { r } = await child;
      assert.equal(r.code, 0, show(r));
      assert.deepEqual(intact(cache, commit), []);
      assert.match(r.stderr, new RegExp(`${b!.url} set aside \\(.*does not have it \\(308`), r.stderr);
      assert.deepEqual(hits, [], "the unlisted origin was asked");
      assert.ok(
        b!.log.some((e) => e.url.includes("/resolve/") && e.status === 308),
        "the 308 endpoint was asked for a file",
      );
    } finally {
      await new Promise<void>((res) => other.close(() => res()));
    }
  });

  it("one serves corrupt bytes for the large file: it is found, dropped for the run, the file finished from the other", {
    timeout: 60_000,
  }, async () => {
    const [a, b] = await hubs(2);
    b!.faults.push({ server: "cdn", pathIncludes: bigSha, times: 10_000, fault: { type: "corrupt" } });
    const { cache, child } = runBig([a!.url, b!.url]);
    const { r } = await child;
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(intact(cache, a!.repos[0]!.refs.main!), []);
    assert.ok(cdnBytes(b!) > 0, "the corrupt endpoint served no bytes: nothing was tested");
    assert.match(r.stderr, new RegExp(`${b!.url} dropped for this run \\(.*failed its hash`), r.stderr);
    assert.ok(!r.stderr.includes(`${a!.url} dropped`), r.stderr);
  });

  it("one is slow: the run finishes, the fast one serves more, --json gives bytes per endpoint", {
    timeout: 60_000,
  }, async () => {
    const [a, b] = await hubs(2);
    throttle(b!, 100_000);
    const { cache, child } = runBig([a!.url, b!.url], ["--json"]);
    const { r } = await child;
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(intact(cache, a!.repos[0]!.refs.main!), []);
    const j = JSON.parse(r.stdout) as {
      bytesDownloaded: number;
      endpoints: { endpoint: string; bytes: number; bytesPerSec: number; setAside?: string }[];
    };
    const by = new Map(j.endpoints.map((e) => [e.endpoint, e]));
    assert.ok((by.get(a!.url)?.bytes ?? 0) > (by.get(b!.url)?.bytes ?? 0), r.stdout);
    assert.equal(
      j.endpoints.reduce((n, e) => n + e.bytes, 0),
      j.bytesDownloaded,
      "per-endpoint bytes add up to the run's",
    );
    assert.ok((by.get(a!.url)?.bytesPerSec ?? 0) > 0);
  });

  it("one answers 429 to every file: set aside, the other serves everything at once", {
    timeout: 60_000,
  }, async () => {
    const [a, b] = await hubs(2);
    b!.faults.push({
      server: "hub",
      pathIncludes: "/resolve/",
      times: 10_000,
      fault: { type: "status", status: 429, headers: { "retry-after": "30" } },
    });
    const { cache, child } = runBig([a!.url, b!.url]);
    const { r, ms } = await child;
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(intact(cache, a!.repos[0]!.refs.main!), []);
    assert.match(r.stderr, new RegExp(`${b!.url} (set aside|down for a while) \\(.*429`), r.stderr);
    assert.equal(cdnBytes(b!), 0);
    assert.ok(ms < 30_000, `the run waited out the 429 (${ms} ms)`);
  });

  it("a large file's first request goes to every endpoint at once, not to the second after the first answered", {
    timeout: 60_000,
  }, async () => {
    const only = makeRepo("org/big", [big]);
    const [a, b] = await hubs(2, only);
    // The first endpoint's resolve of the file answers its 302 only after 3 s: before this change
    // the second endpoint was asked nothing until that answer (the file waited in "probing").
    a!.faults.push({
      server: "hub",
      pathIncludes: "/resolve/",
      times: 1,
      fault: { type: "stall", afterBytes: 0, ms: 3000 },
    });
    const cache = tempDir();
    const r = await runCli(
      [
        "org/big",
        "--cache-dir",
        cache,
        "--mirror",
        `${a!.url},${b!.url}`,
        "--chunk-size",
        "256K",
        "--connections",
        "4",
      ],
      { env: cleanEnv(), timeoutMs: 50_000 },
    );
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(cacheProblems(repoCacheDir(cache, "model", "org/big"), only.refs.main!, [big]), []);
    const firstOf = (hub: FakeHub, server: "hub" | "cdn") =>
      hub.log.find(
        (e) =>
          e.server === server && (server === "cdn" ? e.url.includes(bigSha) : e.url.includes("/resolve/")),
      );
    const aCdn = firstOf(a!, "cdn");
    const bResolve = firstOf(b!, "hub");
    assert.ok(bResolve !== undefined, "the second endpoint was never asked");
    // Ordering, not timing: the first endpoint's CDN cannot be asked before its stalled 302 ended.
    assert.ok(
      aCdn === undefined || bResolve.time <= aCdn.time,
      `the second endpoint was first asked ${bResolve.time - (aCdn?.time ?? 0)} ms after the first's CDN`,
    );
  });

  it("--limit-rate caps the run across both endpoints together, not each", { timeout: 60_000 }, async () => {
    const [a, b] = await hubs(2);
    const { cache, child } = runBig([a!.url, b!.url], ["--limit-rate", "1M", "--json"]);
    const { r, ms } = await child;
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(intact(cache, a!.repos[0]!.refs.main!), []);
    const j = JSON.parse(r.stdout) as { endpoints: { bytes: number }[] };
    assert.equal(j.endpoints.filter((e) => e.bytes > 0).length, 2, "both endpoints served bytes");
    // ~3.3 MiB at 1 MiB/s in total, less the bucket's burst; a cap per endpoint would take half as
    // long. Only a lower bound: a busy machine makes it slower, never faster.
    assert.ok(ms >= 2800, `took ${ms} ms`);
  });

  it("all endpoints killed mid-download: exit 6 within the retry budget, naming each", {
    timeout: 60_000,
  }, async () => {
    const [a, b] = await hubs(2);
    for (const h of [a!, b!]) throttle(h, 300_000);
    const { child } = runBig([a!.url, b!.url]);
    let done = false;
    void child.then(() => {
      done = true;
    });
    assert.ok(await waitFor(() => done || (inFlight(a!) && inFlight(b!))), "not both served bytes");
    assert.ok(!done, "the run ended before the kill");
    await Promise.all([a!.close(), b!.close()]);
    const { r, ms } = await child;
    assert.equal(r.code, 6, show(r));
    assert.match(r.stderr, /no endpoint could serve it/);
    for (const h of [a!, b!]) assert.ok(r.stderr.includes(`${h.url}: `), `${h.url} not named\n${r.stderr}`);
    assert.ok(ms < 40_000, `took ${ms} ms`);
  });
});
