import { usageError } from "./errors.js";

export type RepoType = "model" | "dataset" | "space";

export const REPO_TYPES: readonly RepoType[] = ["model", "dataset", "space"];

export interface RepoRef {
  readonly type: RepoType;
  /** `org/name` or `name` */
  readonly id: string;
}

export interface ParsedRepoArg {
  readonly repo: RepoRef;
  /** A revision named inside a pasted URL (`.../tree/<rev>`), if any. */
  readonly revision?: string | undefined;
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

/**
 * Accepts `org/name`, `name`, `datasets/org/name`, `spaces/org/name`, `models/org/name`, and
 * pasted hub URLs such as `https://huggingface.co/datasets/org/name/tree/v1.0`.
 * `repoTypeOverride` (from --repo-type) wins over a type implied by the argument.
 */
export function parseRepoArg(arg: string, repoTypeOverride?: RepoType): ParsedRepoArg {
  let rest = arg.trim();
  if (rest === "") throw usageError("the repo id is empty", "pass a repo id such as openai-community/gpt2");
  let revision: string | undefined;
  let fromUrl = false;
  if (/^https?:\/\//i.test(rest)) {
    let url: URL;
    try {
      url = new URL(rest);
    } catch {
      throw usageError(`invalid repo URL "${arg}"`);
    }
    rest = decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, "");
    fromUrl = true;
  }
  let segments = rest.split("/");
  let impliedType: RepoType | undefined;
  const first = segments[0] ?? "";
  if (segments.length > 1 && PLURAL_TO_TYPE[first] !== undefined) {
    impliedType = PLURAL_TO_TYPE[first];
    segments = segments.slice(1);
  }
  if (fromUrl) {
    // https://host/org/name/tree/<rev>[/path], /blob/<rev>/..., /resolve/<rev>/...
    const marker = segments.findIndex((s) => s === "tree" || s === "blob" || s === "resolve");
    if (marker >= 1) {
      const rev = segments[marker + 1];
      if (rev !== undefined && rev !== "") revision = rev;
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
  return { repo: { type: repoTypeOverride ?? impliedType ?? "model", id }, revision };
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
