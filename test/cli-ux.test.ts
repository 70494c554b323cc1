import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { lineReporter } from "../src/progress.js";
import {
  type FakeHub,
  fileFromBuffer,
  makeRepo,
  pushCommit,
  randomBytesSeeded,
  startFakeHub,
  TEST_TOKEN,
} from "./fakehub/index.js";
import { cleanEnv, runCli, tempDir } from "./helpers.js";

const CAP = { timeoutMs: 10_000 };

function paths(stdout: string): string[] {
  return (JSON.parse(stdout) as { files: { path: string }[] }).files.map((f) => f.path).sort();
}

/** One error line on stderr, naming `what`, no stack trace. */
function oneErrorLine(stderr: string, what: string): void {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0] ?? "", /^hfget: error: /, stderr);
  assert.ok(lines[0]?.includes(what), `stderr should name ${what}: ${stderr}`);
  assert.doesNotMatch(stderr, /\n\s+at /);
}

describe("cli ux (issue 8 items 4, 5, 8, 10)", () => {
  let hub: FakeHub;
  const files = [
    fileFromBuffer("config.json", Buffer.from('{"a":1}')),
    fileFromBuffer("README.md", Buffer.from("# m\n")),
    fileFromBuffer("data/a.txt", Buffer.from("aaa")),
    fileFromBuffer("data/sub/b.txt", Buffer.from("bbb")),
    fileFromBuffer("model.bin", randomBytesSeeded(3, 200_000), { lfs: true }),
  ];
  before(async () => {
    const repo = makeRepo("org/model", files);
    pushCommit(repo, [fileFromBuffer("release.txt", Buffer.from("r1"))], "release/1.x");
    const gated = makeRepo("org/gated", [fileFromBuffer("w.bin", Buffer.from("x"), { lfs: true })], {
      gated: true,
    });
    hub = await startFakeHub({ repos: [repo, gated] });
  });
  after(async () => {
    await hub.close();
  });
  const base = () => ["--mirror", hub.url, "--cache-dir", tempDir(), "--json"];

  it("item 4: --local-dir under a file, on a file, /proc and /sys: exit 7, one line naming the path", async () => {
    const dir = tempDir();
    const file = join(dir, "plain");
    writeFileSync(file, "x");
    for (const target of [join(file, "sub"), file, "/proc/hfget-x", "/sys/hfget-x"]) {
      const r = await runCli(["org/model", "--mirror", hub.url, "--local-dir", target], {
        env: cleanEnv(),
        ...CAP,
      });
      assert.equal(r.code, 7, `${target}: ${r.stderr}`);
      oneErrorLine(
        r.stderr
          .split("\n")
          .filter((l) => !/^hfget: (revision|\d+ files)/.test(l))
          .join("\n"),
        target,
      );
    }
  });

  it("item 4: a first SIGTERM ends a hanging run with exit 130", async () => {
    const slow = await startFakeHub({ repos: [makeRepo("org/slow", files)], latencyMs: 60_000 });
    try {
      const r = await runCli(["org/slow", "--mirror", slow.url, "--cache-dir", tempDir()], {
        env: cleanEnv(),
        ...CAP,
        // Signal once the run is waiting on the hub (its handlers are installed by then).
        onSpawn: (child) => {
          const poll = setInterval(() => {
            if (slow.log.length > 0) {
              clearInterval(poll);
              child.kill("SIGTERM");
            }
          }, 50);
          child.on("close", () => clearInterval(poll));
        },
      });
      assert.equal(r.signal, null, "killed by the test's cap, not ended by SIGTERM");
      assert.equal(r.code, 130, r.stderr);
    } finally {
      await slow.close();
    }
  });

  it("item 5: blob/ and resolve/ URLs download only that file; tree/ only that folder", async () => {
    for (const kind of ["blob", "resolve"]) {
      const r = await runCli([`${hub.url}/org/model/${kind}/main/config.json`, ...base()], {
        env: cleanEnv(),
        ...CAP,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(paths(r.stdout), ["config.json"]);
    }
    const t = await runCli([`${hub.url}/org/model/tree/main/data`, ...base()], { env: cleanEnv(), ...CAP });
    assert.equal(t.code, 0, t.stderr);
    assert.deepEqual(paths(t.stdout), ["data/a.txt", "data/sub/b.txt"]);
  });

  it("item 5: tree/release/1.x resolves the branch release/1.x", async () => {
    const r = await runCli([`${hub.url}/org/model/tree/release/1.x`, ...base()], { env: cleanEnv(), ...CAP });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(paths(r.stdout), ["release.txt"]);
  });

  it("item 5: the URL's host is the endpoint; --mirror wins with a notice", async () => {
    const r = await runCli([`${hub.url}/org/model/blob/main/README.md`, "--cache-dir", tempDir(), "--json"], {
      env: cleanEnv(),
      ...CAP,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(paths(r.stdout), ["README.md"]);
    const m = await runCli(
      ["https://hub.invalid/org/model/blob/main/README.md", "--mirror", hub.url, "--cache-dir", tempDir()],
      { env: cleanEnv(), ...CAP },
    );
    assert.equal(m.code, 0, m.stderr);
    const notes = m.stderr.split("\n").filter((l) => l.startsWith("hfget: note:"));
    assert.equal(notes.length, 1, m.stderr);
    assert.ok(notes[0]?.includes(hub.url) && notes[0].includes("https://hub.invalid"), m.stderr);
  });

  it("item 5: a malformed % escape exits 2; --json errors go to stdout as {error}", async () => {
    const r = await runCli([`${hub.url}/org/model/blob/main/%zz`, "--json"], { env: cleanEnv(), ...CAP });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    const e = JSON.parse(r.stdout) as { error: { code: string; message: string; exitCode: number } };
    assert.equal(e.error.code, "USAGE");
    assert.equal(e.error.exitCode, 2);
    assert.match(e.error.message, /%zz/);
  });

  it("item 10: HF_TOKEN_PATH, HUGGING_FACE_HUB_TOKEN, HF_TOKEN first", async () => {
    const tokenFile = join(tempDir(), "tok");
    writeFileSync(tokenFile, `${TEST_TOKEN}\n`);
    const cases: [Record<string, string>, string][] = [
      [{ HF_TOKEN_PATH: tokenFile }, "token"],
      [{ HUGGING_FACE_HUB_TOKEN: TEST_TOKEN }, "token"],
      [{ HF_TOKEN: TEST_TOKEN, HUGGING_FACE_HUB_TOKEN: "hf_wrong" }, "token"],
      [{ HF_TOKEN: "hf_wrong", HUGGING_FACE_HUB_TOKEN: TEST_TOKEN }, "other"],
    ];
    for (const [env, want] of cases) {
      hub.clearLog();
      const r = await runCli(["org/model", "config.json", ...base()], { env: cleanEnv(env), ...CAP });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!r.stdout.includes(TEST_TOKEN) && !r.stderr.includes(TEST_TOKEN));
      const got = new Set(hub.log.filter((l) => l.server === "hub").map((l) => l.authorization));
      assert.deepEqual([...got], [want], JSON.stringify(Object.keys(env)));
    }
  });

  it("item 10: HF_HUB_DOWNLOAD_TIMEOUT is read (a bad value is a usage error naming it)", async () => {
    const r = await runCli(["org/model", ...base()], {
      env: cleanEnv({ HF_HUB_DOWNLOAD_TIMEOUT: "abc" }),
      ...CAP,
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /HF_HUB_DOWNLOAD_TIMEOUT/);
  });

  it("item 10: --local-dir writes .cache/huggingface/.gitignore with *", async () => {
    const dir = tempDir();
    const r = await runCli(["org/model", "config.json", "--mirror", hub.url, "--local-dir", dir], {
      env: cleanEnv(),
      ...CAP,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(dir, ".cache", "huggingface", ".gitignore"), "utf8").trim(), "*");
  });

  it("item 10: --max-workers and --force-download are accepted aliases", async () => {
    const cache = tempDir();
    const args = ["org/model", "config.json", "--mirror", hub.url, "--cache-dir", cache, "--json"];
    const a = await runCli([...args, "--max-workers", "2"], { env: cleanEnv(), ...CAP });
    assert.equal(a.code, 0, a.stderr);
    const bad = await runCli([...args, "--max-workers", "0"], { env: cleanEnv(), ...CAP });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--max-workers/);
    hub.clearLog();
    const f = await runCli([...args, "--force-download"], { env: cleanEnv(), ...CAP });
    assert.equal(f.code, 0, f.stderr);
    assert.ok(
      hub.log.some((l) => l.method === "GET" && l.url.includes("/resolve/")),
      "--force-download fetched the file again",
    );
  });

  it("item 8: --include matching nothing exits 3 naming the pattern", async () => {
    const r = await runCli(["org/model", "--include", "*.nothing", ...base()], { env: cleanEnv(), ...CAP });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /\*\.nothing/);
  });

  it("item 8: a gated repo's error names the repo", async () => {
    const r = await runCli(["org/gated", ...base()], { env: cleanEnv(), ...CAP });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /org\/gated/);
    assert.doesNotMatch(r.stderr, /w\.bin/);
  });

  it("item 8: hfget help / help ls print help, exit 0, and fetch nothing", async () => {
    hub.clearLog();
    const h = await runCli(["help"], { env: cleanEnv({ HF_ENDPOINT: hub.url }), ...CAP });
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, /Usage: hfget/);
    const l = await runCli(["help", "ls"], { env: cleanEnv({ HF_ENDPOINT: hub.url }), ...CAP });
    assert.equal(l.code, 0, l.stderr);
    assert.match(l.stdout, /Usage: hfget ls/);
    assert.equal(hub.log.length, 0);
  });

  it("item 8: HF_HUB_DISABLE_PROGRESS_BARS=1 silences status lines; NO_COLOR/FORCE_COLOR decide colour", async () => {
    const args = ["org/model", "config.json", "--mirror", hub.url, "--cache-dir", tempDir()];
    const on = await runCli(args, { env: cleanEnv(), ...CAP });
    assert.equal(on.code, 0, on.stderr);
    assert.match(on.stderr, /hfget: /);
    const off = await runCli(args, { env: cleanEnv({ HF_HUB_DISABLE_PROGRESS_BARS: "1" }), ...CAP });
    assert.equal(off.code, 0, off.stderr);
    assert.equal(off.stderr, "");
    const bad = ["org/nope", "--mirror", hub.url, "--cache-dir", tempDir()];
    const plain = await runCli(bad, { env: cleanEnv({ NO_COLOR: "1" }), ...CAP });
    assert.ok(!plain.stderr.includes("\u001b["), plain.stderr);
    const forced = await runCli(bad, { env: cleanEnv({ NO_COLOR: undefined, FORCE_COLOR: "1" }), ...CAP });
    assert.ok(forced.stderr.includes("\u001b[31m"), forced.stderr);
  });
});

describe("line reporter (issue 8 item 8)", () => {
  it("the first status line says 'starting', never '0 B/s' with no ETA", () => {
    let clock = 0;
    const out: string[] = [];
    const stream = {
      write: (s: string) => out.push(s) !== 0,
      isTTY: false,
    } as unknown as NodeJS.WritableStream;
    const r = lineReporter({ stream, quiet: false, intervalMs: 1000, now: () => clock });
    r.onEvent({ type: "planned", files: 1, bytes: 1000 });
    clock = 1500;
    r.onEvent({ type: "planned", files: 1, bytes: 1000 });
    const status = out.filter((l) => l.includes(" of "));
    assert.equal(status.length, 1, out.join(""));
    assert.match(status[0] ?? "", /starting/);
    assert.doesNotMatch(status[0] ?? "", /0 B\/s/);
  });

  it("says when it waits: a held lock, and backoff (429) at most once per interval", () => {
    let clock = 0;
    const out: string[] = [];
    const stream = {
      write: (s: string) => out.push(s) !== 0,
      isTTY: false,
    } as unknown as NodeJS.WritableStream;
    const r = lineReporter({ stream, quiet: false, intervalMs: 5000, now: () => clock });
    r.onEvent({ type: "lock-wait", path: "w.bin", lock: "/c/.locks/x/abc.lock" });
    const retry = { type: "retry", path: "w.bin", attempt: 2, delayMs: 30_000, reason: "HTTP 429" } as const;
    r.onEvent(retry);
    r.onEvent(retry);
    clock = 6000;
    r.onEvent({ ...retry, attempt: 3 });
    r.onEvent({ ...retry, delayMs: 200 });
    const text = out.join("");
    assert.match(text, /waiting for w\.bin: another process holds its lock \/c\/\.locks\/x\/abc\.lock/);
    const waits = out.filter((l) => l.includes("HTTP 429; waiting"));
    assert.equal(waits.length, 2, text);
    assert.match(waits[0] ?? "", /attempt 2/);
    assert.match(waits[1] ?? "", /attempt 3/);
  });
});
