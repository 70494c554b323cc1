// Renders results: aligned text tables for the console, a markdown document (BENCHMARKS.md), and JSON.
import type { ScenarioResult, TargetResult, ToolSummary } from "./scenarios.js";
import type { MachineInfo } from "./setup.js";
import { isHfget } from "./tools.js";
import { fmt, fmtBytes, MB } from "./util.js";

export interface ReportMeta {
  date: string;
  command: string;
  /** git commit of the code measured. */
  revision: string;
  machine: MachineInfo;
  smoke: boolean;
  rounds: number;
  hfgetProblem: string | undefined;
  /** Highest 1-minute load average sampled before each run. */
  maxLoadAvg1: number;
}

/** `left`: how many leading columns are text (left-aligned in markdown); the rest are numbers. */
type Table = { head: string[]; rows: string[][]; left?: number };

function status(s: ToolSummary): string {
  if (s.status === "unavailable") return "pending";
  return s.status;
}

function ratio(s: ToolSummary): string {
  if (s.tool === "hfget") return s.status === "ok" ? "1.00" : "-";
  if (isHfget(s.tool)) return fmt(s.hfgetRatio);
  return fmt(s.hfgetRatio);
}

function timedTable(r: ScenarioResult): Table {
  const rate = r.metric;
  return {
    head: [
      "tool",
      "status",
      "ok runs",
      "wall s (median)",
      `${rate} (median)`,
      "CPU s user+sys (median)",
      rate === "MB/s" ? "CPU s per GB" : "CPU ms per file",
      "peak RSS MB (max)",
      "CDN bytes / repo bytes",
      "CDN conns",
      `hfget ${rate} / tool's`,
    ],
    rows: r.tools.map((s) => [
      s.tool,
      status(s),
      `${s.okRuns}/${s.runs}`,
      fmt(s.wallS),
      fmt(rate === "MB/s" ? s.mbPerS : s.filesPerS, 1),
      fmt(s.cpuS),
      rate === "MB/s" ? fmt(s.cpuS / (r.params.bytes / 1e9)) : fmt((1000 * s.cpuS) / r.params.files),
      fmt(s.maxRssMB, 0),
      fmt(s.cdnOverFetch, 3),
      fmt(s.cdnConnections, 0),
      ratio(s),
    ]),
  };
}

function resumeTable(r: ScenarioResult): Table {
  return {
    head: [
      "tool",
      "status",
      "ok runs (resumed)",
      "killed at s (median)",
      "kill + rerun wall s (median)",
      "fetched twice % (median)",
      "fetched twice % (worst)",
    ],
    rows: r.tools.map((s) => [
      s.tool,
      status(s),
      `${s.okRuns}/${s.runs} (${s.resume?.exercisedRuns ?? 0})`,
      fmt(s.resume?.killAtS ?? Number.NaN),
      fmt(s.resume?.totalWallS ?? Number.NaN),
      fmt(s.resume?.medianPct ?? Number.NaN, 2),
      fmt(s.resume?.worstPct ?? Number.NaN, 2),
    ]),
  };
}

export function scenarioTable(r: ScenarioResult): Table {
  return r.mode === "resume" ? resumeTable(r) : timedTable(r);
}

function verdict(t: TargetResult): string {
  if (t.holds === null) return "NOT MEASURED";
  return t.holds ? "HOLDS" : "MISSED";
}

function textTable(t: Table): string {
  const widths = t.head.map((h, i) => Math.max(h.length, ...t.rows.map((row) => (row[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(t.head), line(widths.map((w) => "-".repeat(w))), ...t.rows.map(line)].join("\n");
}

function mdTable(t: Table): string {
  const esc = (c: string) => c.replaceAll("|", "\\|");
  return [
    `| ${t.head.map(esc).join(" | ")} |`,
    `|${t.head.map((_, i) => (i < (t.left ?? 2) ? "---" : "---:")).join("|")}|`,
    ...t.rows.map((row) => `| ${row.map(esc).join(" | ")} |`),
  ].join("\n");
}

function params(r: ScenarioResult): string {
  const p = r.params;
  const rate =
    p.limitRateBytesPerS > 0
      ? `CDN capped at ${fmt(p.limitRateBytesPerS / MB, 1)} MB/s per ${p.throttle} (${p.throttle === "connection" ? "stream proxy_download_rate" : "http limit_rate"})`
      : "CDN not capped";
  const pages =
    p.pageSize !== undefined && p.pageSize !== 1000 ? `, listing ${p.pageSize} entries a page` : "";
  const hash = Number.isFinite(r.sha256CpuS)
    ? `; SHA-256 alone over these bytes: ${fmt(r.sha256CpuS)} CPU-s (${fmt(r.sha256CpuS / (p.bytes / 1e9))} per GB)`
    : "";
  return `${p.files} file(s), ${fmtBytes(p.bytes)}, hub latency ${p.latencyMs} ms, ${rate}${pages}, ${r.rounds} round(s)${hash}`;
}

function notes(r: ScenarioResult): string[] {
  const out: string[] = [];
  for (const s of r.tools) {
    if (s.note !== undefined && s.status !== "ok")
      out.push(`${s.tool}: ${s.status === "unavailable" ? "pending" : s.status}: ${s.note}`);
  }
  return out;
}

export function consoleReport(results: readonly ScenarioResult[]): string {
  const parts: string[] = [];
  for (const r of results) {
    parts.push(`\n== ${r.name}${r.smoke ? " (smoke)" : ""}: ${r.description}`);
    parts.push(`   ${params(r)}${r.reusedFrom !== undefined ? ` (runs reused from ${r.reusedFrom})` : ""}`);
    parts.push(textTable(scenarioTable(r)));
    for (const n of notes(r)) parts.push(`   note: ${n}`);
    for (const t of r.targets) parts.push(`target: ${t.text}: ${verdict(t)} (${t.detail})`);
  }
  return `${parts.join("\n")}\n`;
}

export function targetsTable(results: readonly ScenarioResult[]): Table {
  return {
    head: ["scenario", "target", "result", "detail"],
    left: 4,
    rows: results.flatMap((r) => r.targets.map((t) => [r.name, t.text, verdict(t), t.detail])),
  };
}

export function consoleTargets(results: readonly ScenarioResult[]): string {
  return `\n${textTable(targetsTable(results))}\n`;
}

export function markdownReport(results: readonly ScenarioResult[], meta: ReportMeta): string {
  const m = meta.machine;
  const lines: string[] = [];
  lines.push("# Benchmarks", "");
  lines.push(
    "Generated by `bench/` (`npm run build && npm run bench -- all --markdown BENCHMARKS.md`). hfget against",
    "aria2c (fed the resolved URL list the way hf-mirror's hfd script does) and curl (one stream), downloading",
    "from the project's fake hub (API and resolve endpoints, per-request latency) with a real nginx as the CDN",
    "origin the LFS redirects point to (sendfile, Range, a rate cap per connection), all on 127.0.0.1.",
    "",
  );
  if (meta.hfgetProblem !== undefined) {
    lines.push(
      "> **hfget: pending.** hfget could not run when these numbers were taken, so the tables hold the peers",
      `> only and no target is measured yet. (${meta.hfgetProblem.replaceAll("\n", " ")})`,
      "",
    );
  }
  if (meta.smoke)
    lines.push("> **Smoke sizes** (`--smoke`): for checking the harness, not for comparing speed.", "");
  lines.push("## Machine and run", "");
  lines.push(`- Date: ${meta.date}`);
  lines.push(`- Command: \`${meta.command}\``);
  lines.push(`- Code: commit ${meta.revision === "" ? "unknown" : meta.revision}`);
  lines.push(`- CPU: ${m.cpus} cores (${m.cpuModel}); memory ${m.memoryGiB} GiB`);
  lines.push(`- OS: ${m.os}, kernel ${m.kernel}`);
  lines.push(
    `- 1-minute load average at the start: ${m.loadAvg1}; highest seen between runs: ${meta.maxLoadAvg1} (other work on the machine skews the numbers)`,
  );
  lines.push(`- Node ${m.node}; nginx ${m.nginx}; aria2 ${m.aria2}; ${m.curl}`);
  lines.push(`- Rounds per tool: ${meta.rounds} (tools alternate within each round; medians reported)`, "");
  lines.push("## Targets", "", mdTable(targetsTable(results)), "");
  lines.push("## Results", "");
  for (const r of results) {
    lines.push(`### ${r.name}`, "");
    lines.push(
      `${r.description}. ${params(r)}${r.reusedFrom !== undefined ? ` (the ${r.reusedFrom} runs)` : ""}.`,
      "",
    );
    lines.push(mdTable(scenarioTable(r)), "");
    for (const n of notes(r)) lines.push(`- ${n}`);
    if (notes(r).length > 0) lines.push("");
  }
  lines.push("## How it is measured", "");
  lines.push(
    "- Each tool starts from an empty directory; rounds alternate the order of the tools. `sync` runs before",
    "  every timed run. The data files are read once before the runs so nginx serves them from the page cache.",
    "- Wall time is the bench's clock around the tool's process; CPU (user+sys) and peak RSS come from GNU",
    "  `/usr/bin/time -f`, which counts the tool and its children only (not nginx, not the fake hub, which runs",
    "  inside the bench process and shares the 2 cores). MB = 10^6 bytes.",
    "- After every run, outside the timed part, every output file's sha256 is compared with the expected one;",
    "  a wrong or missing file fails the bench (exit 1).",
    "- hfget: `bin/hfget.js <repo> --mirror <hub> --local-dir <empty dir> --quiet`, run as the installed command is",
    "  (through its shebang) (`--repo-type dataset` for datasets), its defaults otherwise; hfget-node is the same",
    "  started as `node bin/hfget.js` (as `npx hfget` and scripts do), where no shebang flag applies. hfget",
    "  verifies every file's hash itself; aria2c and curl do not.",
    "- SHA-256 alone: node's crypto over the same bytes (1 MiB reads from the page cache) under GNU time, once",
    "  per round in the big-file scenarios: the CPU cost every verifying downloader pays. The CPU-per-GB target",
    "  is `1.5 x curl's + SHA-256 alone`.",
    "- Peak RSS (80 MB) and CDN bytes / repo bytes (1.01) are targets in every scenario; the physical limit of",
    "  a capped CDN is hfget's 32 connections x the cap per connection.",
    "- aria2c: one shell command, timed whole: curl pages through `/api/{type}s/<repo>/tree/main?recursive=true`",
    "  (following `Link: rel=next`), jq turns it into an input file of `<hub>/<repo>/resolve/main/<path>` URLs",
    "  with `out=<path>` lines, then `aria2c -x16 -s16 -j16 -k1M -c --file-allocation=none -i list.txt` (hfd's",
    "  flags); aria2c follows each 302 to nginx. So its listing is timed, as hfget's is.",
    "- curl: `curl -L -o <file> <resolve URL>`: one stream, big files only; no listing.",
    "- The CDN's rate cap (big-throttled, resume) is per connection: nginx's static server sits behind nginx's",
    "  stream proxy with `proxy_download_rate`. nginx's http `limit_rate` is per request and starts every",
    "  request with about a second's worth of allowance, which a client sending one Range request per chunk",
    "  collects again on every chunk (`--throttle request` selects it anyway). The stream proxy gives each",
    "  new connection that allowance once, at its start; CDN conns shows how many connections a tool opened.",
    "- CDN bytes / repo bytes: response body bytes the CDN delivered to the tool (through the proxy: what",
    "  the stream proxy sent to clients, from its session log, minus response headers; else nginx's",
    "  `$body_bytes_sent`) over the repo's size; 1.000 = nothing fetched twice.",
    "- resume: the tool is SIGKILLed once its processes have written half the file (`wchar` in /proc/PID/io),",
    "  then rerun into the same directory; bytes fetched twice = body bytes delivered over both runs minus the",
    "  file size. Counted at the proxy's client side, because the static server behind it has pushed up to a",
    "  few MB per connection into the proxy's buffers that a killed client never received. aria2c runs with",
    "  `--auto-save-interval=1` there (by default it saves its control file only every 60 s).",
    "",
  );
  return `${lines.join("\n")}`;
}

export function jsonReport(results: readonly ScenarioResult[], meta: ReportMeta): string {
  return `${JSON.stringify({ ...meta, scenarios: results }, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2)}\n`;
}
