/**
 * Git URLs and git's typed error: the validation every URL passes before it becomes a git argument, and what the
 * credential helper and the submodule/LFS checks (git-links.ts) compare against.
 */

export type GitErrorKind =
  | "not_found"
  | "auth"
  | "too_large"
  | "timeout"
  | "aborted"
  | "invalid_url"
  | "invalid_ref"
  | "refused"
  | "failed";

/**
 * Tenant mistakes (not found, auth, too large, bad input, a submodule or LFS server elsewhere: "refused") fail at
 * once; network-ish failures may retry.
 */
const RETRYABLE: ReadonlySet<GitErrorKind> = new Set(["timeout", "failed"]);

export class GitError extends Error {
  readonly kind: GitErrorKind;
  readonly retryable: boolean;
  /** Bounded, with credentials and URL userinfo removed. */
  readonly stderrTail: string;
  constructor(kind: GitErrorKind, detail: string, stderrTail = "") {
    super(`git: ${detail} (${kind})`);
    this.name = "GitError";
    this.kind = kind;
    this.retryable = RETRYABLE.has(kind);
    this.stderrTail = stderrTail;
  }
}

const HOST_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const SCP_RE = /^([A-Za-z0-9_][A-Za-z0-9._-]*)@([^:/]+):([A-Za-z0-9_.~][A-Za-z0-9_./~-]*)$/;

export type GitProtocol = "https" | "ssh" | "file";

export interface ParsedGitUrl {
  protocol: GitProtocol;
  /** scheme://host[:port] for https: the only place the credential helper is configured for. */
  origin: string | undefined;
  /** host[:port] as git's credential protocol names it ("" for file://). */
  host: string;
  /** https: the repository path as git's credential protocol sends it with useHttpPath (no leading "/"). */
  path: string;
}

/** Re-checks the caller's validation: the URL ends up as a git argument, so it must not be able to be anything else. */
export function parseGitUrl(url: string, allowFile: boolean): ParsedGitUrl {
  const bad = (why: string) => new GitError("invalid_url", why);
  // Printable ASCII only: no whitespace, control characters or lookalikes; no leading "-" (read as an option).
  if (!/^[\x21-\x7e]{1,500}$/.test(url)) throw bad("URL has whitespace or non-printable characters");
  if (url.startsWith("-")) throw bad("URL starts with '-'");
  // `<transport>::<address>` runs a remote helper (ext:: runs an arbitrary command).
  if (/^[A-Za-z0-9+.-]*::/.test(url)) throw bad("remote-helper transports are not allowed");
  const scp = SCP_RE.exec(url);
  if (scp) {
    if (!HOST_RE.test(scp[2] ?? "")) throw bad("invalid host");
    return { protocol: "ssh", origin: undefined, host: (scp[2] ?? "").toLowerCase(), path: "" };
  }
  if (!URL.canParse(url)) throw bad("not a URL");
  const u = new URL(url);
  if (u.password !== "") throw bad("inline credentials are not allowed");
  if (u.protocol === "https:" || u.protocol === "ssh:") {
    if (!HOST_RE.test(u.hostname)) throw bad("invalid host");
    if (u.protocol === "https:") {
      if (u.username !== "") throw bad("inline credentials are not allowed");
      let path: string;
      try {
        path = decodeURIComponent(u.pathname).replace(/^\/+/, "");
      } catch {
        throw bad("invalid percent-encoding in the path");
      }
      return { protocol: "https", origin: u.origin, host: u.host, path };
    }
    return { protocol: "ssh", origin: undefined, host: u.host, path: "" };
  }
  if (u.protocol === "file:") {
    if (!allowFile) throw bad("file:// URLs are disabled");
    if (u.host !== "" || u.username !== "" || !u.pathname.startsWith("/")) throw bad("file URL must be file:///abs");
    return { protocol: "file", origin: undefined, host: "", path: "" };
  }
  throw bad("only https://, ssh://, user@host:path and file:// are allowed");
}
