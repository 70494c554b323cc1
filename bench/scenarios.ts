// The scenarios: what each one downloads, under which network conditions, which tools run, and the
// target hfget must meet. Runs the rounds (tools alternating), checks every output, and summarises.
import { spawnSync } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { BLOBS_DIR, type Dataset, type DatasetSpec, ensureDataset, warmPageCache } from "./data.js";
import { type BenchHub, type BenchRepoRef, startBenchHub } from "./hub.js";
import { type Measured, runTimed } from "./measure.js";
import { type LogMark, type Nginx, startNginx, type ThrottleMode, type Traffic } from "./nginx.js";
import { type HfgetTarget, type RunContext, TOOLS, type Tool, type ToolName } from "./tools.js";
import { errorMessage, fmt, GIB, log, MB, MIB, median, sampleLoad, WORK_DIR } from "./util.js";
import { type VerifyResult, verifyOutput } from "./verify.js";

export type ScenarioName = "big-throttled" | "big-loopback" | "many-files" | "memory" | "resume";
export const SCENARIO_NAMES: readonly ScenarioName[] = [
  "big-throttled",
  "big-loopback",
  "many-files",
  "memory",
  "resume",
];

export type Metric = "MB/s" | "files/s";

export type Target =
  | { kind: "ratio"; peer: ToolName; min: number }
  | { kind: "rss"; maxMB: number }
  | { kind: "refetch"; maxPct: number };

interface Workload {
  dataset: DatasetSpec;
  repo: BenchRepoRef;
  latencyMs: number;
  /** The CDN's rate cap in bytes per second per connection; 0 = none. */
  limitRate: number;
  metric: Metric;
}

interface ScenarioDef {
  name: ScenarioName;
  description: string;
  workload(smoke: boolean): Workload;
  tools: readonly ToolName[];
  mode: "timed" | "resume";
  target: Target;
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

const DEFS: Record<ScenarioName, ScenarioDef> = {
  "big-throttled": {
    name: "big-throttled",
    description: "1 x 1 GiB LFS file, CDN capped at 10 MB/s per connection, 30 ms hub latency",
    workload: (smoke) => bigWorkload(smoke ? SMOKE_BIG : GIB, 30, 10 * MB),
    tools: ["hfget", "aria2c", "curl"],
    mode: "timed",
    target: { kind: "ratio", peer: "aria2c", min: 1.1 },
  },
  "big-loopback": {
    name: "big-loopback",
    description: "1 x 2 GiB LFS file, no throttle, no added latency",
    workload: (smoke) => bigWorkload(smoke ? SMOKE_BIG : 2 * GIB, 0, 0),
    tools: ["hfget", "aria2c", "curl"],
    mode: "timed",
    target: { kind: "ratio", peer: "aria2c", min: 1.0 },
  },
  "many-files": {
    name: "many-files",
    description:
      "dataset of 3000 regular files of 1-20 KiB in nested folders, 30 ms hub latency, listing timed",
    workload: (smoke) => {
      const count = smoke ? 200 : 3000;
      const name = `many-${count}`;
      return {
        dataset: { kind: "many", name, count, minSize: 1024, maxSize: 20 * 1024 },
        repo: { type: "dataset", id: `bench/${name}` },
        latencyMs: 30,
        limitRate: 0,
        metric: "files/s",
      };
    },
    tools: ["hfget", "aria2c"],
    mode: "timed",
    target: { kind: "ratio", peer: "aria2c", min: 1.0 },
  },
  memory: {
    name: "memory",
    description: "the big-loopback download; peak RSS (GNU time %M, max over rounds)",
    workload: (smoke) => bigWorkload(smoke ? SMOKE_BIG : 2 * GIB, 0, 0),
    tools: ["hfget", "aria2c", "curl"],
    mode: "timed",
    target: { kind: "rss", maxMB: 150 },
  },
  resume: {
    name: "resume",
    description:
      "big-throttled; SIGKILL at 50% written (/proc wchar of the tool's processes), rerun; CDN bytes from nginx's logs",
    // In smoke mode the file is small, so each connection is slowed further to land the kill mid-transfer.
    workload: (smoke) => bigWorkload(smoke ? SMOKE_BIG : GIB, 30, smoke ? 4 * MB : 10 * MB),
    tools: ["hfget", "aria2c"],
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
  };
  tools: ToolSummary[];
  target: TargetResult;
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
  if (tool.name === "hfget" && ctx.hfgetTarget === "local-dir") {
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

function evaluate(def: ScenarioDef, metric: Metric, tools: ToolSummary[]): TargetResult {
  const hf = tools.find((t) => t.tool === "hfget");
  const t = def.target;
  let text: string;
  switch (t.kind) {
    case "ratio":
      text = `hfget ${metric} >= ${t.min} x ${t.peer}`;
      break;
    case "rss":
      text = `hfget peak RSS <= ${t.maxMB} MB`;
      break;
    case "refetch":
      text = `hfget bytes fetched twice <= ${t.maxPct}% of the file`;
      break;
  }
  if (hf === undefined || hf.status !== "ok") {
    return { text, holds: null, detail: `not measured: hfget ${hf === undefined ? "not run" : hf.status}` };
  }
  switch (t.kind) {
    case "ratio": {
      const peer = tools.find((p) => p.tool === t.peer);
      if (peer === undefined || peer.status !== "ok") {
        return { text, holds: null, detail: `not measured: ${t.peer} ${peer?.status ?? "not run"}` };
      }
      const ratio = metricOf(hf, metric) / metricOf(peer, metric);
      return {
        text,
        holds: ratio >= t.min,
        detail: `${fmt(metricOf(hf, metric), 1)} vs ${fmt(metricOf(peer, metric), 1)} ${metric}: ${fmt(ratio)} x`,
      };
    }
    case "rss":
      if (!Number.isFinite(hf.maxRssMB)) {
        return { text, holds: null, detail: "not measured: no peak RSS from GNU time" };
      }
      return {
        text,
        holds: hf.maxRssMB <= t.maxMB,
        detail: `max ${fmt(hf.maxRssMB, 0)} MB over ${hf.okRuns} runs`,
      };
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
  }
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
    return {
      ...loop,
      name,
      description: def.description,
      target: evaluate(def, loop.metric, loop.tools),
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
    hub = await startBenchHub(work.repo, ds, { latencyMs: work.latencyMs, cdnBaseUrl: nginx.url });
    const env: Env = { def, work, ds, hub, nginx, opts };
    const runs: RunRecord[] = [];
    const skipped = new Map<ToolName, { status: ToolSummary["status"]; note: string }>();
    for (const t of tools) {
      const why = TOOLS[t].unsupported(ds);
      if (why !== undefined) skipped.set(t, { status: "n/a", note: why });
      else if (t === "hfget" && opts.hfgetProblem !== undefined) {
        skipped.set(t, { status: "unavailable", note: opts.hfgetProblem });
      }
    }
    const active = tools.filter((t) => !skipped.has(t));
    for (let round = 0; round < rounds; round++) {
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
    const hf = summaries.find((s) => s.tool === "hfget");
    for (const s of summaries) {
      if (hf !== undefined && hf.status === "ok" && s.status === "ok") {
        s.hfgetRatio = metricOf(hf, work.metric) / metricOf(s, work.metric);
      }
    }
    const failures = runs
      .filter((r) => r.status !== "ok")
      .map((r) => `${name} round ${r.round + 1} ${r.tool}: ${r.status}: ${r.error ?? ""}`);
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
      },
      tools: summaries,
      target: evaluate(def, work.metric, summaries),
      runs,
      failures,
    };
  } finally {
    await hub?.close();
    await nginx.stop();
  }
}
