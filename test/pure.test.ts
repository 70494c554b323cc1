import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { blobLinkTarget, cachePaths, localDirPaths, under } from "../src/cache/paths.js";
import { HfgetError, redact } from "../src/errors.js";
import { makeFilter } from "../src/glob.js";
import { keepEndpoint, nextLink } from "../src/hub/list-files.js";
import { checkRepoPath } from "../src/hub/paths.js";
import { parseContentRange, rangeHeader } from "../src/util/content-range.js";
import { RangeSet, splitRanges } from "../src/util/range-set.js";
import {
  backoffDelay,
  DEFAULT_RETRY_POLICY,
  parseRetryAfter,
  retryDelay,
  withRetry,
} from "../src/util/retry.js";

describe("glob (fnmatch semantics)", () => {
  it("lets * cross folders like huggingface_hub", () => {
    const f = makeFilter(["*.json"], []);
    assert.ok(f("config.json"));
    assert.ok(f("sub/dir/config.json"));
    assert.ok(!f("model.bin"));
  });
  it("applies exclude after include, and folder patterns", () => {
    const f = makeFilter(["*"], ["*.bin", "onnx/"]);
    assert.ok(f("model.safetensors"));
    assert.ok(!f("pytorch_model.bin"));
    assert.ok(!f("onnx/model.onnx"));
  });
  it("supports [!x] classes and treats ! and braces literally", () => {
    assert.ok(makeFilter(["[!a].txt"], [])("b.txt"));
    assert.ok(!makeFilter(["[!a].txt"], [])("a.txt"));
    assert.ok(!makeFilter(["!a"], [])("b"));
    assert.ok(makeFilter(["{a,b}"], [])("{a,b}"));
    assert.ok(!makeFilter(["{a,b}"], [])("a"));
    assert.ok(makeFilter(["*.bin"], [])(".hidden.bin"));
  });
});

describe("RangeSet", () => {
  it("merges, measures and finds gaps", () => {
    const s = new RangeSet();
    s.add(10, 20);
    s.add(30, 40);
    s.add(20, 30);
    assert.deepEqual(s.toJSON(), [[10, 40]]);
    s.add(0, 5);
    assert.equal(s.total, 35);
    assert.deepEqual(s.gaps(50), [
      [5, 10],
      [40, 50],
    ]);
    assert.equal(s.coveredUntil(12), 40);
    assert.equal(s.coveredUntil(5), 5);
    assert.ok(s.overlaps(39, 45));
    assert.ok(!s.overlaps(40, 45));
  });
  it("splits into chunks", () => {
    assert.deepEqual(splitRanges([[0, 10]], 4), [
      [0, 4],
      [4, 8],
      [8, 10],
    ]);
  });
});

describe("Content-Range", () => {
  it("parses and refuses nonsense", () => {
    assert.deepEqual(parseContentRange("bytes 0-99/1234"), { start: 0, end: 100, size: 1234 });
    assert.deepEqual(parseContentRange("bytes 5-5/*"), { start: 5, end: 6, size: undefined });
    assert.equal(parseContentRange("bytes 10-5/100"), undefined);
    assert.equal(parseContentRange("bytes 0-100/100"), undefined);
    assert.equal(parseContentRange("items 0-1/2"), undefined);
    assert.equal(parseContentRange(undefined), undefined);
    assert.equal(rangeHeader(0, 100), "bytes=0-99");
  });
});

describe("retry timing", () => {
  it("parses Retry-After seconds and HTTP dates", () => {
    assert.equal(parseRetryAfter("3"), 3000);
    const now = Date.parse("Mon, 23 Nov 2026 10:00:00 GMT");
    assert.equal(parseRetryAfter("Mon, 23 Nov 2026 10:00:07 GMT", now), 7000);
    assert.equal(parseRetryAfter("Mon, 23 Nov 2026 09:00:00 GMT", now), 0);
    assert.equal(parseRetryAfter("soon"), undefined);
    assert.equal(parseRetryAfter(undefined), undefined);
  });
  it("backs off exponentially with bounded jitter and caps Retry-After", () => {
    const p = { ...DEFAULT_RETRY_POLICY, baseDelayMs: 100, maxDelayMs: 1000, retryAfterCapMs: 5000 };
    assert.equal(
      backoffDelay(0, p, () => 0),
      50,
    );
    assert.equal(
      backoffDelay(0, p, () => 1),
      100,
    );
    assert.equal(
      backoffDelay(3, p, () => 1),
      800,
    );
    assert.equal(
      backoffDelay(10, p, () => 1),
      1000,
    );
    assert.equal(retryDelay(0, p, 60_000), 5000);
    assert.equal(retryDelay(0, p, 2000), 2000);
  });
  it("retries retryable errors only, and records delays instead of sleeping", async () => {
    const delays: number[] = [];
    let calls = 0;
    const result = await withRetry(
      async () => {
        calls++;
        if (calls < 3) throw new HfgetError("SERVER_ERROR", "boom");
        return "ok";
      },
      {
        policy: { ...DEFAULT_RETRY_POLICY, retries: 5 },
        sleep: async (ms) => void delays.push(ms),
        random: () => 0,
      },
    );
    assert.equal(result, "ok");
    assert.equal(delays.length, 2);
    await assert.rejects(
      withRetry(
        async () => {
          throw new HfgetError("REPO_NOT_FOUND", "nope");
        },
        { policy: DEFAULT_RETRY_POLICY, sleep: async () => assert.fail("must not sleep") },
      ),
      /nope/,
    );
    let n = 0;
    await assert.rejects(
      withRetry(
        async () => {
          n++;
          throw new HfgetError("NETWORK", "down");
        },
        { policy: { ...DEFAULT_RETRY_POLICY, retries: 2 }, sleep: async () => undefined },
      ),
      /down/,
    );
    assert.equal(n, 3);
  });
});

describe("listing helpers", () => {
  it("reads the next link", () => {
    assert.equal(nextLink('<https://h/api/x?cursor=abc>; rel="next"'), "https://h/api/x?cursor=abc");
    assert.equal(nextLink('<https://h/a>; rel="prev", <https://h/b>; rel="next"'), "https://h/b");
    assert.equal(nextLink(undefined), undefined);
    assert.equal(nextLink('<https://h/a>; rel="prev"'), undefined);
  });
  it("keeps the mirror's origin when a next link points at huggingface.co", () => {
    assert.equal(
      keepEndpoint(
        "https://huggingface.co/api/models/a/b/tree/x?cursor=1",
        "https://m.example/api/models/a/b/tree/x",
        "https://m.example",
      ),
      "https://m.example/api/models/a/b/tree/x?cursor=1",
    );
    assert.equal(
      keepEndpoint(
        "https://huggingface.co/api/models/a/b/tree/x?cursor=1",
        "https://m.example/hf/api/models",
        "https://m.example/hf",
      ),
      "https://m.example/hf/api/models/a/b/tree/x?cursor=1",
    );
    assert.equal(
      keepEndpoint("/api/x?c=2", "https://m.example/api/x", "https://m.example"),
      "https://m.example/api/x?c=2",
    );
  });
});

describe("hostile paths", () => {
  it("refuses paths that could escape the target", () => {
    for (const bad of [
      "",
      "/etc/passwd",
      "../x",
      "a/../../x",
      "a/./b",
      "a//b",
      "a\\b",
      "a\0b",
      "C:/x",
      "a/\u0007",
      "x/".repeat(3000),
    ]) {
      assert.throws(
        () => checkRepoPath(bad),
        (e: unknown) => e instanceof HfgetError && e.code === "PROTOCOL",
        bad,
      );
    }
    assert.throws(() => checkRepoPath("a".repeat(256)), /255/);
    assert.equal(checkRepoPath("sub/dir/model.safetensors"), "sub/dir/model.safetensors");
    assert.equal(checkRepoPath(".gitattributes"), ".gitattributes");
  });
});

describe("cache paths", () => {
  it("matches huggingface_hub's layout", () => {
    const p = cachePaths("/c", { type: "model", id: "org/name" });
    assert.equal(p.blob("abc"), "/c/models--org--name/blobs/abc");
    assert.equal(
      p.snapshotFile("c0ffee", "sub/dir/f.bin"),
      "/c/models--org--name/snapshots/c0ffee/sub/dir/f.bin",
    );
    assert.equal(p.ref("refs/pr/1"), "/c/models--org--name/refs/refs/pr/1");
    assert.equal(p.lock("abc"), "/c/.locks/models--org--name/abc.lock");
    assert.equal(blobLinkTarget("f.bin", "abc"), "../../blobs/abc");
    assert.equal(blobLinkTarget("sub/dir/f.bin", "abc"), "../../../../blobs/abc");
    const l = localDirPaths("/d");
    assert.equal(l.file("a/b.txt"), "/d/a/b.txt");
    assert.equal(l.metadata("a/b.txt"), "/d/.cache/huggingface/download/a/b.txt.metadata");
  });

  it("under() builds the same path as join() for every base and relative path", () => {
    const bases = ["/a/b", "/a/b/", "/", "/a//b/../c", "rel/x", ".", "./a"];
    const rels = [
      "x",
      "a/b",
      "a/./b",
      "a/../b",
      "../x",
      "./x",
      "a//b",
      "/x",
      "x/",
      "",
      ".",
      "..",
      "a/..",
      "...",
      "a/...b",
      ".hidden/x",
      "a/b.hfget-partial",
      "é/ü x",
      "a/.git/b",
    ];
    for (const b of bases) {
      for (const r of rels) assert.equal(under(b)(r), join(b, ...r.split("/")), `${b} + ${r}`);
    }
  });
});

describe("redact", () => {
  it("removes secrets", () => {
    assert.equal(redact("Bearer hf_secret_123 failed", ["hf_secret_123"]), "Bearer <redacted> failed");
    assert.equal(redact("nothing", [undefined]), "nothing");
  });
});
