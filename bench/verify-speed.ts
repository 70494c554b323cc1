// The `verify` scenario: how fast `hfget cache verify` re-hashes a cache, against `sha256sum` on the
// same blobs (issue 11: "verify's hashing speed is in the benchmark"). No network: the blobs are the
// bench's generated big files, hard-linked into a cache folder, read from a warm page cache so that
// the hashing (not the disk) is measured. Both run under GNU time, alternating, once per round.
import { copyFile, link, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { type Dataset, ensureDataset, warmPageCache } from "./data.js";
import { runTimed } from "./measure.js";
import type { ToolCommand } from "./tools.js";
import { errorMessage, fmt, log, MIB, median, PROJECT_ROOT, WORK_DIR } from "./util.js";

export interface VerifyRun {
  tool: "hfget" | "sha256sum";
  round: number;
  ok: boolean;
  error?: string;
  wallS: number;
  cpuS: number;
  gbPerS: number;
}

export interface VerifyBenchResult {
  name: "verify";
  description: string;
  smoke: boolean;
  rounds: number;
  blobs: number;
  bytes: number;
  runs: VerifyRun[];
  /** Medians over the ok rounds. */
  hfgetGBps: number;
  sha256sumGBps: number;
  /** hfget GB/s / sha256sum GB/s. */
  ratio: number;
  failures: string[];
}

/** 8 blobs (so the hashing threads have work to share) of 128 MiB, or 8 MiB with --smoke. */
const BLOBS = 8;

export async function runVerifyBench(opts: { rounds: number; smoke: boolean }): Promise<VerifyBenchResult> {
  const each = (opts.smoke ? 8 : 128) * MIB;
  const rounds = opts.smoke ? 1 : opts.rounds;
  const sets: Dataset[] = [];
  for (let i = 0; i < BLOBS; i++) {
    const name = `verify-${i + 1}-of-${BLOBS}-${each / MIB}MiB`;
    sets.push(await ensureDataset({ kind: "big", name, size: each, path: `${name}.bin` }));
  }
  const files = sets.flatMap((d) => d.files);
  const cache = join(WORK_DIR, "verify", "cache");
  const blobs = join(cache, "models--bench--verify", "blobs");
  await rm(join(WORK_DIR, "verify"), { recursive: true, force: true });
  await mkdir(blobs, { recursive: true });
  for (const f of files) {
    const dest = join(blobs, f.sha256);
    await link(f.abs, dest).catch(() => copyFile(f.abs, dest));
  }
  for (const d of sets) await warmPageCache(d);
  const bytes = files.reduce((n, f) => n + f.size, 0);
  const scratchDir = join(WORK_DIR, "verify", "scratch");
  await mkdir(scratchDir, { recursive: true });
  const blobPaths = files.map((f) => join(blobs, f.sha256));
  const commands: Record<VerifyRun["tool"], ToolCommand> = {
    hfget: {
      cmd: process.execPath,
      args: [join(PROJECT_ROOT, "bin", "hfget.js"), "cache", "verify", "--cache-dir", cache, "--quiet"],
      env: { ...process.env, NO_COLOR: "1" },
    },
    sha256sum: { cmd: "sha256sum", args: blobPaths, env: process.env },
  };
  const runs: VerifyRun[] = [];
  const failures: string[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const tool of ["sha256sum", "hfget"] as const) {
      const m = await runTimed(commands[tool], { scratchDir, timeoutMs: 600_000 });
      let error: string | undefined;
      if (m.exitCode !== 0 || m.timedOut) error = `exit ${m.exitCode}: ${m.stderrTail.trim().slice(-400)}`;
      else if (tool === "sha256sum") {
        // every line `<hash>  <path>` must name its own file
        const bad = m.stdout
          .trim()
          .split("\n")
          .filter((l) => {
            const [h, p] = l.split(/\s+/);
            return p === undefined || !p.endsWith(`/${h}`);
          });
        if (bad.length > 0) error = `sha256sum disagrees with the names: ${bad.slice(0, 2).join("; ")}`;
      }
      const run: VerifyRun = {
        tool,
        round,
        ok: error === undefined,
        wallS: m.wallS,
        cpuS: m.userS + m.sysS,
        gbPerS: bytes / 1e9 / m.wallS,
      };
      if (error !== undefined) {
        run.error = error;
        failures.push(`verify ${tool} round ${round + 1}: ${error}`);
      }
      runs.push(run);
      log(
        `verify round ${round + 1}/${rounds} ${tool}: ${fmt(m.wallS)} s, ${fmt(run.gbPerS)} GB/s, cpu ${fmt(run.cpuS)} s${error === undefined ? ", ok" : `, FAILED: ${error}`}`,
      );
    }
  }
  const med = (tool: VerifyRun["tool"]) =>
    median(runs.filter((r) => r.tool === tool && r.ok).map((r) => r.gbPerS));
  const hfgetGBps = med("hfget");
  const sha256sumGBps = med("sha256sum");
  await rm(join(WORK_DIR, "verify"), { recursive: true, force: true }).catch((err: unknown) =>
    log(`could not remove the verify cache: ${errorMessage(err)}`),
  );
  return {
    name: "verify",
    description: `hfget cache verify vs sha256sum over ${BLOBS} blobs of ${each / MIB} MiB (warm page cache)`,
    smoke: opts.smoke,
    rounds,
    blobs: files.length,
    bytes,
    runs,
    hfgetGBps,
    sha256sumGBps,
    ratio: hfgetGBps / sha256sumGBps,
    failures,
  };
}

/** Console and markdown lines for the result. */
export function verifyReport(r: VerifyBenchResult): string[] {
  const cpu = (tool: VerifyRun["tool"]) =>
    median(r.runs.filter((x) => x.tool === tool && x.ok).map((x) => x.cpuS));
  return [
    `## verify: ${r.description}`,
    "",
    `| tool | GB/s | CPU-s |`,
    `| --- | ---: | ---: |`,
    `| hfget cache verify | ${fmt(r.hfgetGBps)} | ${fmt(cpu("hfget"))} |`,
    `| sha256sum | ${fmt(r.sha256sumGBps)} | ${fmt(cpu("sha256sum"))} |`,
    "",
    `hfget / sha256sum: ${fmt(r.ratio)} x (${r.blobs} blobs, ${fmt(r.bytes / 1e9)} GB, median of ${r.rounds} round(s))`,
    "",
  ];
}
