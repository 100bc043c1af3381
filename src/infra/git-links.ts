import { GitError, type ParsedGitUrl, parseGitUrl } from "./git-url.ts";

/**
 * What a repository may point git at besides itself: submodules (`.gitmodules`) and an LFS server (`.lfsconfig`).
 * Both are tenant text. They are read from the fetched commit's blobs (never the work tree) and must stay on the
 * app's own host and transport: otherwise the fetch would reach a server the tenant chose, from this host, with
 * this host's network position. Pure functions; GitCli runs git to get the text.
 */

/** `git config -z --list` output → [key, value] pairs (keys as git prints them: section and name lower-cased). */
export function parseConfigList(out: string): Array<[string, string]> {
  return out
    .split("\0")
    .filter((entry) => entry !== "")
    .map((entry) => {
      const i = entry.indexOf("\n");
      return i < 0 ? [entry, ""] : [entry.slice(0, i), entry.slice(i + 1)];
    });
}

export interface Submodule {
  name: string;
  path: string;
  url: string;
}

/** Submodule names and paths end up in git config keys and as directories: a narrow charset, no "..". */
const SUBMODULE_RE = /^(?!.*\.\.)(?!\/)(?!-)[A-Za-z0-9._/-]{1,200}$/;

export function submodulesOf(pairs: ReadonlyArray<[string, string]>): Submodule[] {
  const byName = new Map<string, Partial<Submodule>>();
  for (const [key, value] of pairs) {
    const m = /^submodule\.(.+)\.(url|path)$/.exec(key);
    if (!m?.[1] || !m[2]) continue;
    const entry = byName.get(m[1]) ?? {};
    entry[m[2] as "url" | "path"] = value;
    byName.set(m[1], entry);
  }
  const out: Submodule[] = [];
  for (const [name, entry] of byName) {
    if (!SUBMODULE_RE.test(name)) throw refused("a submodule name has characters outside [A-Za-z0-9._/-]");
    if (entry.path === undefined || !SUBMODULE_RE.test(entry.path))
      throw refused(`submodule ${name} has an invalid path`);
    if (entry.url === undefined) throw refused(`submodule ${name} has no url`);
    out.push({ name, path: entry.path, url: entry.url });
  }
  return out;
}

export function refused(detail: string): GitError {
  return new GitError("refused", detail);
}

/**
 * Relative submodule URLs (`../lib.git`) resolve against the superproject's URL, as git resolves them against
 * `remote.origin.url` (our fetch has no remote, so git would otherwise take them relative to the work dir).
 */
export function resolveLinkedUrl(raw: string, superUrl: string): string {
  if (!raw.startsWith("./") && !raw.startsWith("../")) return raw;
  // git@host:path has no URL semantics to resolve against.
  if (!superUrl.includes("://")) throw refused("relative submodule URLs need an https:// or ssh:// app URL");
  return new URL(raw, superUrl.endsWith("/") ? superUrl : `${superUrl}/`).href;
}

/** The linked URL must be valid, of the same transport and on the same host (port included) as the app's own. */
export function checkLinkedUrl(what: string, url: string, superParsed: ParsedGitUrl, allowFile: boolean): ParsedGitUrl {
  let parsed: ParsedGitUrl;
  try {
    parsed = parseGitUrl(url, allowFile);
  } catch {
    throw refused(`${what} has a URL that is not allowed (https://, ssh:// or git@host:path on the app's own host)`);
  }
  if (parsed.protocol !== superParsed.protocol || parsed.host !== superParsed.host) {
    const where = superParsed.host === "" ? "the app's repository" : superParsed.host;
    throw refused(`${what} points at another host or transport; it must be on ${where} over ${superParsed.protocol}`);
  }
  return parsed;
}

/** Keys of `.lfsconfig` that name a server (lfs.url, lfs.pushurl, remote.<name>.lfsurl, url.<base>.insteadof …). */
export function lfsServerUrls(pairs: ReadonlyArray<[string, string]>): Array<[string, string]> {
  return pairs.filter(([key]) => /url$/i.test(key) || /^url\./i.test(key));
}

/** The LFS endpoint git-lfs derives from an https clone URL (…/repo.git/info/lfs); pinned so .lfsconfig cannot move it. */
export function lfsEndpoint(url: string): string {
  const trimmed = url.replace(/\/+$/, "");
  return `${trimmed.endsWith(".git") ? trimmed : `${trimmed}.git`}/info/lfs`;
}
