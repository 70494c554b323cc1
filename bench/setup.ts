// Makes sure the external tools are installed (through bench/setup.sh) and reports their versions.
import { execFileSync, spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { GIB, log, PROJECT_ROOT } from "./util.js";

export const NGINX = "/usr/sbin/nginx";
export const GNU_TIME = "/usr/bin/time";
export const NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";

const REQUIRED: readonly { name: string; paths: readonly string[] }[] = [
  { name: "nginx", paths: [NGINX] },
  { name: "nginx stream module", paths: [NGINX_STREAM_MODULE] },
  { name: "aria2c", paths: ["/usr/bin/aria2c"] },
  { name: "curl", paths: ["/usr/bin/curl"] },
  { name: "GNU time", paths: [GNU_TIME] },
  { name: "jq", paths: ["/usr/bin/jq"] },
];

function present(path: string): boolean {
  try {
    accessSync(path, path.endsWith(".so") ? constants.R_OK : constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function missingTools(): string[] {
  return REQUIRED.filter((t) => !t.paths.some(present)).map((t) => t.name);
}

/** Runs bench/setup.sh (apt-get) when any tool is missing; throws if they are still missing after. */
export function ensureTools(): void {
  const missing = missingTools();
  if (missing.length === 0) return;
  log(`missing: ${missing.join(", ")}; running bench/setup.sh`);
  const res = spawnSync("bash", [join(PROJECT_ROOT, "bench", "setup.sh")], { stdio: "inherit" });
  if (res.status !== 0) throw new Error(`bench/setup.sh failed (exit ${res.status ?? res.signal})`);
  const still = missingTools();
  if (still.length > 0) throw new Error(`still missing after bench/setup.sh: ${still.join(", ")}`);
}

function firstLine(cmd: string, args: readonly string[], fromStderr = false): string {
  try {
    const res = spawnSync(cmd, args, { encoding: "utf8", timeout: 10_000 });
    const text = fromStderr ? res.stderr : res.stdout;
    return (text ?? "").split("\n")[0]?.trim() ?? "";
  } catch {
    return "";
  }
}

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  os: string;
  node: string;
  nginx: string;
  aria2: string;
  curl: string;
  /** 1-minute load average when the bench started (other work on the machine skews the numbers). */
  loadAvg1: number;
}

/** The checked-out commit (short), with "+dirty" when the work tree has changes; "" outside git. */
export function gitRevision(): string {
  const head = firstLine("git", ["-C", PROJECT_ROOT, "rev-parse", "--short", "HEAD"]);
  if (head === "") return "";
  const res = spawnSync("git", ["-C", PROJECT_ROOT, "status", "--porcelain", "--untracked-files=no"], {
    encoding: "utf8",
    timeout: 10_000,
  });
  return (res.stdout ?? "").trim() === "" ? head : `${head}+dirty`;
}

export function machineInfo(): MachineInfo {
  let os = "";
  try {
    const text = execFileSync("cat", ["/etc/os-release"], { encoding: "utf8" });
    os = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(text)?.[1] ?? "";
  } catch {
    os = "";
  }
  const cpuList = cpus();
  return {
    cpus: cpuList.length,
    cpuModel: cpuList[0]?.model ?? "",
    memoryGiB: Math.round((totalmem() / GIB) * 10) / 10,
    kernel: firstLine("uname", ["-r"]),
    os,
    node: process.version,
    nginx: firstLine(NGINX, ["-v"], true).replace(/^nginx version:\s*/, ""),
    aria2: firstLine("aria2c", ["--version"]).replace(/^aria2 version\s*/, ""),
    curl: firstLine("curl", ["--version"]).split(" ").slice(0, 2).join(" "),
    loadAvg1: Math.round((loadavg()[0] ?? 0) * 100) / 100,
  };
}
