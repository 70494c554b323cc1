// The scenarios: what each one downloads, under which network conditions, which tools run, and the
// target hfget must meet. Runs the rounds (tools alternating), checks every output, and summarises.
import { spawnSync } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { BLOBS_DIR, type Dataset, type DatasetSpec, ensureDataset, warmPageCache } from "./data.js";
import { type BenchHub, type BenchRepoRef, startBenchHub } from "./hub.js";
import { type Measured, runTimed } from "./measure.js";
import { type LogMark, type Nginx, startNginx, type ThrottleMode, type Traffic } from "./nginx.js";
import { checkPartial } from "./resume-breakdown.js";
import { type HfgetTarget, isHfget, type RunContext, TOOLS, type Tool, type ToolName } from "./tools.js";
import { errorMessage, fmt, GIB, log, MB, MIB, median, sampleLoad, WORK_DIR } from "./util.js";
import { type VerifyResult, verifyOutput } from "./verify.js";

export type ScenarioName =
  | "big-throttled"
  | "big-loopback"
  | "many-files"
  | "many-files-paged"
  | "memory"
  | "resume";
export const SCENARIO_NAMES: readonly ScenarioName[] = [
  "big-throttled",
  "big-loopback",
  "many-files",
  "many-files-paged",
  "memory",
  "resume",
];

export type Metric = "MB/s" | "files/s";

export type Target =
  | { kind: "ratio"; peer: ToolName; min: number }
  | { kind: "rss"; maxMB: number }
  | { kind: "refetch"; maxPct: number }
  /** hfget MB/s >= frac x (connections x the CDN's cap per connection). */
  | { kind: "physical"; frac: number; connections: number }
  /** hfget CPU-s per GB <= times x the peer's + SHA-256 alone (measured in the same run). */
  | { kind: "cpu-per-gb"; peer: ToolName; times: number }
  /** hfget CPU-s per file <= times x the peer's. */
  | { kind: "cpu-per-file"; peer: ToolName; times: number }
  /** CDN bytes / repo bytes <= max (nothing fetched twice). */
  | { kind: "overfetch"; max: number };

/** Issue 12: every scenario, every way hfget is started. */
const PEAK_RSS_MB = 80;
const MAX_OVERFETCH = 1.01;
/** hfget's default --connections (src/config.ts), for the physical limit of a capped CDN. */
const HFGET_CONNECTIONS = 32;

interface Workload {
  dataset: DatasetSpec;
  repo: BenchRepoRef;
  latencyMs: number;
  /** The CDN's rate cap in bytes per second per connection; 0 = none. */
  limitRate: number;
  metric: Metric;
  /** The listing's page size (the fake hub's default: 1000 entries). */
  pageSize?: number;
}

interface ScenarioDef {
  name: ScenarioName;
  description: string;
  workload(smoke: boolean): Workload;
  tools: readonly ToolName[];
  mode: "timed" | "resume";
  target: Target;
  /** More targets of this scenario (peak RSS and over-fetch apply to every scenario). */
  more?: readonly Target[];
}

function bigWorkload(size: number, latencyMs: number, limitRate: number): Workload {
  const name = `big-${size / MIB}MiB`;
  return {
    dataset: { kind: "big", name, size, path: "model-00001-of-00001.safetensors" },
    repo: { type: "model", id: `bench/${name}` },
    latencyMs,
    limitRate,
    metric: "MB/s",
  };
}

const SMOKE_BIG = 32 * MIB;

function manyWorkload(smoke: boolean): Workload {
  const count = smoke ? 200 : 3000;
  const name = `many-${count}`;
  return {
    dataset: { kind: "many", name, count, minSize: 1024, maxSize: 20 * 1024 },
    repo: { type: "dataset", id: `bench/${name}` },
    latencyMs: 30,
    limitRate: 0,
    metric: "files/s",
  };
}

const DEFS: Record<ScenarioName, ScenarioDef> = {
  "big-throttled": {
    name: "big-throttled",
    description: "1 x 1 GiB LFS file, CDN capped at 10 MB/s per connection, 30 ms hub latency",
    workload: (smoke) => bigWorkload(smoke ? SMOKE_BIG : GIB, 30, 10 * MB),
    tools: ["hfget", "hfget-node", "aria2c", "curl"],
    mode: "timed",
    target: { kind: "ratio", peer: "aria2c", min: 1.5 },
    more: [{ kind: "physical", frac: 0.9, connections: HFGET_CONNECTIONS }],
  },
  "big-loopback": {
    name: "big-loopback",
    description: "1 x 2 GiB LFS file, no throttle, no added latency",
    workload: (smoke) => bigWorkload(smoke ? SMOKE_BIG : 2 * GIB, 0, 0),
    tools: ["hfget", "hfget-node", "aria2c", "curl"],
    mode: "timed",
    target: { kind: "ratio", peer: "curl", min: 0.8 },
    more: [{ kind: "cpu-per-gb", peer: "curl", times: 1.5 }],
  },
  "many-files": {
    name: "many-files",
    description:
      "dataset of 3000 regular files of 1-20 KiB in nested folders, 30 ms hub latency, listing timed",
    workload: (smoke) => manyWorkload(smoke),
    tools: ["hfget", "hfget-node", "aria2c"],
    mode: "timed",
    target: { kind: "ratio", peer: "aria2c", min: 2.0 },
    more: [{ kind: "cpu-per-file", peer: "aria2c", times: 1.0 }],
  },
  "many-files-paged": {
    name: "many-files-paged",
    description:
      "many-files with the listing 50 entries a page (a slow mirror's worst case), 30 ms per request, listing timed",
    workload: (smoke) => ({ ...manyWorkload(smoke), pageSize: 50 }),
    tools: ["hfget", "hfget-node", "aria2c"],
    mode: "timed",
    target: { kind: "ratio", peer: "aria2c", min: 2.0 },
    more: [{ kind: "cpu-per-file", peer: "aria2c", times: 1.0 }],
  },
  memory: {
    name: "memory",
    description: "the big-loopback download; peak RSS (GNU time %M, max over rounds)",
    workload: (smoke) => bigWorkload(smoke ? SMOKE_BIG : 2 * GIB, 0, 0),
    tools: ["hfget", "hfget-node", "aria2c", "curl"],
    mode: "timed",
    target: { kind: "rss", maxMB: PEAK_RSS_MB },
  },
  resume: {
    name: "resume",
    description:
      "big-throttled; SIGKILL at 50% written (/proc wchar of the tool's processes), rerun; CDN bytes from nginx's logs",
    // In smoke mode the file is small, so each connection is slowed further to land the kill mid-transfer.
    workload: (smoke) => bigWorkload(smoke ? SMOKE_BIG : GIB, 30, smoke ? 4 * MB : 10 * MB),
    // hfget-node too: `HFGET_BENCH_NODE_BIN` then runs another build's resume in the same rounds (A/B).
    tools: ["hfget", "hfget-node", "aria2c"],
    mode: "resume",
    target: { kind: "refetch", maxPct: 2 },
  },
};

export interface BenchOptions {
  rounds: number;
  smoke: boolean;
  tools: readonly ToolName[];
  hfgetTarget: HfgetTarget;
  throttle: ThrottleMode;
  nginxWorkers: number;
  /** Why hfget cannot run at all (it is not built yet), or undefined. */
  hfgetProblem: string | undefined;
  keepOutput: boolean;
}

export interface ResumeInfo {
  /** False when the tool finished before the kill point. */
  exercised: boolean;
  killAtS: number;
  killWrittenBytes: number;
  firstWallS: number;
  secondWallS: number;
  cdnBytes: number;
  fetchedTwiceBytes: number;
  fetchedTwicePct: number;
  /**
   * hfget only: where the bytes fetched twice come from (resume-breakdown.ts). Delivered to the
   * killed run; of them, recorded in the resume state and on disk but not recorded; the rest was
   * unwritten at the kill. The rerun's extra: what it fetched beyond the state's gaps.
   */
  breakdown?: {
    firstRunCdnBytes: number;
    recordedBytes: number;
    journalOnlyBytes: number;
    unrecordedOnDiskBytes: number;
    unwrittenBytes: number;
    rerunExtraBytes: number;
    stateRanges: number;
  };
}

export interface RunRecord {
  tool: ToolName;
  round: number;
  status: "ok" | "failed" | "wrong-output";
  error?: string;
  wallS: number;
  userS: number;
  sysS: number;
  cpuS: number;
  maxRssMB: number;
  bytes: number;
  files: number;
  mbPerS: number;
  filesPerS: number;
  /** Response body bytes the CDN delivered to the tool's sockets for this run, and its requests. */
  cdnBytes: number;
  /** Body bytes nginx's static server sent (behind the throttling proxy: includes proxy buffers). */
  cdnOriginBytes: number;
  /** Distinct connections the CDN saw (behind the proxy: one per client connection). */
  cdnConnections: number;
  cdnRequests: number;
  hubRequests: number;
  verify?: VerifyResult;
  resume?: ResumeInfo;
}

export interface ToolSummary {
  tool: ToolName;
  status: "ok" | "failed" | "unavailable" | "n/a";
  note?: string;
  runs: number;
  okRuns: number;
  wallS: number;
  mbPerS: number;
  filesPerS: number;
  cpuS: number;
  /** Max over rounds of the peak RSS. */
  maxRssMB: number;
  /** CDN bytes served per run / repo bytes (median). */
  cdnOverFetch: number;
  /** Connections the CDN saw per run (median). */
  cdnConnections: number;
  /** hfget's metric over this tool's (>1: hfget is faster). */
  hfgetRatio: number;
  resume?: {
    exercisedRuns: number;
    killAtS: number;
    medianPct: number;
    worstPct: number;
    totalWallS: number;
  };
}

export interface TargetResult {
  text: string;
  /** null: not measured (hfget unavailable or failed, or the resume never happened). */
  holds: boolean | null;
  detail: string;
}

export interface ScenarioResult {
  name: ScenarioName;
  description: string;
  smoke: boolean;
  rounds: number;
  metric: Metric;
  mode: "timed" | "resume";
  params: {
    files: number;
    bytes: number;
    latencyMs: number;
    limitRateBytesPerS: number;
    throttle: ThrottleMode;
    pageSize: number;
  };
  tools: ToolSummary[];
  /** The scenario's main target (the first of `targets`). */
  target: TargetResult;
  /** Every target of the scenario: the main one, its others, peak RSS, over-fetch. */
  targets: TargetResult[];
  /** CPU-s (user+sys, GNU time) of SHA-256 alone over the repo's bytes, median of one run per round. */
  sha256CpuS: number;
  runs: RunRecord[];
  /** Loud failures: a tool that failed or produced wrong bytes. */
  failures: string[];
  reusedFrom?: ScenarioName;
}

interface Env {
  def: ScenarioDef;
  work: Workload;
  ds: Dataset;
  hub: BenchHub;
  nginx: Nginx;
  opts: BenchOptions;
}

function syncDisks(): void {
  spawnSync("sync", [], { stdio: "ignore", timeout: 120_000 });
}

function runTimeoutMs(ds: Dataset): number {
  return 120_000 + ds.totalBytes / ((2 * MB) / 1000) + ds.files.length * 100;
}

async function freshDirs(env: Env, tool: Tool): Promise<{ outDir: string; scratchDir: string }> {
  const outDir = join(WORK_DIR, "out", env.def.name, tool.name);
  const scratchDir = join(WORK_DIR, "scratch", env.def.name, tool.name);
  await rm(outDir, { recursive: true, force: true });
  await rm(scratchDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  await mkdir(scratchDir, { recursive: true });
  return { outDir, scratchDir };
}

function context(env: Env, dirs: { outDir: string; scratchDir: string }): RunContext {
  return {
    hubUrl: env.hub.url,
    repo: env.work.repo,
    dataset: env.ds,
    outDir: dirs.outDir,
    scratchDir: dirs.scratchDir,
    hfgetTarget: env.opts.hfgetTarget,
    resume: false,
  };
}

function describeExit(m: Measured): string {
  if (m.timedOut) return "timed out";
  if (m.signal !== null) return `killed by ${m.signal}`;
  return `exit ${m.exitCode}`;
}

async function cdnTraffic(env: Env, mark: LogMark): Promise<Traffic> {
  await env.nginx.settle(100, 3000);
  return env.nginx.trafficSince(mark);
}

/** What the CDN served during one run, onto its record. */
function recordCdn(rec: RunRecord, cdn: Traffic): void {
  rec.cdnBytes = cdn.deliveredBodyBytes;
  rec.cdnOriginBytes = cdn.originBodyBytes;
  rec.cdnRequests = cdn.requests.length;
  rec.cdnConnections = new Set(cdn.requests.map((e) => e.connection)).size;
}

function baseRecord(tool: ToolName, round: number, env: Env, m: Measured): RunRecord {
  const cpuS = m.userS + m.sysS;
  return {
    tool,
    round,
    status: "ok",
    wallS: m.wallS,
    userS: m.userS,
    sysS: m.sysS,
    cpuS,
    maxRssMB: (m.maxRssKiB * 1024) / MB,
    bytes: env.ds.totalBytes,
    files: env.ds.files.length,
    mbPerS: env.ds.totalBytes / MB / m.wallS,
    filesPerS: env.ds.files.length / m.wallS,
    cdnBytes: 0,
    cdnOriginBytes: 0,
    cdnConnections: 0,
    cdnRequests: 0,
    hubRequests: 0,
  };
}

async function checkOutput(
  env: Env,
  tool: Tool,
  ctx: RunContext,
  m: Measured,
  rec: RunRecord,
): Promise<void> {
  const root = await tool.outputRoot(ctx, m.stdout);
  const v = await verifyOutput(env.ds, root, ctx.outDir, (rel) => tool.isBookkeeping(ctx, rel));
  rec.verify = v;
  if (!v.ok) {
    rec.status = "wrong-output";
    rec.error = `${v.problemCount} of ${v.checked} files wrong: ${v.problems.slice(0, 5).join("; ")}`;
  }
  if (v.extraCount > 0) {
    log(`  note: ${tool.name} left ${v.extraCount} extra file(s): ${v.extras.slice(0, 5).join(", ")}`);
  }
  if (isHfget(tool.name) && ctx.hfgetTarget === "local-dir") {
    const printed = m.stdout.trim();
    if (printed !== ctx.outDir && printed !== `${ctx.outDir}/`) {
      log(`  note: hfget printed ${JSON.stringify(printed.slice(0, 200))} on stdout, expected the local dir`);
    }
  }
}

async function timedRun(env: Env, tool: Tool, round: number): Promise<RunRecord> {
  const dirs = await freshDirs(env, tool);
  const ctx = context(env, dirs);
  syncDisks();
  const hub0 = env.hub.requestCount();
  const mark = await env.nginx.mark();
  const m = await runTimed(tool.command(ctx), {
    scratchDir: dirs.scratchDir,
    timeoutMs: runTimeoutMs(env.ds),
  });
  const rec = baseRecord(tool.name, round, env, m);
  rec.hubRequests = env.hub.requestCount() - hub0;
  const cdn = await cdnTraffic(env, mark);
  recordCdn(rec, cdn);
  if (m.exitCode !== 0 || m.timedOut) {
    rec.status = "failed";
    rec.error = `${describeExit(m)}: ${m.stderrTail.trim().slice(-800)}`;
  } else {
    await checkOutput(env, tool, ctx, m, rec);
  }
  if (!env.opts.keepOutput) await rm(dirs.outDir, { recursive: true, force: true });
  return rec;
}

async function resumeRun(env: Env, tool: Tool, round: number): Promise<RunRecord> {
  const dirs = await freshDirs(env, tool);
  const ctx = context(env, dirs);
  const cmd = tool.command({ ...ctx, resume: true });
  syncDisks();
  const file = env.ds.files[0];
  if (file === undefined) throw new Error("empty dataset");
  const hub0 = env.hub.requestCount();
  const mark = await env.nginx.mark();
  const timeoutMs = runTimeoutMs(env.ds);
  const first = await runTimed(cmd, {
    scratchDir: dirs.scratchDir,
    timeoutMs,
    killWhen: { writtenBytes: env.ds.totalBytes * 0.5, pollMs: 20 },
  });
  const exercised = first.killed !== undefined;
  if (!exercised && (first.exitCode !== 0 || first.timedOut)) {
    const rec = baseRecord(tool.name, round, env, first);
    rec.status = "failed";
    rec.error = `first run ${describeExit(first)} before the kill point: ${first.stderrTail.trim().slice(-800)}`;
    return rec;
  }
  // nginx logs a killed connection's request when it notices the close; let it.
  await env.nginx.settle(200, 3000);
  let firstCdn: number | undefined;
  let partial: Awaited<ReturnType<typeof checkPartial>>;
  if (exercised && isHfget(tool.name)) {
    firstCdn = (await env.nginx.trafficSince(mark)).deliveredBodyBytes;
    partial = await checkPartial(dirs.outDir, join(BLOBS_DIR, file.sha256), file.size);
  }
  const second = exercised ? await runTimed(cmd, { scratchDir: dirs.scratchDir, timeoutMs }) : first;
  const rec = baseRecord(tool.name, round, env, second);
  rec.wallS = exercised ? first.wallS + second.wallS : first.wallS;
  rec.mbPerS = env.ds.totalBytes / MB / rec.wallS;
  rec.filesPerS = env.ds.files.length / rec.wallS;
  rec.hubRequests = env.hub.requestCount() - hub0;
  const cdn = await cdnTraffic(env, mark);
  recordCdn(rec, cdn);
  // Only this file is on this nginx (no other LFS file in the repo), so all its traffic is the file's.
  const served = cdn.deliveredBodyBytes;
  const twice = Math.max(0, served - file.size);
  rec.resume = {
    exercised,
    killAtS: first.killed?.atS ?? Number.NaN,
    killWrittenBytes: first.killed?.writtenBytes ?? Number.NaN,
    firstWallS: first.wallS,
    secondWallS: exercised ? second.wallS : 0,
    cdnBytes: served,
    fetchedTwiceBytes: twice,
    fetchedTwicePct: (100 * twice) / file.size,
  };
  if (firstCdn !== undefined && partial !== undefined) {
    rec.resume.breakdown = {
      firstRunCdnBytes: firstCdn,
      recordedBytes: partial.recordedBytes,
      journalOnlyBytes: partial.journalOnlyBytes,
      unrecordedOnDiskBytes: partial.unrecordedOnDiskBytes,
      unwrittenBytes: firstCdn - partial.recordedBytes - partial.unrecordedOnDiskBytes,
      rerunExtraBytes: served - firstCdn - (file.size - partial.recordedBytes),
      stateRanges: partial.ranges,
    };
  }
  if (second.exitCode !== 0 || second.timedOut) {
    rec.status = "failed";
    rec.error = `rerun ${describeExit(second)}: ${second.stderrTail.trim().slice(-800)}`;
  } else {
    await checkOutput(env, tool, ctx, second, rec);
  }
  if (!env.opts.keepOutput) await rm(dirs.outDir, { recursive: true, force: true });
  return rec;
}

function logRun(def: ScenarioDef, work: Workload, rec: RunRecord, rounds: number): void {
  const rate = work.metric === "MB/s" ? `${fmt(rec.mbPerS, 1)} MB/s` : `${fmt(rec.filesPerS, 1)} files/s`;
  let line = `${def.name} round ${rec.round + 1}/${rounds} ${rec.tool}: ${fmt(rec.wallS)} s, ${rate}, cpu ${fmt(rec.cpuS)} s, rss ${fmt(rec.maxRssMB, 0)} MB`;
  if (rec.cdnBytes > 0)
    line += `, cdn ${fmt(rec.cdnBytes / MB, 1)} MB in ${rec.cdnRequests} req on ${rec.cdnConnections} conn`;
  line += `, hub ${rec.hubRequests} req`;
  if (rec.resume !== undefined) {
    const r = rec.resume;
    line += r.exercised
      ? `, killed at ${fmt(r.killAtS)} s (${fmt(r.killWrittenBytes / MB, 0)} MB written), fetched twice ${fmt(r.fetchedTwicePct, 2)}%`
      : ", finished before the kill point";
    const b = r.breakdown;
    if (b !== undefined) {
      const mb = (n: number) => fmt(n / MB, 1);
      line += ` (killed run got ${mb(b.firstRunCdnBytes)} MB: ${mb(b.recordedBytes)} recorded in ${b.stateRanges} ranges (${mb(b.journalOnlyBytes)} by the journal alone), ${mb(b.unrecordedOnDiskBytes)} on disk unrecorded, ${mb(b.unwrittenBytes)} unwritten; rerun extra ${mb(b.rerunExtraBytes)} MB)`;
    }
  }
  line += rec.status === "ok" ? ", ok" : `, ${rec.status.toUpperCase()}: ${rec.error ?? ""}`;
  log(line);
}

function summarise(tool: ToolName, runs: RunRecord[]): ToolSummary {
  const ok = runs.filter((r) => r.status === "ok");
  const s: ToolSummary = {
    tool,
    status: ok.length === runs.length && runs.length > 0 ? "ok" : "failed",
    runs: runs.length,
    okRuns: ok.length,
    wallS: median(ok.map((r) => r.wallS)),
    mbPerS: median(ok.map((r) => r.mbPerS)),
    filesPerS: median(ok.map((r) => r.filesPerS)),
    cpuS: median(ok.map((r) => r.cpuS).filter(Number.isFinite)),
    maxRssMB: ok.length > 0 ? Math.max(...ok.map((r) => r.maxRssMB).filter(Number.isFinite)) : Number.NaN,
    cdnOverFetch: median(ok.map((r) => (r.bytes > 0 && r.cdnBytes > 0 ? r.cdnBytes / r.bytes : Number.NaN))),
    cdnConnections: median(ok.map((r) => (r.cdnRequests > 0 ? r.cdnConnections : Number.NaN))),
    hfgetRatio: Number.NaN,
  };
  if (!Number.isFinite(s.maxRssMB)) s.maxRssMB = Number.NaN;
  const withResume = ok.filter((r) => r.resume?.exercised === true);
  if (runs.some((r) => r.resume !== undefined)) {
    s.resume = {
      exercisedRuns: withResume.length,
      killAtS: median(withResume.map((r) => r.resume?.killAtS ?? Number.NaN)),
      medianPct: median(withResume.map((r) => r.resume?.fetchedTwicePct ?? Number.NaN)),
      worstPct:
        withResume.length > 0
          ? Math.max(...withResume.map((r) => r.resume?.fetchedTwicePct ?? 0))
          : Number.NaN,
      totalWallS: median(withResume.map((r) => r.wallS)),
    };
  }
  if (s.status === "failed") {
    const bad = runs.find((r) => r.status !== "ok");
    s.note = bad?.error?.slice(0, 300) ?? "no run";
  }
  return s;
}

function metricOf(s: ToolSummary, metric: Metric): number {
  return metric === "MB/s" ? s.mbPerS : s.filesPerS;
}

function describe(t: Target, metric: Metric): string {
  switch (t.kind) {
    case "ratio":
      return `hfget ${metric} >= ${t.min} x ${t.peer}`;
    case "rss":
      return `hfget peak RSS <= ${t.maxMB} MB (shebang and \`node bin/hfget.js\`)`;
    case "refetch":
      return `hfget bytes fetched twice <= ${t.maxPct}% of the file`;
    case "physical":
      return `hfget MB/s >= ${t.frac} x ${t.connections} connections x the cap`;
    case "cpu-per-gb":
      return `hfget CPU-s per GB <= ${t.times} x ${t.peer}'s + SHA-256 alone`;
    case "cpu-per-file":
      return `hfget CPU-s per file <= ${t.times === 1 ? "" : `${t.times} x `}${t.peer}'s`;
    case "overfetch":
      return `hfget CDN bytes / repo bytes <= ${t.max}`;
  }
}

interface EvalInput {
  metric: Metric;
  tools: readonly ToolSummary[];
  bytes: number;
  files: number;
  limitRate: number;
  sha256CpuS: number;
}

/** Evaluates one target against the summaries; hfget's own row is the one started through its shebang. */
export function evaluate(t: Target, inp: EvalInput): TargetResult {
  const text = describe(t, inp.metric);
  const hfRows = inp.tools.filter((s) => isHfget(s.tool) && s.status === "ok");
  const hf = hfRows.find((s) => s.tool === "hfget") ?? hfRows[0];
  if (hf === undefined) {
    const row = inp.tools.find((s) => isHfget(s.tool));
    return { text, holds: null, detail: `not measured: hfget ${row === undefined ? "not run" : row.status}` };
  }
  const peerOf = (name: ToolName): ToolSummary | undefined =>
    inp.tools.find((p) => p.tool === name && p.status === "ok");
  const missingPeer = (name: ToolName): TargetResult => ({
    text,
    holds: null,
    detail: `not measured: ${name} ${inp.tools.find((p) => p.tool === name)?.status ?? "not run"}`,
  });
  const gb = inp.bytes / 1e9;
  switch (t.kind) {
    case "ratio": {
      const peer = peerOf(t.peer);
      if (peer === undefined) return missingPeer(t.peer);
      const ratio = metricOf(hf, inp.metric) / metricOf(peer, inp.metric);
      return {
        text,
        holds: ratio >= t.min,
        detail: `${fmt(metricOf(hf, inp.metric), 1)} vs ${fmt(metricOf(peer, inp.metric), 1)} ${inp.metric}: ${fmt(ratio)} x`,
      };
    }
    case "rss": {
      const rss = hfRows.map((r) => r.maxRssMB).filter(Number.isFinite);
      if (rss.length === 0) return { text, holds: null, detail: "not measured: no peak RSS from GNU time" };
      const worst = Math.max(...rss);
      return {
        text,
        holds: worst <= t.maxMB,
        detail: `${hfRows.map((r) => `${r.tool} ${fmt(r.maxRssMB, 0)} MB`).join(", ")} (max over rounds)`,
      };
    }
    case "refetch": {
      const r = hf.resume;
      if (r === undefined || r.exercisedRuns === 0) {
        return {
          text,
          holds: null,
          detail: "not measured: hfget finished before the kill point in every round",
        };
      }
      return {
        text,
        holds: r.worstPct <= t.maxPct,
        detail: `worst ${fmt(r.worstPct, 2)}%, median ${fmt(r.medianPct, 2)}% over ${r.exercisedRuns} runs`,
      };
    }
    case "physical": {
      if (inp.limitRate <= 0) return { text, holds: null, detail: "not measured: the CDN is not capped" };
      const limit = (t.connections * inp.limitRate) / MB;
      const frac = hf.mbPerS / limit;
      return {
        text,
        holds: frac >= t.frac,
        detail: `${fmt(hf.mbPerS, 1)} of ${fmt(limit, 0)} MB/s: ${fmt(100 * frac, 0)}%`,
      };
    }
    case "cpu-per-gb": {
      const peer = peerOf(t.peer);
      if (peer === undefined) return missingPeer(t.peer);
      if (!Number.isFinite(inp.sha256CpuS))
        return { text, holds: null, detail: "not measured: SHA-256 alone" };
      const mine = hf.cpuS / gb;
      const theirs = peer.cpuS / gb;
      const hash = inp.sha256CpuS / gb;
      const allowed = t.times * theirs + hash;
      return {
        text,
        holds: mine <= allowed,
        detail: `${fmt(mine)} vs ${t.times} x ${fmt(theirs)} + ${fmt(hash)} = ${fmt(allowed)} CPU-s/GB`,
      };
    }
    case "cpu-per-file": {
      const peer = peerOf(t.peer);
      if (peer === undefined) return missingPeer(t.peer);
      const mine = (1000 * hf.cpuS) / inp.files;
      const theirs = (1000 * peer.cpuS) / inp.files;
      return {
        text,
        holds: mine <= t.times * theirs,
        detail: `${fmt(mine)} vs ${fmt(theirs)} CPU-ms per file: ${fmt(mine / theirs)} x`,
      };
    }
    case "overfetch": {
      const rows = hfRows.filter((r) => Number.isFinite(r.cdnOverFetch));
      if (rows.length === 0) {
        return { text, holds: null, detail: "not measured: no CDN traffic (small files come from the hub)" };
      }
      const worst = Math.max(...rows.map((r) => r.cdnOverFetch));
      return {
        text,
        holds: worst <= t.max,
        detail: `${rows.map((r) => `${r.tool} ${fmt(r.cdnOverFetch, 3)}`).join(", ")} (median over rounds)`,
      };
    }
  }
}

/** The scenario's main target, its others, and the two that hold everywhere (peak RSS, over-fetch). */
function allTargets(def: ScenarioDef): Target[] {
  const list: Target[] = [def.target, ...(def.more ?? [])];
  if (!list.some((t) => t.kind === "rss")) list.push({ kind: "rss", maxMB: PEAK_RSS_MB });
  if (def.mode === "timed") list.push({ kind: "overfetch", max: MAX_OVERFETCH });
  return list;
}

function evaluateAll(def: ScenarioDef, inp: EvalInput): TargetResult[] {
  return allTargets(def).map((t) => evaluate(t, inp));
}

/**
 * CPU-s of SHA-256 alone over the dataset's bytes, the way hfget computes it (node's crypto, 1 MiB
 * reads of page-cached files), under GNU time like the tools: the cost no verifying downloader avoids.
 */
async function sha256Alone(ds: Dataset, scratchDir: string): Promise<number> {
  await mkdir(scratchDir, { recursive: true });
  const script = `const fs=require("node:fs"),c=require("node:crypto");const b=Buffer.allocUnsafe(1<<20);
for(const p of process.argv.slice(1)){const h=c.createHash("sha256");const fd=fs.openSync(p,"r");
for(let n;(n=fs.readSync(fd,b,0,b.length,null))>0;)h.update(b.subarray(0,n));fs.closeSync(fd);h.digest("hex");}`;
  const m = await runTimed(
    { cmd: process.execPath, args: ["-e", script, ...ds.files.map((f) => f.abs)], env: process.env },
    { scratchDir, timeoutMs: 600_000 },
  );
  return m.exitCode === 0 ? m.userS + m.sysS : Number.NaN;
}

function rotate<T>(items: readonly T[], by: number): T[] {
  if (items.length === 0) return [];
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** Runs one scenario end to end: data, nginx, hub, rounds, checks, summary. Servers stopped on return. */
export async function runScenario(
  name: ScenarioName,
  opts: BenchOptions,
  earlier: ReadonlyMap<ScenarioName, ScenarioResult>,
): Promise<ScenarioResult> {
  const def = DEFS[name];
  const work = def.workload(opts.smoke);
  const rounds = opts.smoke ? 1 : opts.rounds;
  const tools = def.tools.filter((t) => opts.tools.includes(t));

  // The memory scenario is the big-loopback download: reuse its runs when it ran in this invocation.
  const loop = earlier.get("big-loopback");
  if (name === "memory" && loop !== undefined) {
    log("memory: reusing the big-loopback runs of this invocation");
    const targets = evaluateAll(def, {
      metric: loop.metric,
      tools: loop.tools,
      bytes: loop.params.bytes,
      files: loop.params.files,
      limitRate: loop.params.limitRateBytesPerS,
      sha256CpuS: loop.sha256CpuS,
    });
    return {
      ...loop,
      name,
      description: def.description,
      target: targets[0]!,
      targets,
      reusedFrom: "big-loopback",
      failures: [],
    };
  }

  log(`=== ${name}: ${def.description}${opts.smoke ? " [smoke sizes]" : ""}`);
  const ds = await ensureDataset(work.dataset);
  await warmPageCache(ds);
  const nginx = await startNginx({
    name,
    root: BLOBS_DIR,
    limitRate: work.limitRate,
    throttle: opts.throttle,
    workers: opts.nginxWorkers,
  });
  let hub: BenchHub | undefined;
  try {
    hub = await startBenchHub(work.repo, ds, {
      latencyMs: work.latencyMs,
      cdnBaseUrl: nginx.url,
      pageSize: work.pageSize,
    });
    const env: Env = { def, work, ds, hub, nginx, opts };
    const runs: RunRecord[] = [];
    const skipped = new Map<ToolName, { status: ToolSummary["status"]; note: string }>();
    for (const t of tools) {
      const why = TOOLS[t].unsupported(ds);
      if (why !== undefined) skipped.set(t, { status: "n/a", note: why });
      else if (isHfget(t) && opts.hfgetProblem !== undefined) {
        skipped.set(t, { status: "unavailable", note: opts.hfgetProblem });
      }
    }
    const active = tools.filter((t) => !skipped.has(t));
    const hashRuns: number[] = [];
    for (let round = 0; round < rounds; round++) {
      if (work.metric === "MB/s") hashRuns.push(await sha256Alone(ds, join(WORK_DIR, "scratch", def.name)));
      for (const t of rotate(active, round)) {
        sampleLoad();
        let rec: RunRecord;
        try {
          rec =
            def.mode === "resume"
              ? await resumeRun(env, TOOLS[t], round)
              : await timedRun(env, TOOLS[t], round);
        } catch (err) {
          const nan = Number.NaN;
          rec = {
            tool: t,
            round,
            status: "failed",
            error: `harness error: ${errorMessage(err)}`,
            wallS: nan,
            userS: nan,
            sysS: nan,
            cpuS: nan,
            maxRssMB: nan,
            bytes: ds.totalBytes,
            files: ds.files.length,
            mbPerS: nan,
            filesPerS: nan,
            cdnBytes: 0,
            cdnOriginBytes: 0,
            cdnConnections: 0,
            cdnRequests: 0,
            hubRequests: 0,
          };
        }
        logRun(def, work, rec, rounds);
        runs.push(rec);
      }
    }
    const summaries: ToolSummary[] = tools.map((t) => {
      const skip = skipped.get(t);
      if (skip !== undefined) {
        return {
          tool: t,
          status: skip.status,
          note: skip.note,
          runs: 0,
          okRuns: 0,
          wallS: Number.NaN,
          mbPerS: Number.NaN,
          filesPerS: Number.NaN,
          cpuS: Number.NaN,
          maxRssMB: Number.NaN,
          cdnOverFetch: Number.NaN,
          cdnConnections: Number.NaN,
          hfgetRatio: Number.NaN,
        };
      }
      return summarise(
        t,
        runs.filter((r) => r.tool === t),
      );
    });
    const hf =
      summaries.find((s) => s.tool === "hfget" && s.status === "ok") ??
      summaries.find((s) => isHfget(s.tool));
    for (const s of summaries) {
      if (hf !== undefined && hf.status === "ok" && s.status === "ok") {
        s.hfgetRatio = metricOf(hf, work.metric) / metricOf(s, work.metric);
      }
    }
    const failures = runs
      .filter((r) => r.status !== "ok")
      .map((r) => `${name} round ${r.round + 1} ${r.tool}: ${r.status}: ${r.error ?? ""}`);
    const sha256CpuS = median(hashRuns);
    if (hashRuns.length > 0)
      log(`${name}: SHA-256 alone over the repo's bytes: ${fmt(sha256CpuS)} CPU-s (median)`);
    const targets = evaluateAll(def, {
      metric: work.metric,
      tools: summaries,
      bytes: ds.totalBytes,
      files: ds.files.length,
      limitRate: work.limitRate,
      sha256CpuS,
    });
    return {
      name,
      description: def.description,
      smoke: opts.smoke,
      rounds,
      metric: work.metric,
      mode: def.mode,
      params: {
        files: ds.files.length,
        bytes: ds.totalBytes,
        latencyMs: work.latencyMs,
        limitRateBytesPerS: work.limitRate,
        throttle: opts.throttle,
        pageSize: work.pageSize ?? 1000,
      },
      tools: summaries,
      target: targets[0]!,
      targets,
      sha256CpuS,
      runs,
      failures,
    };
  } finally {
    await hub?.close();
    await nginx.stop();
  }
}
