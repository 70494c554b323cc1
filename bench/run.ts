// Entry point: `npm run bench -- <scenario...|all> [options]` (node dist/bench/run.js).
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { type MirrorsBenchResult, mirrorsReport, runMirrorsBench } from "./mirrors-speed.js";
import type { ThrottleMode } from "./nginx.js";
import { cleanupAll, installSignalHandlers } from "./procs.js";
import { consoleReport, consoleTargets, jsonReport, markdownReport, type ReportMeta } from "./report.js";
import { runScenario, SCENARIO_NAMES, type ScenarioName, type ScenarioResult } from "./scenarios.js";
import { runServeTeamBench, serveTeamReport, type TeamBenchResult } from "./serve-team.js";
import { ensureTools, gitRevision, machineInfo } from "./setup.js";
import { ALL_TOOLS, type HfgetTarget, hfgetProblem, type ToolName } from "./tools.js";
import { errorMessage, log, sampleLoad } from "./util.js";
import { runVerifyBench, type VerifyBenchResult, verifyReport } from "./verify-speed.js";

const USAGE = `usage: npm run bench -- <scenario...|all> [options]

scenarios: ${SCENARIO_NAMES.join(", ")}, verify, mirrors, serve-team, or all
  (verify: \`hfget cache verify\` GB/s against sha256sum on the same blobs, no network)
  (serve-team: N curl clients at once on one large file, straight to the hub vs nginx proxy_cache
   in front of it vs hfget serve: CDN bytes and the team's wall time, as ratios in one run)

options:
  --rounds N            rounds per tool (default 3; tools alternate within a round)
  --smoke               small sizes (32 MiB files, 200 small files), 1 round: checks the harness in CI
  --json FILE           write every run and summary as JSON
  --markdown FILE       write the results as markdown (BENCHMARKS.md); "-" for stdout
  --tools LIST          comma-separated subset of ${ALL_TOOLS.join(",")} (default: all)
  --hfget-target MODE   local-dir (default) or cache-dir: how hfget is told where to download
  --throttle MODE       connection (default: nginx stream proxy_download_rate, a cap per connection) or
                        request (nginx http limit_rate, which gives every request a ~1 s burst)
  --nginx-workers N     nginx worker processes (default 1, leaving the other core to the tool)
  --require-hfget       fail when hfget cannot start (default: its rows are marked pending)
  --fail-on-target      exit 1 when a measured target is missed
  --team-size MIB       serve-team's file size in MiB (default 1024; 32 with --smoke)
  --team-clients N      serve-team's clients at once (default 4)
  --keep-output         keep the last output directory of each tool under bench/work/out
  -h, --help            this text
`;

interface Cli {
  scenarios: ScenarioName[];
  verify: boolean;
  team: boolean;
  teamSizeMiB: number | undefined;
  teamClients: number | undefined;
  mirrors: boolean;
  rounds: number;
  smoke: boolean;
  json: string | undefined;
  markdown: string | undefined;
  tools: ToolName[];
  hfgetTarget: HfgetTarget;
  throttle: ThrottleMode;
  nginxWorkers: number;
  requireHfget: boolean;
  failOnTarget: boolean;
  keepOutput: boolean;
}

class UsageError extends Error {}

function parseCli(argv: string[]): Cli | undefined {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      rounds: { type: "string" },
      smoke: { type: "boolean", default: false },
      json: { type: "string" },
      markdown: { type: "string" },
      tools: { type: "string" },
      "hfget-target": { type: "string" },
      throttle: { type: "string" },
      "nginx-workers": { type: "string" },
      "require-hfget": { type: "boolean", default: false },
      "fail-on-target": { type: "boolean", default: false },
      "keep-output": { type: "boolean", default: false },
      "team-size": { type: "string" },
      "team-clients": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help === true) return undefined;
  if (positionals.length === 0) throw new UsageError("name a scenario, or all");
  const scenarios: ScenarioName[] = [];
  let verify = false;
  let team = false;
  let mirrors = false;
  for (const p of positionals) {
    if (p === "all") {
      scenarios.push(...SCENARIO_NAMES);
      verify = true;
      team = true;
      mirrors = true;
    } else if (p === "verify") {
      verify = true;
    } else if (p === "serve-team") {
      team = true;
    } else if (p === "mirrors") {
      mirrors = true;
    } else if ((SCENARIO_NAMES as readonly string[]).includes(p)) {
      scenarios.push(p as ScenarioName);
    } else {
      throw new UsageError(`unknown scenario ${JSON.stringify(p)}`);
    }
  }
  const rounds = values.rounds === undefined ? 3 : Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100)
    throw new UsageError("--rounds must be 1..100");
  const tools = (values.tools ?? ALL_TOOLS.join(",")).split(",").map((t) => t.trim());
  for (const t of tools) {
    if (!(ALL_TOOLS as readonly string[]).includes(t))
      throw new UsageError(`unknown tool ${JSON.stringify(t)}`);
  }
  const target = values["hfget-target"] ?? "local-dir";
  if (target !== "local-dir" && target !== "cache-dir")
    throw new UsageError("--hfget-target: local-dir or cache-dir");
  const throttle = values.throttle ?? "connection";
  if (throttle !== "connection" && throttle !== "request")
    throw new UsageError("--throttle: connection or request");
  const nginxWorkers = Number(values["nginx-workers"] ?? "1");
  if (!Number.isInteger(nginxWorkers) || nginxWorkers < 1 || nginxWorkers > 64) {
    throw new UsageError("--nginx-workers must be 1..64");
  }
  const teamSizeMiB = values["team-size"] === undefined ? undefined : Number(values["team-size"]);
  if (
    teamSizeMiB !== undefined &&
    !(Number.isInteger(teamSizeMiB) && teamSizeMiB >= 1 && teamSizeMiB <= 65536)
  )
    throw new UsageError("--team-size must be 1..65536 (MiB)");
  const teamClients = values["team-clients"] === undefined ? undefined : Number(values["team-clients"]);
  if (teamClients !== undefined && !(Number.isInteger(teamClients) && teamClients >= 1 && teamClients <= 64))
    throw new UsageError("--team-clients must be 1..64");
  // Keep the order of SCENARIO_NAMES (memory reuses big-loopback when both run) and drop repeats.
  const wanted = SCENARIO_NAMES.filter((s) => scenarios.includes(s));
  return {
    scenarios: wanted,
    verify,
    team,
    teamSizeMiB,
    teamClients,
    mirrors,
    rounds,
    smoke: values.smoke === true,
    json: values.json,
    markdown: values.markdown,
    tools: tools as ToolName[],
    hfgetTarget: target,
    throttle,
    nginxWorkers,
    requireHfget: values["require-hfget"] === true,
    failOnTarget: values["fail-on-target"] === true,
    keepOutput: values["keep-output"] === true,
  };
}

async function main(argv: string[]): Promise<number> {
  let cli: Cli | undefined;
  try {
    cli = parseCli(argv);
  } catch (err) {
    process.stderr.write(`bench: ${errorMessage(err)}\n\n${USAGE}`);
    return 2;
  }
  if (cli === undefined) {
    process.stdout.write(USAGE);
    return 0;
  }
  installSignalHandlers();
  ensureTools();
  const machine = machineInfo();
  const problem = cli.tools.includes("hfget") ? hfgetProblem() : undefined;
  if (problem !== undefined) {
    if (cli.requireHfget) {
      log(`hfget cannot run: ${problem}`);
      return 1;
    }
    log(`WARNING: hfget cannot run yet, its rows are marked pending: ${problem}`);
  }
  const meta: ReportMeta = {
    date: new Date().toISOString(),
    command: `npm run bench -- ${argv.join(" ")}`,
    revision: gitRevision(),
    machine,
    smoke: cli.smoke,
    rounds: cli.smoke ? 1 : cli.rounds,
    hfgetProblem: problem,
    maxLoadAvg1: sampleLoad(),
  };
  const results: ScenarioResult[] = [];
  let verified: VerifyBenchResult | undefined;
  let teamed: TeamBenchResult | undefined;
  let mirrored: MirrorsBenchResult | undefined;
  const done = new Map<ScenarioName, ScenarioResult>();
  const t0 = performance.now();
  try {
    for (const name of cli.scenarios) {
      const r = await runScenario(
        name,
        {
          rounds: cli.rounds,
          smoke: cli.smoke,
          tools: cli.tools,
          hfgetTarget: cli.hfgetTarget,
          throttle: cli.throttle,
          nginxWorkers: cli.nginxWorkers,
          hfgetProblem: problem,
          keepOutput: cli.keepOutput,
        },
        done,
      );
      results.push(r);
      done.set(name, r);
    }
    if (cli.verify) verified = await runVerifyBench({ rounds: cli.rounds, smoke: cli.smoke });
    if (cli.team)
      teamed = await runServeTeamBench({
        smoke: cli.smoke,
        sizeMiB: cli.teamSizeMiB,
        clients: cli.teamClients,
      });
    if (cli.mirrors) mirrored = await runMirrorsBench({ rounds: cli.rounds, smoke: cli.smoke });
  } finally {
    await cleanupAll();
  }
  meta.maxLoadAvg1 = sampleLoad();
  process.stdout.write(consoleReport(results));
  process.stdout.write(consoleTargets(results));
  const verifyLines = [
    ...(verified === undefined ? [] : verifyReport(verified)),
    ...(teamed === undefined ? [] : serveTeamReport(teamed)),
    ...(mirrored === undefined ? [] : mirrorsReport(mirrored)),
  ];
  if (verifyLines.length > 0) process.stdout.write(`\n${verifyLines.join("\n")}`);
  if (cli.json !== undefined) {
    const json = jsonReport(results, meta);
    const extra = {
      ...(verified === undefined ? {} : { verify: verified }),
      ...(mirrored === undefined ? {} : { mirrors: mirrored }),
      ...(teamed === undefined ? {} : { serveTeam: teamed }),
    };
    const withVerify =
      Object.keys(extra).length === 0
        ? json
        : `${JSON.stringify({ ...(JSON.parse(json) as object), ...extra }, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2)}\n`;
    await writeFile(resolve(cli.json), withVerify);
  }
  const markdown = () =>
    `${markdownReport(results, meta)}${verifyLines.length > 0 ? `\n${verifyLines.join("\n")}` : ""}`;
  if (cli.markdown === "-") process.stdout.write(markdown());
  else if (cli.markdown !== undefined) await writeFile(resolve(cli.markdown), markdown());

  const failures = [
    ...results.flatMap((r) => r.failures),
    ...(verified?.failures ?? []),
    ...(teamed?.failures ?? []),
    ...(mirrored?.failures ?? []),
  ];
  const missed: string[] = results.filter((r) => r.target.holds === false).map((r) => r.name);
  if (teamed !== undefined && !teamed.target.holds) missed.push("serve-team");
  if (mirrored?.targetHolds === false) missed.push("mirrors");
  log(`finished in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (failures.length > 0) {
    process.stderr.write(`\nBENCH FAILED: ${failures.length} run(s) failed or produced wrong output:\n`);
    for (const f of failures) process.stderr.write(`  - ${f}\n`);
    return 1;
  }
  if (cli.failOnTarget && missed.length > 0) {
    process.stderr.write(`\nBENCH: target missed in ${missed.join(", ")}\n`);
    return 1;
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  async (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    await cleanupAll();
    process.exitCode = 1;
  },
);
