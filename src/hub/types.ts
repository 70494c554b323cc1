import type { RepoRef } from "../repo.js";

/** A file of a repo at one commit, as hfget uses it. */
export interface RepoFile {
  readonly path: string;
  /** Content size in bytes (for LFS files, the real size, not the pointer's). */
  readonly size: number;
  /** Git blob sha1 of what git stores (for LFS files, of the pointer). */
  readonly gitOid: string;
  /** Present for LFS (and Xet) files: the content's sha256. */
  readonly lfs?: { readonly sha256: string } | undefined;
}

/** What the content is checked against, and the blob name in the cache. */
export interface ExpectedHash {
  readonly algorithm: "sha256" | "git-sha1";
  readonly hex: string;
}

export function expectedHash(file: RepoFile): ExpectedHash {
  return file.lfs
    ? { algorithm: "sha256", hex: file.lfs.sha256 }
    : { algorithm: "git-sha1", hex: file.gitOid };
}

/** huggingface_hub names blobs by sha256 for LFS files, by git sha1 otherwise. */
export function blobId(file: RepoFile): string {
  return expectedHash(file).hex;
}

export interface ResolvedRevision {
  readonly repo: RepoRef;
  /** What the user asked for: branch, tag, refs/pr/N or a sha. */
  readonly revision: string;
  readonly commit: string;
}
