import { usageError } from "./errors.js";

export type RepoType = "model" | "dataset" | "space";

export const REPO_TYPES: readonly RepoType[] = ["model", "dataset", "space"];

export interface RepoRef {
  readonly type: RepoType;
  /** `org/name` or `name` */
  readonly id: string;
}

/** One way to split a pasted URL's `<rev>/<path>` tail: the hub's web URLs do not escape `/` in a revision. */
export interface UrlChoice {
  readonly revision: string;
  /** The file or folder inside the repo ("" for the repo root). */
  readonly path: string;
}

/** What a pasted `…/blob|resolve/<rev>/<file>` or `…/tree/<rev>[/<folder>]` URL names. */
export interface UrlTarget {
  readonly kind: "file" | "folder";
  /** Longest revision first; the first one that exists on the hub is the one meant. */
  readonly choices: readonly UrlChoice[];
}

export interface ParsedRepoArg {
  readonly repo: RepoRef;
  /** A revision named inside a pasted URL (`.../tree/<rev>`), if any: the longest choice. */
  readonly revision?: string | undefined;
  /** The file or folder a pasted URL names, if any. */
  readonly target?: UrlTarget | undefined;
  /** `scheme://host[:port]` of a pasted URL. */
  readonly origin?: string | undefined;
}

const PLURAL_TO_TYPE: Record<string, RepoType> = {
  models: "model",
  datasets: "dataset",
  spaces: "space",
};

/** The hub's rule for one part of a repo id: letters, digits, `-`, `_`, `.`; no leading/trailing `-`/`.`, no `--` or `..`. */
const PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$/;

function checkPart(part: string, whole: string): void {
  if (!PART.test(part) || part.includes("--") || part.includes("..")) {
    throw usageError(
      `invalid repo id "${whole}": "${part}" is not a valid name`,
      "a repo id is `name` or `org/name` using letters, digits, '-', '_' and '.'",
    );
  }
}

export function parseRepoType(value: string): RepoType {
  const v = value.trim().toLowerCase();
  const t = (REPO_TYPES as readonly string[]).includes(v) ? (v as RepoType) : PLURAL_TO_TYPE[v];
  if (t === undefined) {
    throw usageError(`unknown repo type "${value}"`, "use --repo-type model, dataset or space");
  }
  return t;
}

function decodeSegment(s: string, arg: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw usageError(
      `invalid repo URL "${arg}": "${s}" is not a valid %-escape`,
      "paste the URL as the hub shows it",
    );
  }
}

/** At most this many ways to split an unescaped `<rev>/<path>` tail (each costs one API call). */
const MAX_CHOICES = 8;

/**
 * `<rev>/<path…>` segments (each already decoded; a `%2F` stays inside its segment) -> the ways to
 * split them, longest revision first. A 40-hex sha is never part of a longer revision.
 */
function urlChoices(tail: readonly string[], kind: "file" | "folder"): UrlChoice[] {
  const maxRev = kind === "file" ? tail.length - 1 : tail.length;
  const first = tail[0] ?? "";
  const longest = /^[0-9a-f]{40}$/.test(first) ? 1 : Math.min(maxRev, MAX_CHOICES);
  const out: UrlChoice[] = [];
  for (let i = longest; i >= 1; i--) {
    out.push({ revision: tail.slice(0, i).join("/"), path: tail.slice(i).join("/") });
  }
  return out;
}

/**
 * Accepts `org/name`, `name`, `datasets/org/name`, `spaces/org/name`, `models/org/name`, and
 * pasted hub URLs: `https://huggingface.co/datasets/org/name/tree/v1.0/data` (a folder),
 * `…/blob/<rev>/<file>` and `…/resolve/<rev>/<file>` (one file).
 * `repoTypeOverride` (from --repo-type) wins over a type implied by the argument.
 */
export function parseRepoArg(arg: string, repoTypeOverride?: RepoType): ParsedRepoArg {
  const rest = arg.trim();
  if (rest === "") throw usageError("the repo id is empty", "pass a repo id such as openai-community/gpt2");
  let segments: string[];
  let fromUrl = false;
  let origin: string | undefined;
  if (/^https?:\/\//i.test(rest)) {
    let url: URL;
    try {
      url = new URL(rest);
    } catch {
      throw usageError(`invalid repo URL "${arg}"`);
    }
    origin = url.origin;
    // Split before decoding: `refs%2Fpr%2F1` is one segment, as the hub's own links write it.
    segments = url.pathname
      .replace(/^\/+|\/+$/g, "")
      .split("/")
      .map((s) => decodeSegment(s, arg));
    fromUrl = true;
  } else {
    segments = rest.split("/");
  }
  let impliedType: RepoType | undefined;
  const first = segments[0] ?? "";
  if (segments.length > 1 && PLURAL_TO_TYPE[first] !== undefined) {
    impliedType = PLURAL_TO_TYPE[first];
    segments = segments.slice(1);
  }
  let target: UrlTarget | undefined;
  if (fromUrl) {
    // https://host/org/name/tree/<rev>[/path], /blob/<rev>/<file>, /resolve/<rev>/<file>
    const marker = segments.findIndex((s) => s === "tree" || s === "blob" || s === "resolve");
    if (marker >= 1) {
      const tail = segments.slice(marker + 1).filter((s) => s !== "");
      const kind = segments[marker] === "tree" ? "folder" : "file";
      if (tail.length === 1 && kind === "file") {
        throw usageError(`invalid repo URL "${arg}": it names a revision but no file`);
      }
      if (tail.length > 0) target = { kind, choices: urlChoices(tail, kind) };
      segments = segments.slice(0, marker);
    }
  }
  if (segments.length > 2 || segments.some((s) => s === "")) {
    throw usageError(
      `invalid repo id "${arg}"`,
      "a repo id is `name` or `org/name`, optionally prefixed by datasets/ or spaces/",
    );
  }
  for (const s of segments) checkPart(s, arg);
  const id = segments.join("/");
  return {
    repo: { type: repoTypeOverride ?? impliedType ?? "model", id },
    revision: target?.choices[0]?.revision,
    target,
    origin,
  };
}

/** `models--org--name`, the cache folder name huggingface_hub uses. */
export function repoFolderName(repo: RepoRef): string {
  return [`${repo.type}s`, ...repo.id.split("/")].join("--");
}

/** URL path prefix of a repo's web routes: "" for models, "datasets/" and "spaces/" otherwise. */
export function repoUrlPrefix(type: RepoType): string {
  return type === "model" ? "" : `${type}s/`;
}

export function repoLabel(repo: RepoRef): string {
  return `${repoUrlPrefix(repo.type)}${repo.id}`;
}
