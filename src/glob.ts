import picomatch from "picomatch";

/**
 * huggingface_hub filters with Python's fnmatch: `*` also crosses `/`, `[!x]` negates a class,
 * no braces, no extglobs, and a leading `!` is a literal. picomatch reproduces that with `bash`
 * (single star acts as globstar), `posix` (`[!x]` classes) and the other syntax turned off.
 * Known difference: fnmatch's `?` also matches `/`, picomatch's does not.
 */
const OPTIONS: picomatch.PicomatchOptions = {
  bash: true,
  posix: true,
  dot: true,
  nobrace: true,
  noextglob: true,
  nonegate: true,
};

export type PathFilter = (path: string) => boolean;

/** A pattern ending in `/` means everything under that folder, as in huggingface_hub. */
function normalize(pattern: string): string {
  return pattern.endsWith("/") ? `${pattern}*` : pattern;
}

export function makeFilter(include: readonly string[], exclude: readonly string[]): PathFilter {
  const inc = include.length > 0 ? picomatch(include.map(normalize), OPTIONS) : undefined;
  const exc = exclude.length > 0 ? picomatch(exclude.map(normalize), OPTIONS) : undefined;
  return (path) => (inc === undefined || inc(path)) && (exc === undefined || !exc(path));
}
