import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  buildConfig,
  defaultCacheDir,
  normalizeEndpoint,
  parseEndpointList,
  parseSize,
  resolveEndpoint,
  resolveEndpoints,
  resolveToken,
} from "../src/config.js";
import { HfgetError } from "../src/errors.js";
import { parseRepoArg, repoFolderName } from "../src/repo.js";

function usage(fn: () => unknown): HfgetError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof HfgetError, `expected HfgetError, got ${String(err)}`);
    assert.equal(err.code, "USAGE");
    assert.equal(err.exitCode, 2);
    return err;
  }
  assert.fail("expected a usage error");
}

describe("endpoint", () => {
  it("turns a bare host into https and keeps full URLs", () => {
    assert.equal(normalizeEndpoint("hf-mirror.com"), "https://hf-mirror.com");
    assert.equal(normalizeEndpoint("hf-mirror.com/"), "https://hf-mirror.com");
    assert.equal(normalizeEndpoint("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    assert.equal(normalizeEndpoint("https://example.org/hf/"), "https://example.org/hf");
    assert.equal(normalizeEndpoint("HTTPS://Example.org/a/b//"), "https://example.org/a/b");
    assert.equal(normalizeEndpoint("localhost:9000"), "https://localhost:9000");
  });
  it("refuses what is not a host or URL", () => {
    usage(() => normalizeEndpoint(""));
    usage(() => normalizeEndpoint("ftp://host"));
    usage(() => normalizeEndpoint("not a host"));
    usage(() => normalizeEndpoint("https://user@host"));
    usage(() => normalizeEndpoint("https://host/?q=1"));
  });
  it("prefers --mirror, then HF_ENDPOINT, then the hub", () => {
    assert.equal(resolveEndpoint("m.example", { HF_ENDPOINT: "https://e.example" }), "https://m.example");
    assert.equal(resolveEndpoint(undefined, { HF_ENDPOINT: "https://e.example/" }), "https://e.example");
    assert.equal(resolveEndpoint(undefined, {}), "https://huggingface.co");
    assert.equal(resolveEndpoint(undefined, { HF_ENDPOINT: "  " }), "https://huggingface.co");
  });
});

describe("several endpoints", () => {
  it("parses repeated and comma-separated lists: normalized, deduplicated, in order", () => {
    assert.deepEqual(parseEndpointList(["a.example, http://127.0.0.1:9/x/", "b.example"], "--mirror"), [
      "https://a.example",
      "http://127.0.0.1:9/x",
      "https://b.example",
    ]);
    assert.deepEqual(parseEndpointList(["a.example,https://a.example/,a.example,"], "--mirror"), [
      "https://a.example",
    ]);
    const e = usage(() => parseEndpointList([" , "], "HFGET_MIRRORS"));
    assert.match(e.message, /HFGET_MIRRORS names no endpoint/);
    assert.match(usage(() => parseEndpointList(["a.example,ftp://b"], "--mirror")).message, /ftp:\/\/b/);
  });

  it("precedence: --mirror, else HFGET_MIRRORS, else HF_ENDPOINT, else the pasted URL's host, else the hub", () => {
    const env = { HFGET_MIRRORS: "m1.example,m2.example", HF_ENDPOINT: "https://e.example" };
    assert.deepEqual(resolveEndpoints(["f.example", "g.example"], env, undefined).endpoints, [
      "https://f.example",
      "https://g.example",
    ]);
    assert.deepEqual(resolveEndpoints(undefined, env, undefined).endpoints, [
      "https://m1.example",
      "https://m2.example",
    ]);
    assert.deepEqual(
      resolveEndpoints([], { HF_ENDPOINT: "https://e.example", HFGET_MIRRORS: " " }, undefined).endpoints,
      ["https://e.example"],
    );
    // HF_ENDPOINT stays one URL (other tools read it): a comma in it is not a list.
    usage(() => resolveEndpoints(undefined, { HF_ENDPOINT: "a.example,b.example" }, undefined));
    assert.deepEqual(resolveEndpoints(undefined, {}, "https://hf-mirror.com").endpoints, [
      "https://hf-mirror.com",
    ]);
    assert.deepEqual(resolveEndpoints(undefined, {}, undefined).endpoints, ["https://huggingface.co"]);
  });

  it("a pasted URL's host: a notice when the list leaves it out, none when the list has it", () => {
    const url = "https://hf-mirror.com";
    const left = resolveEndpoints(["a.example", "b.example"], {}, url);
    assert.equal(
      left.notice,
      "using https://a.example, https://b.example (--mirror), not the URL's host https://hf-mirror.com",
    );
    assert.equal(
      resolveEndpoints(undefined, { HFGET_MIRRORS: "a.example,hf-mirror.com" }, url).notice,
      undefined,
    );
    assert.match(
      resolveEndpoints(undefined, { HFGET_MIRRORS: "a.example" }, url).notice ?? "",
      /\(HFGET_MIRRORS\)/,
    );
  });

  it("Config.endpoints holds the list and Config.endpoint its first; --endpoint is an alias after --mirror", () => {
    const c = buildConfig(
      { repoId: "a/b", mirror: ["x.example,y.example"], endpoint: ["z.example", "x.example"] },
      {},
    );
    assert.deepEqual(c.endpoints, ["https://x.example", "https://y.example", "https://z.example"]);
    assert.equal(c.endpoint, c.endpoints[0]);
    const single = buildConfig({ repoId: "a/b", mirror: "q.example" }, {});
    assert.deepEqual(single.endpoints, ["https://q.example"]);
    const env = buildConfig({ repoId: "a/b" }, { HFGET_MIRRORS: "m1.example,m2.example" });
    assert.equal(env.endpoint, "https://m1.example");
    assert.equal(env.endpoints.length, 2);
    assert.ok(Object.isFrozen(c));
  });
});

describe("token", () => {
  it("prefers --token, then HF_TOKEN, then $HF_HOME/token", () => {
    const home = mkdtempSync(join(tmpdir(), "hfget-home-"));
    writeFileSync(join(home, "token"), "hf_fromfile\n");
    assert.equal(resolveToken("hf_flag", { HF_TOKEN: "hf_env", HF_HOME: home }), "hf_flag");
    assert.equal(resolveToken(undefined, { HF_TOKEN: "hf_env", HF_HOME: home }), "hf_env");
    assert.equal(resolveToken(undefined, { HF_HOME: home }), "hf_fromfile");
    assert.equal(resolveToken(undefined, { HF_HOME: join(home, "missing") }), undefined);
    assert.equal(resolveToken("", { HF_TOKEN: "", HF_HOME: join(home, "missing") }), undefined);
  });
});

describe("cache dir", () => {
  it("follows huggingface_hub's order", () => {
    assert.equal(defaultCacheDir({ HF_HUB_CACHE: "/a", HUGGINGFACE_HUB_CACHE: "/b", HF_HOME: "/c" }), "/a");
    assert.equal(defaultCacheDir({ HUGGINGFACE_HUB_CACHE: "/b", HF_HOME: "/c" }), "/b");
    assert.equal(defaultCacheDir({ HF_HOME: "/c", XDG_CACHE_HOME: "/x" }), "/c/hub");
    assert.equal(defaultCacheDir({ XDG_CACHE_HOME: "/x" }), "/x/huggingface/hub");
  });
});

describe("repo ids", () => {
  it("accepts every form a user pastes", () => {
    assert.deepEqual(parseRepoArg("gpt2").repo, { type: "model", id: "gpt2" });
    assert.deepEqual(parseRepoArg("openai-community/gpt2").repo, {
      type: "model",
      id: "openai-community/gpt2",
    });
    assert.deepEqual(parseRepoArg("datasets/org/name").repo, { type: "dataset", id: "org/name" });
    assert.deepEqual(parseRepoArg("spaces/org/name").repo, { type: "space", id: "org/name" });
    assert.deepEqual(parseRepoArg("models/org/name").repo, { type: "model", id: "org/name" });
    const url = parseRepoArg("https://huggingface.co/datasets/org/name/tree/v1.0");
    assert.deepEqual(url.repo, { type: "dataset", id: "org/name" });
    assert.equal(url.revision, "v1.0");
    assert.deepEqual(parseRepoArg("https://hf-mirror.com/org/name").repo, { type: "model", id: "org/name" });
    assert.equal(parseRepoArg("https://huggingface.co/org/name/blob/main/config.json").revision, "main");
  });
  it("lets --repo-type win", () => {
    assert.deepEqual(parseRepoArg("org/name", "dataset").repo, { type: "dataset", id: "org/name" });
    assert.deepEqual(parseRepoArg("spaces/org/name", "model").repo, { type: "model", id: "org/name" });
  });
  it("refuses malformed ids", () => {
    for (const bad of [
      "",
      " ",
      "a/b/c",
      "/a",
      "a/",
      "a//b",
      "a/../b",
      "-a/b",
      "a/b.",
      "a b/c",
      "datasets/",
    ]) {
      usage(() => parseRepoArg(bad));
    }
  });
  it("names cache folders like huggingface_hub", () => {
    assert.equal(repoFolderName({ type: "model", id: "org/name" }), "models--org--name");
    assert.equal(repoFolderName({ type: "dataset", id: "name" }), "datasets--name");
  });
});

describe("buildConfig", () => {
  it("applies defaults and validates numbers", () => {
    const c = buildConfig({ repoId: "org/name" }, { HF_HOME: "/h" });
    assert.equal(c.revision, "main");
    assert.equal(c.endpoint, "https://huggingface.co");
    assert.equal(c.cacheDir, "/h/hub");
    assert.equal(c.connections, 32);
    assert.equal(c.maxFiles, 32);
    assert.ok(Object.isFrozen(c));
    usage(() => buildConfig({ repoId: "org/name", connections: "0" }, {}));
    usage(() => buildConfig({ repoId: "org/name", connections: "x" }, {}));
    usage(() => buildConfig({ repoId: "org/name", chunkSize: "1k" }, {}));
    usage(() => buildConfig({ repoId: "org/name", timeout: "-1" }, {}));
    usage(() => buildConfig({ repoId: "org/name", repoType: "weights" }, {}));
    usage(() => buildConfig({ repoId: "org/name", revision: "a\nb" }, {}));
  });
  it("takes the revision from a pasted URL unless --revision is given", () => {
    assert.equal(buildConfig({ repoId: "https://huggingface.co/o/n/tree/dev" }, {}).revision, "dev");
    assert.equal(
      buildConfig({ repoId: "https://huggingface.co/o/n/tree/dev", revision: "v2" }, {}).revision,
      "v2",
    );
  });
  it("reads HF_HUB_OFFLINE and proxies", () => {
    const c = buildConfig({ repoId: "o/n" }, { HF_HUB_OFFLINE: "1", HTTPS_PROXY: "http://proxy:3128" });
    assert.equal(c.offline, true);
    assert.equal(c.proxy.httpsProxy, "http://proxy:3128");
  });
  it("parses sizes", () => {
    assert.equal(parseSize("16M", "x"), 16 * 1024 * 1024);
    assert.equal(parseSize("16MiB", "x"), 16 * 1024 * 1024);
    assert.equal(parseSize("1MB", "x"), 1_000_000);
    assert.equal(parseSize("4096", "x"), 4096);
    usage(() => parseSize("lots", "x"));
  });
});
