import { HfgetError } from "../errors.js";
import { pathProblem } from "../hub/paths.js";
import { isCommitSha } from "../hub/resolve-revision.js";
import { parseRepoArg, REPO_TYPES, type RepoRef, type RepoType } from "../repo.js";

/**
 * The snapshot archive `hfget export` writes and `hfget import` reads: a plain tar whose first
 * entry is the manifest `hfget-export.json`, then one regular-file entry `blobs/<id>` per distinct
 * blob (named by its hash, as in the cache). Nothing else is allowed in it: no folders, links or
 * other names, so an importer never builds a file name from anything but a checked manifest path.
 */
export const MANIFEST_NAME = "hfget-export.json";
export const ARCHIVE_FORMAT = "hfget-export";
export const ARCHIVE_VERSION = 1;
/** A manifest larger than this is refused before it is parsed (a million files fit in far less). */
export const MAX_MANIFEST_BYTES = 256 * 1024 * 1024;

export interface ManifestFile {
  /** Repo-relative, `/`-separated. */
  readonly path: string;
  readonly size: number;
  /** The cache blob name: the sha256 (LFS files) or the git blob sha1 of the content. */
  readonly blob: string;
  readonly algorithm: "sha256" | "git-sha1";
  /** Git blob sha1 of what git stores (the LFS pointer for LFS files), when the cache knew it. */
  readonly gitOid?: string | undefined;
}

export interface Manifest {
  readonly format: typeof ARCHIVE_FORMAT;
  readonly version: typeof ARCHIVE_VERSION;
  readonly repoType: RepoType;
  readonly repo: string;
  readonly commit: string;
  /** Refs (branch/tag names, `refs/pr/N`) that pointed at the commit in the exporting cache. */
  readonly refs: readonly string[];
  /**
   * The files are the whole commit (from its trees/<commit>.json, no filter): the importer then
   * writes trees/<commit>.json so huggingface_hub's offline mode knows the snapshot is complete.
   */
  readonly complete: boolean;
  readonly files: readonly ManifestFile[];
}

const SHA1 = /^[0-9a-f]{40}$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** The one error a broken, truncated or tampered archive gives (exit 5, as a failed verification). */
export function archiveError(
  what: string,
  hint = "the archive is damaged or was changed: export it again",
): HfgetError {
  return new HfgetError("VERIFY_FAILED", `refusing the archive: ${what}`, { hint });
}

/** Parses and checks a manifest from an untrusted archive; throws archiveError on anything off. */
export function parseManifest(text: string): Manifest {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw archiveError(`${MANIFEST_NAME} is not valid JSON`);
  }
  const bad = (why: string): never => {
    throw archiveError(`${MANIFEST_NAME}: ${why}`);
  };
  if (typeof data !== "object" || data === null) bad("not an object");
  const m = data as Record<string, unknown>;
  if (m.format !== ARCHIVE_FORMAT) bad("not an hfget export manifest");
  if (m.version !== ARCHIVE_VERSION) {
    throw archiveError(
      `format version ${String(m.version)} is not supported`,
      "import it with a newer hfget",
    );
  }
  if (typeof m.repoType !== "string" || !(REPO_TYPES as readonly string[]).includes(m.repoType))
    bad("bad repoType");
  const repoType = m.repoType as RepoType;
  if (typeof m.repo !== "string") bad("bad repo");
  let repo: RepoRef;
  try {
    const parsed = parseRepoArg(m.repo as string, repoType);
    if (parsed.origin !== undefined || parsed.target !== undefined || parsed.repo.id !== m.repo)
      throw new Error();
    repo = parsed.repo;
  } catch {
    return bad(`invalid repo id ${JSON.stringify(String(m.repo).slice(0, 100))}`);
  }
  if (typeof m.commit !== "string" || !isCommitSha(m.commit) || !SHA1.test(m.commit)) bad("bad commit sha");
  if (!Array.isArray(m.refs) || m.refs.some((r) => typeof r !== "string")) bad("bad refs");
  for (const r of m.refs as string[]) {
    const why = pathProblem(r);
    if (why !== undefined) bad(`unsafe ref name ${JSON.stringify(r.slice(0, 100))}: ${why}`);
  }
  if (typeof m.complete !== "boolean") bad("bad complete flag");
  if (!Array.isArray(m.files)) bad("bad files");
  const files: ManifestFile[] = [];
  const paths = new Set<string>();
  const blobSizes = new Map<string, number>();
  for (const f of m.files as unknown[]) {
    if (typeof f !== "object" || f === null) bad("bad file entry");
    const e = f as Record<string, unknown>;
    if (typeof e.path !== "string") return bad("file without a path");
    const why = pathProblem(e.path);
    if (why !== undefined) bad(`unsafe file path ${JSON.stringify(e.path.slice(0, 200))}: ${why}`);
    if (paths.has(e.path)) bad(`file ${e.path} listed twice`);
    paths.add(e.path);
    if (typeof e.size !== "number" || !Number.isSafeInteger(e.size) || e.size < 0)
      bad(`bad size for ${e.path}`);
    if (e.algorithm !== "sha256" && e.algorithm !== "git-sha1") bad(`bad hash algorithm for ${e.path}`);
    const re = e.algorithm === "sha256" ? SHA256 : SHA1;
    if (typeof e.blob !== "string" || !re.test(e.blob)) bad(`bad hash for ${e.path}`);
    if (e.gitOid !== undefined && (typeof e.gitOid !== "string" || !SHA1.test(e.gitOid)))
      bad(`bad git oid for ${e.path}`);
    if (e.algorithm === "git-sha1" && e.gitOid !== undefined && e.gitOid !== e.blob)
      bad(`git oid and hash differ for ${e.path}`);
    const known = blobSizes.get(e.blob as string);
    if (known !== undefined && known !== e.size) bad(`blob ${e.blob} listed with two sizes`);
    blobSizes.set(e.blob as string, e.size as number);
    files.push({
      path: e.path,
      size: e.size as number,
      blob: e.blob as string,
      algorithm: e.algorithm as "sha256" | "git-sha1",
      gitOid: e.gitOid as string | undefined,
    });
  }
  // A path that is also the folder of another path cannot be laid out as files.
  for (const p of paths) {
    for (let i = p.indexOf("/"); i >= 0; i = p.indexOf("/", i + 1)) {
      if (paths.has(p.slice(0, i))) bad(`${p.slice(0, i)} is both a file and a folder`);
    }
  }
  if (m.complete === true && files.some((f) => f.gitOid === undefined)) bad("complete, but git oids missing");
  return {
    format: ARCHIVE_FORMAT,
    version: ARCHIVE_VERSION,
    repoType: repo.type,
    repo: repo.id,
    commit: m.commit as string,
    refs: [...new Set(m.refs as string[])],
    complete: m.complete as boolean,
    files,
  };
}

/** The tar entry name of a blob. */
export function blobEntryName(blob: string): string {
  return `blobs/${blob}`;
}
