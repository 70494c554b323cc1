import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { barReporter, describeWaits, lineReporter, shortReason } from "../src/progress.js";
import { displayWidth, formatBarLine, truncateMiddle } from "../src/progress-line.js";

const SHARD = "model-00001-of-00004.safetensors";
const LONG = "transformer/diffusion_pytorch_model-00001-of-00004.safetensors";
const CJK = "模型权重/中文名字的模型文件-00001-of-00004.safetensors";
const MOVING = { done: 1_234_567_890, total: 4_987_654_321, rate: 98_765_432 };

describe("progress line layout (issue 8 item 8: a pure function of state and columns)", () => {
  it("cuts names in the middle, keeping the shard number and extension", () => {
    assert.equal(truncateMiddle(SHARD, 31), "model-0000…of-00004.safetensors");
    assert.equal(truncateMiddle(SHARD, 40), SHARD);
    assert.equal(displayWidth(truncateMiddle(LONG, 25)), 25);
    assert.match(truncateMiddle(LONG, 25), /…/);
    assert.match(truncateMiddle(LONG, 25), /0004\.safetensors$/);
  });

  it("cuts wide (CJK) names by columns, never inside a character", () => {
    for (let w = 1; w <= 50; w++) {
      const cut = truncateMiddle(CJK, w);
      assert.ok(displayWidth(cut) <= w, `${w}: ${cut}`);
      // Two columns per CJK character: an odd width may leave one column unused, never more.
      if (w >= 3 && displayWidth(CJK) > w) assert.ok(displayWidth(cut) >= w - 1, `${w}: ${cut}`);
      assert.ok(CJK.includes(cut.replace("…", "")) || cut.split("…").every((p) => CJK.includes(p)), cut);
    }
  });

  for (const columns of [60, 79, 99, 199]) {
    it(`at ${columns + 1} columns the ETA and the name's end stay, and the line fits`, () => {
      for (const name of [SHARD, LONG, CJK, "total 3/10 files"]) {
        const line = formatBarLine({ name, ...MOVING }, columns);
        assert.ok(displayWidth(line) <= columns, `${displayWidth(line)} > ${columns}: ${line}`);
        assert.match(line, /ETA \d/, line);
        assert.match(line, /24%/, line);
        const end = name.slice(-12);
        assert.ok(line.endsWith(end), `${columns}: name end ${end} missing: ${line}`);
        if (displayWidth(name) + 60 <= columns) assert.ok(line.includes(name), line);
      }
    });
  }

  it("at 200 columns shows everything: bar, bytes of total, rate, ETA, full name", () => {
    const line = formatBarLine({ name: LONG, ...MOVING }, 199);
    assert.match(line, /^█+░+ +24% +1\.2 GB \/ 5\.0 GB +98\.8 MB\/s ETA 38s +transformer\//, line);
    assert.ok(line.endsWith(LONG), line);
  });

  it("at 80 columns a long name is cut in the middle, not at the end", () => {
    const line = formatBarLine({ name: LONG, ...MOVING }, 79);
    assert.match(line, /ETA 38s +transforme.*…-of-00004\.safetensors$/, line);
  });

  it("a wait replaces rate and ETA and stays readable at 60 and 80 columns", () => {
    for (const columns of [59, 79]) {
      for (const wait of ["retrying in 12s (429)", "waiting for lock held by another process"]) {
        const line = formatBarLine({ name: LONG, done: 0, total: 0, rate: 0, wait }, columns);
        assert.ok(displayWidth(line) <= columns, line);
        assert.doesNotMatch(line, /ETA/);
        assert.match(
          line,
          wait.startsWith("retrying") ? /retrying in 12s \(429\)/ : /waiting for lock/,
          line,
        );
        assert.match(line, /fetensors$/, line);
      }
    }
  });

  it("never exceeds the width, from 1 to 220 columns, whatever the state", () => {
    const states = [
      { name: LONG, ...MOVING },
      { name: CJK, ...MOVING },
      { name: "a", done: 0, total: 0, rate: 0 },
      { name: LONG, done: 5, total: 10, rate: 0, wait: "waiting for lock held by another process" },
      { name: CJK, done: 10, total: 10, rate: 1e12 },
    ];
    for (const s of states) {
      for (let c = 1; c <= 220; c++) {
        const line = formatBarLine(s, c);
        assert.ok(displayWidth(line) <= c, `${c}: ${line}`);
      }
    }
  });
});

describe("wait text", () => {
  it("names the status of a 429 and counts down to the retry", () => {
    assert.equal(shortReason("file w.bin: rate limited (429)"), "429");
    assert.equal(shortReason("HTTP 503 from cdn"), "503");
    assert.equal(shortReason("socket hang up"), "socket hang up");
    const retry = { kind: "retry", until: 12_000, reason: "file w.bin: rate limited (429)" } as const;
    assert.equal(describeWaits([retry], 0), "retrying in 12s (429)");
    assert.equal(describeWaits([{ kind: "lock" }], 0), "waiting for lock held by another process");
    assert.equal(
      describeWaits([{ kind: "lock" }, { kind: "lock" }], 0),
      "2 files waiting for locks held by other processes",
    );
    assert.equal(describeWaits([], 0), undefined);
  });
});

describe("line reporter: API backoffs", () => {
  it("says when a hub API request waits (429 on the revision or the listing)", () => {
    const out: string[] = [];
    const stream = {
      write: (s: string) => out.push(s) !== 0,
      isTTY: false,
    } as unknown as NodeJS.WritableStream;
    const r = lineReporter({ stream, quiet: false, intervalMs: 5000, now: () => 0 });
    r.onEvent({ type: "api-retry", attempt: 1, delayMs: 12_000, reason: "repo org/m: rate limited (429)" });
    assert.deepEqual(out, ["hfget: repo org/m: rate limited (429); waiting 12s (attempt 1)\n"]);
  });
});

describe("bar reporter (TTY)", () => {
  function ttyStream(columns: number) {
    const out: string[] = [];
    const stream = {
      isTTY: true,
      columns,
      write: (s: string) => out.push(s) !== 0,
      // readline's cursor helpers call these on a TTY stream.
      cursorTo: () => true,
      moveCursor: () => true,
      clearLine: () => true,
      clearScreenDown: () => true,
    } as unknown as NodeJS.WritableStream;
    return { out, stream };
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping terminal escapes
  const plain = (s: string) => s.replace(/\u001b\[[0-9;?]*[A-Za-z]|\u001b[78]/g, "");

  it("shows a 429 backoff and a held lock while nothing moves, then a summary line", async () => {
    let clock = 0;
    const { out, stream } = ttyStream(80);
    const r = barReporter({ stream, quiet: false, now: () => clock });
    r.onEvent({ type: "planned", files: 2, bytes: 20_000_000 });
    r.onEvent({ type: "file-start", path: LONG, size: 10_000_000, resumedBytes: 0 });
    r.onEvent({ type: "retry", path: LONG, attempt: 1, delayMs: 12_000, reason: "rate limited (429)" });
    await new Promise((res) => setTimeout(res, 450));
    const retrying = plain(out.join(""));
    assert.match(retrying, /retrying in 12s \(429\)/, retrying);
    r.onEvent({ type: "bytes", path: LONG, bytes: 10_000_000 });
    r.onEvent({ type: "file-done", path: LONG, size: 10_000_000, status: "downloaded" });
    r.onEvent({ type: "lock-wait", path: "small.bin", lock: "/c/.locks/x.lock" });
    clock = 9000; // the rate window moves past the bytes: nothing moves now
    await new Promise((res) => setTimeout(res, 450));
    clock = 20_000;
    await new Promise((res) => setTimeout(res, 450));
    const locked = plain(out.slice(-20).join(""));
    assert.match(locked, /waiting for lock held by another process/, locked);
    assert.match(
      plain(out.join("")),
      /waiting for small\.bin: another process holds its lock \/c\/\.locks\/x\.lock/,
    );
    r.onEvent({
      type: "source-set-aside",
      path: "small.bin",
      endpoint: "http://mirror.example",
      for: "run",
      reason: "sent bad bytes",
    });
    await new Promise((res) => setTimeout(res, 250));
    assert.match(
      plain(out.join("")),
      /http:\/\/mirror\.example dropped for this run \(small\.bin: sent bad bytes\)/,
    );
    r.onEvent({ type: "file-done", path: "small.bin", size: 10_000_000, status: "cached" });
    r.stop({ path: "/cache/snapshots/abc" });
    const last = out.at(-1) ?? "";
    assert.match(
      last,
      /^hfget: finished 2\/2 files \(1 already present\), 10\.0 MB in 20s \(500 kB\/s\) -> \/cache\/snapshots\/abc\n$/,
    );
  });
});

describe("progress while the listing is still paged (planned with `more`)", () => {
  it("the bar line never says 100% and gives no ETA while the total may grow", () => {
    const growing = formatBarLine(
      { name: "total 5/5+ files", done: 1000, total: 1000, rate: 500, more: true },
      100,
    );
    assert.match(growing, /\b99%/, growing);
    assert.doesNotMatch(growing, /ETA/, growing);
    const whole = formatBarLine({ name: "total 5/5 files", done: 1000, total: 1000, rate: 500 }, 100);
    assert.match(whole, /100%/, whole);
  });

  it("plain lines: partial totals say 'at least' and 'N+ files', no 100%; the files line comes once, when whole", () => {
    let clock = 0;
    const out: string[] = [];
    const stream = {
      write: (s: string) => out.push(s) !== 0,
      isTTY: false,
    } as unknown as NodeJS.WritableStream;
    const r = lineReporter({ stream, quiet: false, intervalMs: 1000, now: () => clock });
    r.onEvent({ type: "planned", files: 2, bytes: 2000, more: true });
    r.onEvent({ type: "file-start", path: "a", size: 1000, resumedBytes: 0 });
    r.onEvent({ type: "bytes", path: "a", bytes: 1000 });
    r.onEvent({ type: "file-done", path: "a", size: 1000, status: "downloaded" });
    r.onEvent({ type: "file-done", path: "b", size: 1000, status: "cached" });
    clock = 1500;
    r.onEvent({ type: "bytes", path: "c", bytes: 0 });
    const partial = out.join("");
    assert.match(partial, /hfget: 1\.0 kB of at least 1\.0 kB \(99%\), 2\/2\+ files/, partial);
    assert.doesNotMatch(partial, /100%|ETA|hfget: 2 files/, partial);
    r.onEvent({ type: "planned", files: 4, bytes: 4000, more: false });
    assert.match(out.join(""), /hfget: 4 files, /);
    clock = 3000;
    r.onEvent({ type: "bytes", path: "c", bytes: 1000 });
    // 4000 planned less 1000 present: 2000 of 3000.
    assert.match(out.at(-1)!, /hfget: 2\.0 kB of 3\.0 kB \(66%\), 2\/4 files/, out.at(-1));
  });
});
