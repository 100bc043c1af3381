import { chmod, lstat, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import type { Logger } from "../log.ts";
import { CommandError, type Runner, tail } from "./runner.ts";

/**
 * Fetches exactly one commit of a (hostile) repository into a private work dir. Knows nothing about apps or
 * tenants. Every git call runs with the hardening in `gitConfigArgs` and an env that ignores system/global
 * config, so nothing on this host (templates, hooks, helpers) and nothing in the repository runs code.
 */

export interface GitFetchOptions {
  /** https://…, ssh://…, user@host:path, or file:///abs/path (file only when the GitCli allows it). */
  url: string;
  /** Branch or tag name, or a full 40-hex sha. */
  ref: string;
  /** When set, exactly this commit is checked out, or the fetch fails with "not_found". */
  commit?: string | undefined;
  /** Absolute; must not exist or be empty; created 0700. Removed again when the fetch fails. */
  dest: string;
  timeoutMs: number;
  /** Limit for .git plus the working tree, measured after the fetch. */
  maxBytes: number;
  /** https only (a token); ignored for ssh/file URLs so it is never handed to another transport. */
  credentials?: { username: string; password: string } | undefined;
  submodules?: boolean | undefined;
  lfs?: boolean | undefined;
  signal?: AbortSignal | undefined;
}

export interface GitFetchResult {
  commitSha: string;
  /** Raw, at most MESSAGE_CHARS characters; escaping for Slack is the reporter's job. */
  message: string;
  author: string;
  bytes: number;
}

export interface GitSource {
  fetch(options: GitFetchOptions): Promise<GitFetchResult>;
}

export type GitErrorKind =
  | "not_found"
  | "auth"
  | "too_large"
  | "timeout"
  | "aborted"
  | "invalid_url"
  | "invalid_ref"
  | "failed";

/** Tenant mistakes (not found, auth, too large, bad input) fail at once; network-ish failures may retry. */
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

export const MESSAGE_CHARS = 2_000;
const STDERR_TAIL_BYTES = 2_048;
/** A commit object bigger than this is hostile, not a long message; it is refused before `git log` reads it. */
const MAX_COMMIT_OBJECT_BYTES = 1024 * 1024;
/** History depths tried when the server refuses to serve a bare sha; bounded so a wrong sha cannot pull it all. */
const DEEPEN_STEPS = [10, 100, 1_000] as const;
const SHA_RE = /^[0-9a-f]{40}$/;
/** Same narrowing as refSchema in src/domain/validation.ts: never an option, never a revision expression. */
const REF_RE = /^(?!-)(?!.*\.\.)(?!.*\/\/)(?!.*@\{)[A-Za-z0-9._/-]{1,200}(?<![./])$/;
const HOST_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const SCP_RE = /^([A-Za-z0-9_][A-Za-z0-9._-]*)@([^:/]+):([A-Za-z0-9_.~][A-Za-z0-9_./~-]*)$/;

export type GitProtocol = "https" | "ssh" | "file";

export interface ParsedGitUrl {
  protocol: GitProtocol;
  /** scheme://host[:port] for https: the only place the credential helper is configured for. */
  origin: string | undefined;
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
    return { protocol: "ssh", origin: undefined };
  }
  if (!URL.canParse(url)) throw bad("not a URL");
  const u = new URL(url);
  if (u.password !== "") throw bad("inline credentials are not allowed");
  if (u.protocol === "https:" || u.protocol === "ssh:") {
    if (!HOST_RE.test(u.hostname)) throw bad("invalid host");
    if (u.protocol === "https:") {
      if (u.username !== "") throw bad("inline credentials are not allowed");
      return { protocol: "https", origin: u.origin };
    }
    return { protocol: "ssh", origin: undefined };
  }
  if (u.protocol === "file:") {
    if (!allowFile) throw bad("file:// URLs are disabled");
    if (u.host !== "" || u.username !== "" || !u.pathname.startsWith("/")) throw bad("file URL must be file:///abs");
    return { protocol: "file", origin: undefined };
  }
  throw bad("only https://, ssh://, user@host:path and file:// are allowed");
}

export const CREDENTIAL_ENV = { username: "TUSSILAGO_GIT_USERNAME", password: "TUSSILAGO_GIT_PASSWORD" } as const;

/**
 * Credentials go through a credential helper set with `-c credential.<origin>.helper`, rather than GIT_ASKPASS:
 * git itself only asks the helper for URLs matching that origin, so a redirect or an opted-in submodule on
 * another host never receives the token (an askpass script answers whoever prompts); and there is no script file
 * to write, protect and delete. The helper is a constant snippet reading env vars: the token is only in the env of
 * the git processes that touch the network, never in argv, URLs, logs or files under dest.
 */
const CREDENTIAL_HELPER = `!f() { cat >/dev/null; test "$1" = get || exit 0; printf 'username=%s\\npassword=%s\\n' "$${CREDENTIAL_ENV.username}" "$${CREDENTIAL_ENV.password}"; }; f`;

/** `-c` options put before every git subcommand. */
export function gitConfigArgs(url: ParsedGitUrl, options: { credentials: boolean; lfs: boolean }): string[] {
  const config = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "submodule.recurse=false",
    "advice.detachedHead=false",
    // Only the URL's own transport: a file:// submodule in an https repo would read this host's repositories.
    "protocol.allow=never",
    `protocol.${url.protocol}.allow=always`,
    // Rejects malformed objects (e.g. .gitmodules or paths crafted against git's own CVEs) before checkout.
    "transfer.fsckObjects=true",
    // No background gc/maintenance outliving our timeout inside dest.
    "gc.auto=0",
    "maintenance.auto=false",
    // An empty value resets the helper list, so only ours (if any) is asked.
    "credential.helper=",
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

/** Sum of lstat sizes under dir (symlinks are never followed); stops early once over `limit`. */
export async function measureBytes(dir: string, limit = Number.POSITIVE_INFINITY): Promise<number> {
  let total = 0;
  const stack = [dir];
  while (stack.length > 0) {
    const current = stack.pop() as string;
    for (const entry of await readdir(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      total += (await lstat(path)).size;
      if (total > limit) return total;
      if (entry.isDirectory()) stack.push(path);
    }
  }
  return total;
}

async function prepareDest(dest: string): Promise<void> {
  if (!isAbsolute(dest) || resolve(dest) !== dest) throw new Error(`git dest must be an absolute normalized path`);
  const existing = await lstat(dest).catch(() => undefined);
  if (existing && (!existing.isDirectory() || (await readdir(dest)).length > 0)) {
    throw new Error("git dest must not exist or be an empty directory");
  }
  await mkdir(dest, { recursive: true, mode: 0o700 });
  await chmod(dest, 0o700);
}

export interface GitCliOptions {
  gitPath?: string;
  /** file:// reads any repository this process can read: an operator/test setting, off by default. */
  allowFileUrls?: boolean;
}

interface Session {
  options: GitFetchOptions;
  args: string[];
  env: Record<string, string>;
  networkEnv: Record<string, string>;
  secrets: string[];
  deadline: number;
}

export class GitCli implements GitSource {
  readonly #runner: Runner;
  readonly #log: Logger;
  readonly #gitPath: string;
  readonly #allowFile: boolean;

  constructor(runner: Runner, log: Logger, options: GitCliOptions = {}) {
    this.#runner = runner;
    this.#log = log;
    this.#gitPath = options.gitPath ?? "git";
    this.#allowFile = options.allowFileUrls ?? false;
  }

  async fetch(options: GitFetchOptions): Promise<GitFetchResult> {
    const started = performance.now();
    const url = parseGitUrl(options.url, this.#allowFile);
    if (!REF_RE.test(options.ref)) throw new GitError("invalid_ref", "invalid ref");
    const commit = options.commit ?? (SHA_RE.test(options.ref) ? options.ref : undefined);
    if (commit !== undefined && !SHA_RE.test(commit)) throw new GitError("invalid_ref", "commit must be a 40-hex sha");
    const creds = url.protocol === "https" ? options.credentials : undefined;
    if (creds && /[\n\r\0]/.test(creds.username + creds.password)) {
      // A newline would inject attributes into git's credential protocol (CVE-2020-5260).
      throw new GitError("auth", "credentials contain control characters");
    }

    await prepareDest(options.dest);
    const home = await mkdtemp(join(tmpdir(), "tussilago-git-home-"));
    const env: Record<string, string> = {
      HOME: home,
      XDG_CONFIG_HOME: join(home, ".config"),
      GIT_TERMINAL_PROMPT: "0",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
    };
    if (!options.lfs) env.GIT_LFS_SKIP_SMUDGE = "1";
    const s: Session = {
      options,
      args: gitConfigArgs(url, { credentials: creds !== undefined, lfs: options.lfs === true }),
      env,
      networkEnv: creds
        ? { ...env, [CREDENTIAL_ENV.username]: creds.username, [CREDENTIAL_ENV.password]: creds.password }
        : env,
      secrets: creds ? [creds.password] : [],
      deadline: Date.now() + options.timeoutMs,
    };
    try {
      await this.#git(s, ["init", "-q", "--template="]);
      const target = await this.#fetchTarget(s, commit);
      await this.#git(s, ["checkout", "-q", "--detach", target, "--"]);
      if (options.submodules) {
        await this.#git(s, ["submodule", "update", "--init", "--recursive", "--depth=1"], true);
      }
      const head = (await this.#git(s, ["rev-parse", "--verify", "HEAD^{commit}"])).trim();
      if (commit !== undefined && head !== commit) throw new GitError("failed", "checked-out commit differs");
      const meta = await this.#readMeta(s);
      const bytes = await measureBytes(options.dest, options.maxBytes);
      if (bytes > options.maxBytes) throw new GitError("too_large", `repository exceeds ${options.maxBytes} bytes`);
      this.#log.info(
        {
          url: options.url,
          ref: options.ref,
          commit: head,
          bytes,
          durationMs: Math.round(performance.now() - started),
        },
        "git fetched",
      );
      return { commitSha: head, ...meta, bytes };
    } catch (err) {
      await rm(options.dest, { recursive: true, force: true });
      throw err;
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  }

  /** Returns what to check out: the commit when one is pinned, else FETCH_HEAD. */
  async #fetchTarget(s: Session, commit: string | undefined): Promise<string> {
    const { url, ref } = s.options;
    const fetch = (what: string, depth: number) =>
      this.#git(s, ["fetch", `--depth=${depth}`, "--no-tags", "--no-recurse-submodules", "--", url, what], true);
    if (commit === undefined) {
      await fetch(ref, 1);
      return "FETCH_HEAD";
    }
    try {
      // GitHub serves any reachable sha (uploadpack.allowReachableSHA1InWant); protocol v2 servers do too.
      await fetch(commit, 1);
      return commit;
    } catch (err) {
      if (!(err instanceof GitError) || err.kind !== "not_found" || ref === commit) throw err;
    }
    // The server refused a bare sha: walk the ref's history, bounded, until the commit shows up.
    for (const depth of [1, ...DEEPEN_STEPS]) {
      await fetch(ref, depth);
      if (await this.#succeeds(s, ["cat-file", "-e", `${commit}^{commit}`])) return commit;
      if ((await this.#git(s, ["rev-parse", "--is-shallow-repository"])).trim() !== "true") break;
    }
    throw new GitError("not_found", `commit not found in the last ${DEEPEN_STEPS.at(-1)} commits of the ref`);
  }

  async #readMeta(s: Session): Promise<{ message: string; author: string }> {
    const size = Number((await this.#git(s, ["cat-file", "-s", "HEAD"])).trim());
    if (!(size <= MAX_COMMIT_OBJECT_BYTES)) throw new GitError("too_large", "commit object is too large");
    const out = await this.#git(s, ["log", "-1", "--no-color", "--format=%H%x00%an%x00%B", "HEAD", "--"]);
    const [, author = "", message = ""] = out.split("\0");
    return { author, message: Array.from(message.replace(/\n+$/, "")).slice(0, MESSAGE_CHARS).join("") };
  }

  /** Runs git in dest and returns stdout; `network` calls alone get the credentials in their env. */
  async #git(s: Session, args: string[], network = false): Promise<string> {
    if (s.options.signal?.aborted) throw new GitError("aborted", "aborted");
    const timeoutMs = s.deadline - Date.now();
    if (timeoutMs <= 0) throw new GitError("timeout", "timed out");
    try {
      const result = await this.#runner.run(this.#gitPath, [...s.args, ...args], {
        cwd: s.options.dest,
        env: network ? s.networkEnv : s.env,
        timeoutMs,
        signal: s.options.signal,
        maxOutputBytes: 4 * MAX_COMMIT_OBJECT_BYTES,
      });
      return result.stdout;
    } catch (err) {
      throw err instanceof CommandError ? classify(err, s.secrets) : err;
    }
  }

  /** For yes/no questions answered by the exit code (`cat-file -e`). */
  async #succeeds(s: Session, args: string[]): Promise<boolean> {
    try {
      await this.#git(s, args);
      return true;
    } catch (err) {
      if (err instanceof GitError && (err.kind === "not_found" || err.kind === "failed")) return false;
      throw err;
    }
  }
}
