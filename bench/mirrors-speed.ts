// The `mirrors` scenario (issue 9): two CDN origins whose uplinks are each capped in TOTAL (every
// connection to that origin shares one cap, as a server's uplink does; nginx can only cap per
// connection or request), each behind its own fake hub. One repo with one large LFS file. Runs, in
// alternation: hfget with one mirror, hfget with both, and aria2c given both resolve URLs for the file
// (tab-separated URIs on one input line). Target: hfget with both >= 1.8 x hfget with one; the ratio
// to aria2c is reported too (issue 9 asks hfget to beat it). As in every other scenario, aria2c runs
// as hfd does (bench/tools.ts): the tree listing with curl + jq, then aria2c, timed together, since
// getting each file's URLs takes the listing; here the listing (from the first hub) gives each file
// a line with its resolve URL on both hubs.
import { mkdir, rm } from "node:fs/promises";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { BLOBS_DIR, ensureDataset } from "./data.js";
import { startBenchHub } from "./hub.js";
import { runTimed } from "./measure.js";
import { startNginx } from "./nginx.js";
import { onCleanup } from "./procs.js";
import { HFGET_BIN, TOOLS as TOOL_DEFS, type ToolCommand } from "./tools.js";
import { errorMessage, fmt, log, MB, MIB, median, WORK_DIR } from "./util.js";
import { verifyOutput } from "./verify.js";

type MirrorsTool = "hfget-1-mirror" | "hfget-2-mirrors" | "aria2c-2-uris" | "hfget-2-mirrors-alt";
const BASE_TOOLS: readonly MirrorsTool[] = ["hfget-1-mirror", "hfget-2-mirrors", "aria2c-2-uris"];

/**
 * The tools this run measures. For experiments only (reported runs leave both unset):
 * HFGET_BENCH_MIRRORS_TOOLS="hfget-2-mirrors" runs only those; HFGET_BENCH_NODE_BIN adds
 * "hfget-2-mirrors-alt", the same run with another build's bin/hfget.js (an A/B in one run).
 */
function mirrorsTools(): MirrorsTool[] {
  const all: MirrorsTool[] = [...BASE_TOOLS];
  if (process.env.HFGET_BENCH_NODE_BIN !== undefined) all.push("hfget-2-mirrors-alt");
  const only = (process.env.HFGET_BENCH_MIRRORS_TOOLS ?? "").split(",").filter((t) => t !== "");
  return only.length === 0 ? all : all.filter((t) => only.includes(t));
}

export interface MirrorsRun {
  tool: MirrorsTool;
  round: number;
  ok: boolean;
  error?: string;
  wallS: number;
  mbPerS: number;
  cpuS: number;
}

export interface MirrorsBenchResult {
  name: "mirrors";
  description: string;
  smoke: boolean;
  rounds: number;
  bytes: number;
  /** Each origin's total cap, bytes/s. */
  capBytesPerS: number;
  runs: MirrorsRun[];
  /** The tools measured, in the order run. */
  tools: MirrorsTool[];
  /** Median MB/s over the ok rounds, per tool (NaN when not measured). */
  mbPerS: Record<MirrorsTool, number>;
  /** hfget with both mirrors / hfget with one (target >= 1.8). */
  twoOverOne: number;
  /** hfget with both mirrors / aria2c with both URIs (issue 9: > 1). */
  overAria2c: number;
  targetHolds: boolean | null;
  failures: string[];
}

/** Each origin's uplink: 16 MB/s in total, whatever the number of connections. */
const CAP = 16 * MB;
const TWO_OVER_ONE = 1.8;

/**
 * A TCP proxy to `upstream` whose downstream bytes, over all its connections together, are paced at
 * `bytesPerSec`: each chunk from the upstream takes the next slot of one shared schedule, and the
 * upstream socket is paused until its slot comes (TCP backpressure does the rest).
 */
/** What one origin sent during one run: when its first and last bytes went out, and how many. */
interface OriginTimeline {
  bytes: number;
  /** ms since reset(), undefined before the first byte. */
  firstMs: number | undefined;
  lastMs: number;
}

interface CappedProxy {
  url: string;
  /** Starts a new timeline (call right before a run). */
  reset(): void;
  timeline(): OriginTimeline;
  close(): Promise<void>;
}

async function startCappedProxy(upstreamPort: number, bytesPerSec: number): Promise<CappedProxy> {
  let nextFree = 0;
  let t0 = performance.now();
  let tl: OriginTimeline = { bytes: 0, firstMs: undefined, lastMs: 0 };
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const up = createConnection({ host: "127.0.0.1", port: upstreamPort });
    sockets.add(client).add(up);
    const end = () => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    client.on("error", end).on("close", end);
    up.on("error", end).on("close", end);
    client.pipe(up);
    up.on("data", (buf: Buffer) => {
      const now = performance.now();
      const start = Math.max(now, nextFree);
      nextFree = start + (buf.length * 1000) / bytesPerSec;
      tl.firstMs ??= start - t0;
      tl.lastMs = nextFree - t0;
      tl.bytes += buf.length;
      client.write(buf);
      const waitMs = nextFree - now;
      if (waitMs > 2) {
        up.pause();
        setTimeout(() => up.resume(), waitMs).unref();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    unregister();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  const unregister = onCleanup(close);
  return {
    url: `http://127.0.0.1:${port}`,
    reset() {
      t0 = performance.now();
      tl = { bytes: 0, firstMs: undefined, lastMs: 0 };
    },
    timeline: () => tl,
    close,
  };
}

/** "origin 1: first byte 0.41 s, last 8.90 s, 134.2 MB (15.8 MB/s between)" per origin that sent bytes. */
function phases(proxies: readonly CappedProxy[]): string {
  return proxies
    .map((p, i) => {
      const t = p.timeline();
      if (t.firstMs === undefined) return `origin ${i + 1}: no bytes`;
      const rate = t.bytes / MB / Math.max(0.001, (t.lastMs - t.firstMs) / 1000);
      return `origin ${i + 1}: first byte ${fmt(t.firstMs / 1000)} s, last ${fmt(t.lastMs / 1000)} s, ${fmt(t.bytes / MB, 1)} MB (${fmt(rate, 1)} MB/s between)`;
    })
    .join("; ");
}

/** "http://a: 134 MB, http://b: 134 MB" from hfget's --json result. */
function spread(stdout: string): string {
  try {
    const r = JSON.parse(stdout) as { endpoints?: { endpoint: string; bytes: number }[] };
    return (r.endpoints ?? []).map((e) => `${e.endpoint}: ${fmt(e.bytes / MB, 1)} MB`).join(", ");
  } catch {
    return "(no --json result)";
  }
}

export async function runMirrorsBench(opts: { rounds: number; smoke: boolean }): Promise<MirrorsBenchResult> {
  const size = (opts.smoke ? 32 : 256) * MIB;
  const rounds = opts.smoke ? 1 : opts.rounds;
  const name = `mirrors-${size / MIB}MiB`;
  const ds = await ensureDataset({ kind: "big", name, size, path: "model.safetensors" });
  const repo = { type: "model" as const, id: `bench/${name}` };
  // One nginx (no cap of its own) serves the blobs; each origin is a capped proxy in front of it.
  const nginx = await startNginx({ name: "mirrors", root: BLOBS_DIR, limitRate: 0 });
  const nginxPort = Number(new URL(nginx.url).port);
  const proxies = [await startCappedProxy(nginxPort, CAP), await startCappedProxy(nginxPort, CAP)];
  const hubs = [];
  for (const p of proxies) hubs.push(await startBenchHub(repo, ds, { latencyMs: 30, cdnBaseUrl: p.url }));
  const [a, b] = hubs as [(typeof hubs)[0], (typeof hubs)[0]];
  const base = join(WORK_DIR, "mirrors");
  const outDir = join(base, "out");
  const scratchDir = join(base, "scratch");
  const env = (): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (v === undefined || /proxy/i.test(k) || /^(HF_|HUGGINGFACE_|HFGET_)/.test(k) || k.startsWith("npm_"))
        continue;
      e[k] = v;
    }
    e.NO_PROXY = "127.0.0.1,localhost";
    e.HF_HOME = join(scratchDir, "hf-home");
    e.NO_COLOR = "1";
    return e;
  };
  // For experiments only, as in the other scenarios (bench/tools.ts): node options for hfget's runs
  // (e.g. --cpu-prof), and another build's bin for the "-alt" run.
  const nodeArgs = (process.env.HFGET_BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
  const hfget = (mirrors: string[], bin = HFGET_BIN): ToolCommand => ({
    cmd: process.execPath,
    // --json: the result names each endpoint's bytes (logged below: how the file was spread).
    args: [
      ...nodeArgs,
      bin,
      repo.id,
      "--mirror",
      mirrors.join(","),
      "--local-dir",
      outDir,
      "--quiet",
      "--json",
    ],
    env: env(),
  });
  const tools = mirrorsTools();
  const commands: Record<MirrorsTool, ToolCommand> = {
    "hfget-1-mirror": hfget([a.url]),
    "hfget-2-mirrors": hfget([a.url, b.url]),
    "hfget-2-mirrors-alt": hfget([a.url, b.url], process.env.HFGET_BENCH_NODE_BIN ?? HFGET_BIN),
    "aria2c-2-uris": TOOL_DEFS.aria2c.command({
      hubUrl: a.url,
      extraHubUrls: [b.url],
      repo,
      dataset: ds,
      outDir,
      scratchDir,
      hfgetTarget: "local-dir",
      resume: false,
    }),
  };
  const runs: MirrorsRun[] = [];
  const failures: string[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      for (const tool of tools) {
        await rm(base, { recursive: true, force: true });
        await mkdir(outDir, { recursive: true });
        await mkdir(scratchDir, { recursive: true });
        for (const p of proxies) p.reset();
        const m = await runTimed(commands[tool], {
          scratchDir,
          timeoutMs: 120_000 + size / ((2 * MB) / 1000),
        });
        let error: string | undefined;
        if (m.exitCode !== 0 || m.timedOut) error = `exit ${m.exitCode}: ${m.stderrTail.trim().slice(-400)}`;
        else {
          const v = await verifyOutput(ds, outDir, outDir, (rel) => rel.startsWith(".cache/huggingface/"));
          if (!v.ok) error = `wrong output: ${v.problems.slice(0, 3).join("; ")}`;
        }
        const run: MirrorsRun = {
          tool,
          round,
          ok: error === undefined,
          wallS: m.wallS,
          mbPerS: size / MB / m.wallS,
          cpuS: m.userS + m.sysS,
        };
        if (error !== undefined) {
          run.error = error;
          failures.push(`mirrors ${tool} round ${round + 1}: ${error}`);
        }
        runs.push(run);
        if (tool !== "aria2c-2-uris" && error === undefined)
          log(`  ${tool} per endpoint: ${spread(m.stdout)}`);
        log(`  ${tool} phases: ${phases(proxies)}`);
        log(
          `mirrors round ${round + 1}/${rounds} ${tool}: ${fmt(m.wallS)} s, ${fmt(run.mbPerS, 1)} MB/s, cpu ${fmt(run.cpuS)} s (user ${fmt(m.userS)}, sys ${fmt(m.sysS)})${error === undefined ? ", ok" : `, FAILED: ${error}`}`,
        );
      }
    }
  } finally {
    await Promise.all([a.close(), b.close(), ...proxies.map((p) => p.close()), nginx.stop()]).catch(
      (err: unknown) => log(`mirrors cleanup: ${errorMessage(err)}`),
    );
    await rm(base, { recursive: true, force: true }).catch(() => undefined);
  }
  const med = (t: MirrorsTool) => median(runs.filter((r) => r.tool === t && r.ok).map((r) => r.mbPerS));
  const mbPerS = {
    "hfget-1-mirror": med("hfget-1-mirror"),
    "hfget-2-mirrors": med("hfget-2-mirrors"),
    "aria2c-2-uris": med("aria2c-2-uris"),
    "hfget-2-mirrors-alt": med("hfget-2-mirrors-alt"),
  };
  const twoOverOne = mbPerS["hfget-2-mirrors"] / mbPerS["hfget-1-mirror"];
  return {
    name: "mirrors",
    description: `1 x ${size / MIB} MiB LFS file on two CDN origins, each capped at ${CAP / MB} MB/s in total (all connections), 30 ms hub latency, listing timed (aria2c's too, as hfd gets it)`,
    smoke: opts.smoke,
    rounds,
    bytes: size,
    capBytesPerS: CAP,
    tools,
    runs,
    mbPerS,
    twoOverOne,
    overAria2c: mbPerS["hfget-2-mirrors"] / mbPerS["aria2c-2-uris"],
    targetHolds: Number.isFinite(twoOverOne) ? twoOverOne >= TWO_OVER_ONE : null,
    failures,
  };
}

/** Console and markdown lines for the result. */
export function mirrorsReport(r: MirrorsBenchResult): string[] {
  const cpu = (t: MirrorsTool) => median(r.runs.filter((x) => x.tool === t && x.ok).map((x) => x.cpuS));
  const holds = r.targetHolds === null ? "not measured" : r.targetHolds ? "holds" : "MISSED";
  return [
    `## mirrors: ${r.description}`,
    "",
    "| tool | MB/s | CPU-s | hfget (2 mirrors) / tool |",
    "| --- | ---: | ---: | ---: |",
    ...r.tools.map(
      (t) =>
        `| ${t} | ${fmt(r.mbPerS[t], 1)} | ${fmt(cpu(t))} | ${fmt(r.mbPerS["hfget-2-mirrors"] / r.mbPerS[t])} |`,
    ),
    "",
    "| Targets | measured | |",
    "| --- | ---: | --- |",
    `| hfget MB/s with 2 mirrors >= ${TWO_OVER_ONE} x with 1 | ${fmt(r.twoOverOne)} x | ${holds} |`,
    `| hfget MB/s with 2 mirrors > aria2c with both URIs (issue 9) | ${fmt(r.overAria2c)} x | ${Number.isFinite(r.overAria2c) ? (r.overAria2c > 1 ? "holds" : "MISSED") : "not measured"} |`,
    "",
    `(median of ${r.rounds} round(s); the physical limit is ${fmt((2 * r.capBytesPerS) / MB, 0)} MB/s with both origins)`,
    "",
  ];
}
