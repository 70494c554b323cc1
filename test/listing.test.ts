// The listing's first page asked for beside the revision (openSpeculating in src/hub/metadata.ts):
// one round trip sooner, checked against the commit's own listing before the listing is whole, and
// a revision that moved in between is caught (ListingMovedError) and download() runs again.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { buildConfig } from "../src/config.js";
import { download } from "../src/download.js";
import { ListingMovedError, openListing } from "../src/hub/metadata.js";
import type { RepoFile } from "../src/hub/types.js";
import { openSession } from "../src/session.js";
import {
  type FakeHub,
  type FakeRepo,
  fileFromBuffer,
  makeRepo,
  pushCommit,
  randomBytesSeeded,
} from "./fakehub/index.js";
import { tempDir, withHub } from "./helpers.js";

const MiB = 1024 * 1024;
const MAIN = [{ revision: "main", path: "" }];

/** v1: a.txt, b.bin; v2 (main): a.txt changed, b.bin the same, c.txt added. */
function movingRepo(): {
  repo: FakeRepo;
  v1: string;
  v2: string;
  v2files: ReturnType<typeof fileFromBuffer>[];
} {
  const b = fileFromBuffer("b.bin", randomBytesSeeded(41, 3 * MiB), { lfs: true });
  const repo = makeRepo("org/moving", [fileFromBuffer("a.txt", Buffer.from("one\n")), b]);
  const v1 = repo.refs.main!;
  const v2files = [
    fileFromBuffer("a.txt", Buffer.from("two\n")),
    b,
    fileFromBuffer("c.txt", Buffer.from("new\n")),
  ];
  const v2 = pushCommit(repo, v2files);
  return { repo, v1, v2, v2files };
}

/**
 * The next listing at main answers the tree at `sha` (v1): a branch listing served just before the
 * push to v2, with the revision request answered just after it.
 */
async function pushBetweenRequests(hub: FakeHub, sha: string): Promise<void> {
  const res = await fetch(`${hub.url}/api/models/org/moving/tree/${sha}?recursive=true`);
  assert.equal(res.status, 200);
  hub.faults.push({
    server: "hub",
    pathIncludes: "/tree/main",
    times: 1,
    fault: { type: "body", body: await res.text() },
  });
}

const paths = (files: readonly RepoFile[]) => files.map((f) => f.path).sort();
const hubApi = (hub: FakeHub, part: string) =>
  hub.log.filter((e) => e.server === "hub" && e.url.startsWith("/api/") && e.url.includes(part));

describe("the listing's first page comes beside the revision", () => {
  it("asked at the revision together with it, then checked at the commit; the pages are the commit's", async () => {
    const { repo, v2 } = movingRepo();
    await withHub([repo], { latencyMs: 250 }, async (hub) => {
      const config = buildConfig({ repoId: "org/moving", mirror: hub.url, cacheDir: tempDir() }, {});
      const session = openSession(config);
      try {
        const stream = await openListing(session.hubs, config.repo, MAIN, { speculate: true });
        assert.equal(stream.pinned.commit, v2);
        for await (const _ of stream.pages) {
          // pinned.files grows
        }
        assert.deepEqual(paths(stream.pinned.files), ["a.txt", "b.bin", "c.txt"]);
        const [rev] = hubApi(hub, "/revision/main");
        const [guess] = hubApi(hub, "/tree/main");
        const [check] = hubApi(hub, `/tree/${v2}`);
        assert.ok(rev && guess && check, "revision, the listing at main, the listing at the commit");
        // Together: a sequential listing would come a whole answer (250 ms) after the revision.
        assert.ok(
          Math.abs(guess.time - rev.time) < 150,
          `the listing came ${guess.time - rev.time} ms after the revision`,
        );
        assert.ok(check.time - rev.time >= 200, "the commit's listing is asked once the commit is known");

        hub.clearLog();
        const plain = await openListing(session.hubs, config.repo, MAIN);
        for await (const _ of plain.pages) {
          // read it all
        }
        assert.equal(hubApi(hub, "/tree/main").length, 0, "no guess unless asked for");
        assert.deepEqual(paths(plain.pinned.files), ["a.txt", "b.bin", "c.txt"]);
      } finally {
        await session.close();
      }
    });
  });

  it("a push between the two requests: the guessed page is caught before the listing ends", async () => {
    const { repo, v1, v2 } = movingRepo();
    await withHub([repo], {}, async (hub) => {
      await pushBetweenRequests(hub, v1);
      const config = buildConfig({ repoId: "org/moving", mirror: hub.url, cacheDir: tempDir() }, {});
      const session = openSession(config);
      try {
        const stream = await openListing(session.hubs, config.repo, MAIN, { speculate: true });
        assert.equal(stream.pinned.commit, v2);
        const seen: string[] = [];
        await assert.rejects(
          (async () => {
            for await (const page of stream.pages) seen.push(...page.files.map((f) => f.path));
          })(),
          (err: unknown) => err instanceof ListingMovedError && /org\/moving@main/.test(err.message),
        );
        assert.deepEqual(seen.sort(), ["a.txt", "b.bin"], "the guess (v1's listing) came first");
      } finally {
        await session.close();
      }
    });
  });

  it("a guess that fails is not retried, and one that hangs is not waited for", async () => {
    const { repo, v2 } = movingRepo();
    await withHub([repo], {}, async (hub) => {
      const config = buildConfig({ repoId: "org/moving", mirror: hub.url, cacheDir: tempDir() }, {});
      const session = openSession(config);
      const readAll = async () => {
        const stream = await openListing(session.hubs, config.repo, MAIN, { speculate: true });
        for await (const _ of stream.pages) {
          // read it all
        }
        assert.equal(stream.pinned.commit, v2);
        assert.deepEqual(paths(stream.pinned.files), ["a.txt", "b.bin", "c.txt"]);
      };
      try {
        hub.faults.push({
          server: "hub",
          pathIncludes: "/tree/main",
          fault: { type: "status", status: 503 },
        });
        await readAll();
        // A retry of the guess would come 125-250 ms after its 503 (the default policy's first backoff).
        await new Promise((r) => setTimeout(r, 600));
        assert.equal(hubApi(hub, "/tree/main").length, 1, "the guess was retried");

        hub.faults.length = 0;
        hub.clearLog();
        hub.faults.push({
          server: "hub",
          pathIncludes: "/tree/main",
          fault: { type: "stall", afterBytes: 0 },
        });
        const t0 = Date.now();
        await readAll();
        assert.ok(Date.now() - t0 < 5_000, `the listing waited ${Date.now() - t0} ms for a hanging guess`);
      } finally {
        await session.close();
      }
    });
  });

  it("download(): a push between the two requests costs a second listing, and the run ends right", async () => {
    const { repo, v1, v2, v2files } = movingRepo();
    await withHub([repo], {}, async (hub) => {
      await pushBetweenRequests(hub, v1);
      hub.clearLog();
      const cacheDir = tempDir();
      const config = buildConfig({ repoId: "org/moving", mirror: hub.url, cacheDir }, {});
      const session = openSession(config);
      try {
        const result = await download(config, session);
        assert.equal(result.commit, v2);
        assert.deepEqual(result.files.map((f) => f.path).sort(), ["a.txt", "b.bin", "c.txt"]);
        for (const f of v2files) {
          const got = readFileSync(join(result.path, f.path));
          assert.equal(got.length, f.size, f.path);
          const want = f.lfs?.sha256;
          if (want !== undefined) assert.equal(createHash("sha256").update(got).digest("hex"), want);
        }
        assert.equal(readFileSync(join(result.path, "a.txt"), "utf8"), "two\n");
        assert.equal(hubApi(hub, "/revision/main").length, 2, "the run listed again");
        assert.equal(hubApi(hub, "/tree/main").length, 1, "the second listing does not guess");
        assert.equal(readFileSync(join(cacheDir, "models--org--moving", "refs", "main"), "utf8"), v2);
      } finally {
        await session.close();
        rmSync(cacheDir, { recursive: true, force: true });
      }
    });
  });
});
