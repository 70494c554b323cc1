import { HfgetError } from "../errors.js";

const MAX_PATH_BYTES = 4096;
const MAX_SEGMENT_BYTES = 255;

/**
 * Checks a path from a listing before anything uses it to build a file name. A hostile or broken
 * server must not be able to make hfget write outside the target directory.
 */
export function checkRepoPath(path: string): string {
  const refuse = (why: string): never => {
    throw new HfgetError(
      "PROTOCOL",
      `the server listed an unsafe file path ${JSON.stringify(path.slice(0, 200))}: ${why}`,
      {
        hint: "the endpoint sent a listing no hub would; check --mirror / HF_ENDPOINT",
      },
    );
  };
  if (path === "") refuse("empty");
  if (path.includes("\0")) refuse("contains NUL");
  if (path.includes("\\")) refuse("contains a backslash");
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0001-\u001f\u007f]/.test(path)) refuse("contains control characters");
  if (path.startsWith("/")) refuse("absolute path");
  if (/^[A-Za-z]:/.test(path)) refuse("drive-letter path");
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) refuse("too long");
  for (const seg of path.split("/")) {
    if (seg === "") refuse("empty path segment");
    if (seg === "." || seg === "..") refuse(`"${seg}" segment`);
    if (Buffer.byteLength(seg) > MAX_SEGMENT_BYTES) refuse("a path segment is longer than 255 bytes");
  }
  return path;
}
