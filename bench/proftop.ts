// Summarises V8 CPU profiles (`node --cpu-prof`): self time per function, top N, as a markdown table.
//   HFGET_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" npm run bench -- big-loopback --tools hfget-node --rounds 1
//   node dist/bench/proftop.js /tmp/prof/*.cpuprofile [--top 15]
// Several profiles (hfget's main thread and its workers) are added up; percentages are of the total.
import { readFileSync } from "node:fs";
import { basename } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function label(n: ProfileNode): string {
  const f = n.callFrame;
  const name = f.functionName === "" ? "(anonymous)" : f.functionName;
  if (f.url === "") return name;
  const url = f.url.replace(/^file:\/\//, "");
  const short = url.includes("node_modules/")
    ? url.slice(url.lastIndexOf("node_modules/") + 13)
    : url.startsWith("node:")
      ? url
      : basename(url);
  return `${name} (${short}:${f.lineNumber + 1})`;
}

function main(argv: string[]): void {
  let top = 15;
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--top") top = Number(argv[++i]);
    else files.push(argv[i]!);
  }
  const self = new Map<string, number>();
  let total = 0;
  for (const file of files) {
    const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    for (let i = 0; i < p.samples.length; i++) {
      const n = byId.get(p.samples[i]!);
      const dt = p.timeDeltas[i] ?? 0;
      if (n === undefined) continue;
      const key = label(n);
      self.set(key, (self.get(key) ?? 0) + dt);
      total += dt;
    }
  }
  const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  process.stdout.write(`profile time ${(total / 1e6).toFixed(2)} s over ${files.length} profile(s)\n\n`);
  process.stdout.write("| self % | self s | function |\n|---:|---:|---|\n");
  for (const [k, us] of rows) {
    process.stdout.write(
      `| ${((100 * us) / total).toFixed(1)} | ${(us / 1e6).toFixed(2)} | ${k.replaceAll("|", "\\|")} |\n`,
    );
  }
}

main(process.argv.slice(2));
