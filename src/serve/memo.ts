import { createHash } from "node:crypto";
import { mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { TreeEntry } from "../cache/tree-cache.js";
import { isCommitSha } from "../hub/resolve-revision.js";
import type { RepoRef } from "../repo.js";
import { writeFileAtomic } from "../util/atomic-write.js";

/**
 * What `hfget serve` heard from the upstream, kept on disk beside the cache so the hub API can be
 * answered as the upstream did when it cannot be asked (`--offline`, upstream down, a restart):
 *
 *     <repo folder>/.hfget-serve/info/<commit>.json     the repo info answer (siblings left out)
 *     <repo folder>/.hfget-serve/listing/<commit>.json  the commit's whole file list + folder oids
 *
 * huggingface_hub (0.36 and 1.28 `scan_cache_dir`) looks only at blobs/, refs/ and snapshots/ of a
 * repo folder, so this folder is invisible to it; a repo folder must have snapshots/ though, so one
 * is created with it. Both files are keyed by commit: what the upstream said of a commit does not
 * change (a branch moving is a new commit). Writes are atomic; a failure is only a lost memo.
 */
export const MEMO_DIR = ".hfget-serve";
const FORMAT_VERSION = 1;

export interface Listing {
  /** Every file of the commit, as trees/<commit>.json keeps them. */
  readonly files: Record<string, TreeEntry>;
  /** Folder path -> git tree oid, as the upstream listed it. */
  readonly dirs: Record<string, string>;
}

function memoPath(repoDir: string, kind: "info" | "listing", commit: string): string {
  return join(repoDir, MEMO_DIR, kind, `${commit}.json`);
}

async function writeMemo(repoDir: string, kind: "info" | "listing", commit: string, value: unknown) {
  if (!isCommitSha(commit)) return;
  try {
    await mkdir(join(repoDir, "snapshots"), { recursive: true });
    await mkdir(join(repoDir, MEMO_DIR, kind), { recursive: true });
    await writeFileAtomic(
      memoPath(repoDir, kind, commit),
      `${JSON.stringify({ format_version: FORMAT_VERSION, ...(value as object) })}\n`,
    );
  } catch {
    // read-only or full cache: the server still answers from upstream while it can
  }
}

async function readMemo(repoDir: string, kind: "info" | "listing", commit: string) {
  if (!isCommitSha(commit)) return undefined;
  try {
    const data = JSON.parse(await readFile(memoPath(repoDir, kind, commit), "utf8")) as unknown;
    if (typeof data !== "object" || data === null) return undefined;
    if ((data as { format_version?: unknown }).format_version !== FORMAT_VERSION) return undefined;
    return data as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

export async function writeInfoMemo(repoDir: string, commit: string, info: Record<string, unknown>) {
  await writeMemo(repoDir, "info", commit, { info });
}

/** The upstream's info answer for this commit, without siblings, if it was ever heard. */
export async function readInfoMemo(
  repoDir: string,
  commit: string,
): Promise<Record<string, unknown> | undefined> {
  const info = (await readMemo(repoDir, "info", commit))?.info;
  return typeof info === "object" && info !== null && !Array.isArray(info)
    ? (info as Record<string, unknown>)
    : undefined;
}

/**
 * Whether any info the upstream gave for this repo (any commit) said it is private or gated: such a
 * repo is for the clients the upstream accepts, which an `--offline` server cannot ask about.
 */
export async function upstreamSaidRestricted(repoDir: string): Promise<boolean> {
  let names: string[];
  try {
    names = await readdir(join(repoDir, MEMO_DIR, "info"));
  } catch {
    return false;
  }
  for (const name of names) {
    if (!name.endsWith(".json")) continue;
    const info = await readInfoMemo(repoDir, name.slice(0, -".json".length));
    if (info && (info.private === true || (info.gated !== undefined && info.gated !== false))) return true;
  }
  return false;
}

export async function writeListingMemo(repoDir: string, commit: string, listing: Listing) {
  await writeMemo(repoDir, "listing", commit, listing);
}

export async function readListingMemo(repoDir: string, commit: string): Promise<Listing | undefined> {
  const data = await readMemo(repoDir, "listing", commit);
  if (data === undefined) return undefined;
  const { files, dirs } = data as { files?: unknown; dirs?: unknown };
  if (typeof files !== "object" || files === null || typeof dirs !== "object" || dirs === null)
    return undefined;
  return { files: files as Record<string, TreeEntry>, dirs: dirs as Record<string, string> };
}

export async function hasListingMemo(repoDir: string, commit: string): Promise<boolean> {
  return (await readMemo(repoDir, "listing", commit)) !== undefined;
}

/**
 * `/api/{models|datasets|spaces}/{id}[/revision/{rev}]`'s 200 answer, as a memo: the repo it names
 * (the id in the body must be the one asked for) and its commit. Answers to `expand` queries hold
 * only some fields and are not kept.
 */
export function infoFromAnswer(
  url: URL,
  status: number,
  body: Buffer,
): { repo: RepoRef; commit: string; info: Record<string, unknown> } | undefined {
  if (status !== 200) return undefined;
  if ([...url.searchParams.keys()].some((k) => k.startsWith("expand"))) return undefined;
  const m = /^\/api\/(models|datasets|spaces)\/([^/]+(?:\/[^/]+)??)(?:\/revision\/[^/]+)?$/.exec(
    url.pathname,
  );
  if (m === null) return undefined;
  let info: unknown;
  let wanted: string;
  try {
    info = JSON.parse(body.toString("utf8"));
    wanted = decodeURIComponent(m[2] ?? "");
  } catch {
    return undefined;
  }
  if (typeof info !== "object" || info === null || Array.isArray(info)) return undefined;
  const { id, sha, siblings: _siblings, ...rest } = info as Record<string, unknown>;
  if (id !== wanted || typeof sha !== "string" || !isCommitSha(sha)) return undefined;
  const type = m[1] === "models" ? "model" : m[1] === "datasets" ? "dataset" : "space";
  return { repo: { type, id: wanted }, commit: sha, info: { id, sha, ...rest } };
}

/** git's order of a folder's entries: by name bytes, a folder's name compared as "name/". */
function gitOrder(a: { key: Buffer }, b: { key: Buffer }): number {
  return Buffer.compare(a.key, b.key);
}

/**
 * The git tree oid of every folder (and "" for the root) of a complete file list: sha1 of
 * `tree <len>\0` + entries in git order, each `<mode> <name>\0<20-byte oid>`. The hub's listing
 * does not give modes: every file counts as 100644 (an executable or a symlink in a folder would
 * change its oid; a folder oid the upstream listed is preferred where one was heard).
 */
export function treeOids(files: ReadonlyMap<string, string>): Map<string, string> {
  interface Node {
    dirs: Map<string, Node>;
    files: Map<string, string>;
  }
  const root: Node = { dirs: new Map(), files: new Map() };
  for (const [path, oid] of files) {
    const segs = path.split("/");
    let node = root;
    for (const seg of segs.slice(0, -1)) {
      let next = node.dirs.get(seg);
      if (next === undefined) {
        next = { dirs: new Map(), files: new Map() };
        node.dirs.set(seg, next);
      }
      node = next;
    }
    node.files.set(segs[segs.length - 1] ?? "", oid);
  }
  const out = new Map<string, string>();
  const visit = (node: Node, path: string): string => {
    const items: { key: Buffer; entry: Buffer }[] = [];
    for (const [name, dir] of node.dirs) {
      const oid = visit(dir, path === "" ? name : `${path}/${name}`);
      items.push({
        key: Buffer.from(`${name}/`),
        entry: Buffer.concat([Buffer.from(`40000 ${name}\0`), Buffer.from(oid, "hex")]),
      });
    }
    for (const [name, oid] of node.files) {
      items.push({
        key: Buffer.from(name),
        entry: Buffer.concat([Buffer.from(`100644 ${name}\0`), Buffer.from(oid, "hex")]),
      });
    }
    const content = Buffer.concat(items.sort(gitOrder).map((i) => i.entry));
    const oid = createHash("sha1").update(`tree ${content.length}\0`).update(content).digest("hex");
    out.set(path, oid);
    return oid;
  };
  visit(root, "");
  return out;
}
