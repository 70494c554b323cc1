import { HfgetError } from "../errors.js";
import { type RepoRef, repoLabel } from "../repo.js";
import type { ApiRevisionInfo } from "./api-types.js";
import type { HubClient } from "./client.js";
import type { ResolvedRevision } from "./types.js";

const SHA = /^[0-9a-f]{40}$/;

export function isCommitSha(rev: string): boolean {
  return SHA.test(rev);
}

/**
 * Branch, tag, refs/pr/N or sha -> commit sha. A full sha is taken as is (the listing at that sha
 * then proves it exists). The revision is one encoded path segment: refs/pr/1 -> refs%2Fpr%2F1.
 */
export async function resolveRevision(
  hub: HubClient,
  repo: RepoRef,
  revision: string,
  signal?: AbortSignal,
): Promise<ResolvedRevision> {
  if (isCommitSha(revision)) return { repo, revision, commit: revision };
  const url = `${hub.apiRepoUrl(repo)}/revision/${encodeURIComponent(revision)}`;
  const what = `${repoLabel(repo)}@${revision}`;
  const { data } = await hub.getJson(url, hub.errorContext(what, "REVISION_NOT_FOUND"), signal);
  const sha = (data as ApiRevisionInfo | null)?.sha;
  if (typeof sha !== "string" || !SHA.test(sha)) {
    throw new HfgetError("PROTOCOL", `${what}: the revision answer has no commit sha`, {
      hint: "the endpoint is not answering like a hub; check --mirror / HF_ENDPOINT",
    });
  }
  return { repo, revision, commit: sha };
}
