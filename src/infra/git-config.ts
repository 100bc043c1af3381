import { lfsEndpoint } from "./git-links.ts";
import { GitError, type ParsedGitUrl } from "./git-url.ts";
import { type CommandError, tail } from "./runner.ts";

/** The `-c` hardening every git call gets, the credential helper, and the mapping of git's failures. */

const STDERR_TAIL_BYTES = 2_048;

export const CREDENTIAL_ENV = {
  username: "TUSSILAGO_GIT_USERNAME",
  password: "TUSSILAGO_GIT_PASSWORD",
  /** The only host[:port], repository path and LFS endpoint path the helper answers for. */
  host: "TUSSILAGO_GIT_HOST",
  path: "TUSSILAGO_GIT_PATH",
  lfsPath: "TUSSILAGO_GIT_LFS_PATH",
} as const;

/**
 * Credentials go through a credential helper rather than GIT_ASKPASS: git asks a helper with the URL it is about to
 * use (`credential.useHttpPath=true` adds the repository path), so the helper can answer for exactly the app's
 * repository, https, host and path, and for nothing else: a redirect, a submodule or an LFS server elsewhere
 * (another repository on the same host included, e.g. another tenant's under the same GitHub App installation)
 * gets no token. An askpass script answers whoever prompts. The helper is a constant snippet reading env vars
 * (quoted `case` patterns compare literally): the token and the expected host/path are only in the env of the git
 * processes that touch the network, never in argv, URLs, logs or files under dest.
 */
const E = CREDENTIAL_ENV;
const CREDENTIAL_HELPER =
  `!f() { test "$1" = get || { cat >/dev/null; exit 0; }; p=; h=; r=; ` +
  `while IFS= read -r l; do case "$l" in "") break ;; protocol=https) p=1 ;; "host=$${E.host}") h=1 ;; ` +
  `"path=$${E.path}"|"path=$${E.lfsPath}") r=1 ;; esac; done; ` +
  `test -n "$p" && test -n "$h" && test -n "$r" || exit 0; ` +
  `printf 'username=%s\npassword=%s\n' "$${E.username}" "$${E.password}"; }; f`;

/** The env that lets the helper answer: only for the network calls of one fetch. */
export function credentialEnv(
  url: ParsedGitUrl,
  creds: { username: string; password: string },
): Record<string, string> {
  return {
    [E.username]: creds.username,
    [E.password]: creds.password,
    [E.host]: url.host,
    [E.path]: url.path,
    [E.lfsPath]: new URL(lfsEndpoint(`${url.origin}/${url.path}`)).pathname.replace(/^\/+/, ""),
  };
}

/** `-c` options put before every git subcommand. */
export function gitConfigArgs(
  url: ParsedGitUrl,
  options: { credentials: boolean; lfs: boolean; rawUrl?: string | undefined },
): string[] {
  const config = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "advice.detachedHead=false",
    // Only the URL's own transport: a file:// submodule in an https repo would read this host's repositories.
    "protocol.allow=never",
    `protocol.${url.protocol}.allow=always`,
    // Rejects malformed objects (e.g. .gitmodules or paths crafted against git's own CVEs) before checkout.
    "transfer.fsckObjects=true",
    // No background gc/maintenance outliving our timeout inside dest.
    "gc.auto=0",
    "maintenance.auto=false",
    // An empty value resets the helper list, so only ours (if any) is asked; with the path, so it can be exact.
    "credential.helper=",
    "credential.useHttpPath=true",
  ];
  if (url.protocol === "ssh") config.push("core.sshCommand=ssh -o BatchMode=yes");
  if (options.credentials && url.origin !== undefined)
    config.push(`credential.${url.origin}.helper=${CREDENTIAL_HELPER}`);
  if (options.lfs) {
    config.push(
      "filter.lfs.process=git-lfs filter-process",
      "filter.lfs.smudge=git-lfs smudge -- %f",
      "filter.lfs.clean=git-lfs clean -- %f",
      "filter.lfs.required=true",
    );
    // git config beats .lfsconfig for git-lfs: the endpoint stays the app's own repository's.
    if (url.protocol === "https" && options.rawUrl !== undefined) config.push(`lfs.url=${lfsEndpoint(options.rawUrl)}`);
  }
  return config.flatMap((c) => ["-c", c]);
}

/** Removes URL userinfo and the given secrets from git's output before it is kept or logged. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/@\s'"]*@/g, "$1[redacted]@");
  for (const s of secrets) if (s.length > 0) out = out.split(s).join("[redacted]");
  return out;
}

const NOT_FOUND_RE =
  /not found|does not appear to be a git repository|couldn't find remote ref|not our ref|unadvertised object|no such remote ref|not a valid object name/i;
const AUTH_RE =
  /authentication failed|could not read (username|password)|terminal prompts disabled|permission denied|host key verification failed|returned error: 40[13]|invalid credentials/i;

export function classify(err: CommandError, secrets: readonly string[]): GitError {
  const stderr = tail(redact(err.stderrTail, secrets), STDERR_TAIL_BYTES);
  if (err.kind === "timeout") return new GitError("timeout", "timed out", stderr);
  if (err.kind === "aborted") return new GitError("aborted", "aborted", stderr);
  if (err.kind === "spawn") return new GitError("failed", "git could not be started", stderr);
  if (err.kind === "output_limit") return new GitError("too_large", "git printed more output than allowed", stderr);
  if (AUTH_RE.test(stderr)) return new GitError("auth", "authentication failed", stderr);
  if (NOT_FOUND_RE.test(stderr)) return new GitError("not_found", "repository, ref or commit not found", stderr);
  return new GitError("failed", `exited with code ${err.exitCode}`, stderr);
}
