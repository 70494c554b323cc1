import { HfgetError } from "../errors.js";

const MAX_PATH_BYTES = 4096;
const MAX_SEGMENT_BYTES = 255;

/** Why a repo path (or ref name) is unsafe to build a file name from, or undefined when it is fine. */
export function pathProblem(path: string): string | undefined {
  if (path === "") return "empty";
  if (path.includes("\0")) return "contains NUL";
  if (path.includes("\\")) return "contains a backslash";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0001-\u001f\u007f]/.test(path)) return "contains control characters";
  if (path.startsWith("/")) return "absolute path";
  if (/^[A-Za-z]:/.test(path)) return "drive-letter path";
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return "too long";
  for (const seg of path.split("/")) {
    if (seg === "") return "empty path segment";
    if (seg === "." || seg === "..") return `"${seg}" segment`;
    if (Buffer.byteLength(seg) > MAX_SEGMENT_BYTES) return "a path segment is longer than 255 bytes";
  }
  return undefined;
}

/**
 * Checks a path from a listing before anything uses it to build a file name. A hostile or broken
 * server must not be able to make hfget write outside the target directory.
 */
export function checkRepoPath(path: string): string {
  const why = pathProblem(path);
  if (why !== undefined) {
    throw new HfgetError(
      "PROTOCOL",
      `the server listed an unsafe file path ${JSON.stringify(path.slice(0, 200))}: ${why}`,
      {
        hint: "the endpoint sent a listing no hub would; check --mirror / HF_ENDPOINT",
      },
    );
  }
  return path;
}
