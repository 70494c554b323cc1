import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { displayWidth } from "../src/progress-line.js";
import { fileFromBuffer, makeRepo, randomBytesSeeded, startFakeHub } from "./fakehub/index.js";
import { BIN, cleanEnv, tempDir } from "./helpers.js";

/**
 * The bars as a user sees them: the built CLI under a real pseudo-terminal (util-linux `script`,
 * no native build), 80 columns, against the fake hub.
 */

const LONG = "transformer/diffusion_pytorch_model-00001-of-00004.safetensors";

const hasScript = spawnSync("script", ["--version"], { stdio: "ignore" }).status === 0;
const skip = !hasScript && process.env.CI !== "true" ? "util-linux `script` is not installed" : false;

/** Runs `cmd` under a PTY of `columns` columns; resolves with everything the terminal received. */
function inPty(cmd: string, columns: number, env: Record<string, string | undefined>, timeoutMs: number) {
  return new Promise<{ code: number | null; out: string }>((resolve, reject) => {
    const child = spawn("script", ["-qfec", `stty cols ${columns} rows 40; exec ${cmd}`, "/dev/null"], {
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** What the terminal drew, as the pieces written between cursor moves (colours dropped). */
function drawnPieces(raw: string): string[] {
  return (
    raw
      // biome-ignore lint/suspicious/noControlCharactersInRegex: colours are not text
      .replace(/\u001b\[[0-9;]*m/g, "")
      // biome-ignore lint/suspicious/noControlCharactersInRegex: a cursor move starts a new piece
      .replace(/\u001b\[[0-9;?]*[A-Za-z]|\u001b[78]/g, "\n")
      .split(/[\r\n]+/)
      .filter((p) => p.trim() !== "")
  );
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

describe("progress on a real terminal (issue 8 item 8)", { skip }, () => {
  it("at 80 columns: ETA, a name cut in the middle, a 429 wait, lines that fit, a summary", async () => {
    assert.ok(hasScript, "util-linux `script` is required under CI=true");
    const big = randomBytesSeeded(8, 9 * 1024 * 1024);
    const repo = makeRepo("org/tty", [
      fileFromBuffer("config.json", Buffer.from("{}")),
      fileFromBuffer(LONG, big, { lfs: true }),
    ]);
    const hub = await startFakeHub({ repos: [repo] });
    try {
      // The first API request and the first CDN request is told to come back in 1 s; then the bytes flow slowly enough
      // (about 2 s) for the bars to draw several times.
      hub.faults.push(
        {
          server: "hub",
          pathIncludes: "/api/models/org/tty/revision/",
          times: 1,
          fault: { type: "status", status: 429, headers: { "retry-after": "1" } },
        },
        { server: "cdn", times: 1, fault: { type: "status", status: 429, headers: { "retry-after": "1" } } },
        { server: "cdn", fault: { type: "throttle", bytesPerSec: 8_000_000 } },
      );
      const cache = tempDir();
      const cmd = [
        process.execPath,
        BIN,
        "org/tty",
        "--mirror",
        hub.url,
        "--cache-dir",
        cache,
        "--connections",
        "2",
      ]
        .map(q)
        .join(" ");
      const { code, out } = await inPty(cmd, 80, cleanEnv({ TERM: "xterm" }), 30_000);
      assert.equal(code, 0, out);
      const pieces = drawnPieces(out);
      if (process.env.SHOW_TTY) console.log(pieces.join("\n"));
      const bars = pieces.filter((p) => /\d+%/.test(p));
      assert.ok(bars.length > 0, out);
      for (const b of bars) assert.ok(displayWidth(b) <= 80, `wider than 80 columns: ${b}`);
      assert.ok(
        bars.some((b) => /ETA \d/.test(b)),
        `no ETA drawn:\n${bars.join("\n")}`,
      );
      assert.ok(
        bars.some((b) => /transforme\S*…\S*-of-00004\.safetensors$/.test(b)),
        `no name cut in the middle:\n${bars.join("\n")}`,
      );
      assert.ok(
        bars.some((b) => /retrying in \d+(\.\d)?s \(429\)/.test(b)),
        `no wait drawn:\n${bars.join("\n")}`,
      );
      assert.ok(
        bars.some((b) => /retrying in \d+(\.\d)?s \(429\) contacting the hub$/.test(b)),
        `no wait drawn for the API's 429:\n${bars.join("\n")}`,
      );
      // NO_COLOR (set by cleanEnv) holds on a terminal too.
      // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for colour codes
      assert.doesNotMatch(out, /\u001b\[[0-9;]*m/);
      // The run's own line says so too (config.json's 2 bytes moved: no "2 B/s, ETA 541h" instead).
      assert.ok(
        bars.some((b) => /retrying in \d+(\.\d)?s \(429\) total \d\/2 files$/.test(b)),
        `the total line does not tell of the wait:\n${bars.join("\n")}`,
      );
      assert.ok(
        pieces.some((p) =>
          /^hfget: finished 2\/2 files \(0 already present\), 9\.4 MB in [\d.]+s \(.+\/s\) -> /.test(p),
        ),
        `no summary line:\n${pieces.join("\n")}`,
      );
      assert.ok(out.includes(cache), out);
    } finally {
      await hub.close();
    }
  });

  it("HF_HUB_DISABLE_PROGRESS_BARS=1 draws no bars on a terminal either", async () => {
    const repo = makeRepo("org/quiet", [fileFromBuffer("config.json", Buffer.from("{}"))]);
    const hub = await startFakeHub({ repos: [repo] });
    try {
      const cmd = [process.execPath, BIN, "org/quiet", "--mirror", hub.url, "--cache-dir", tempDir()]
        .map(q)
        .join(" ");
      const env = cleanEnv({ TERM: "xterm", HF_HUB_DISABLE_PROGRESS_BARS: "1" });
      const { code, out } = await inPty(cmd, 80, env, 20_000);
      assert.equal(code, 0, out);
      const pieces = drawnPieces(out);
      assert.equal(pieces.length, 1, out);
      assert.match(pieces[0] ?? "", /models--org--quiet\/snapshots\/[0-9a-f]{40}$/);
    } finally {
      await hub.close();
    }
  });
});
