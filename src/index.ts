/** hfget as a library: the same pipeline the CLI runs, without printing. */
export { cachePaths, localDirPaths } from "./cache/paths.js";
export { buildConfig, type Config, DEFAULTS, type RawOptions } from "./config.js";
export { download } from "./download.js";
export { type ErrorCode, EXIT_CODES, HfgetError, isHfgetError } from "./errors.js";
export type { DownloadEvent, DownloadResult, EndpointResult, FileResult } from "./events.js";
export { makeFilter } from "./glob.js";
export { listFiles } from "./hub/list-files.js";
export { resolveRevision } from "./hub/resolve-revision.js";
export type { RepoFile } from "./hub/types.js";
export { type LsResult, ls } from "./ls.js";
export { parseRepoArg, type RepoRef, type RepoType } from "./repo.js";
export { selectFiles } from "./select.js";
export { openSession, type Session } from "./session.js";
