import { chmod, lstat, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import type { Logger } from "../log.ts";
import { measureBytes, watchDiskUsage } from "./disk-usage.ts";
import { classify, credentialEnv, gitConfigArgs } from "./git-config.ts";
import {
  checkLinkedUrl,
  lfsServerUrls,
  parseConfigList,
  refused,
  resolveLinkedUrl,
  submodulesOf,
} from "./git-links.ts";
import { GitError, type ParsedGitUrl, parseGitUrl } from "./git-url.ts";
import { CommandError, type Runner } from "./runner.ts";

// Importers name these through the adapter module, as before the split.
export { measureBytes } from "./disk-usage.ts";
export { CREDENTIAL_ENV, classify, credentialEnv, gitConfigArgs, redact } from "./git-config.ts";
export { GitError, type GitErrorKind, type GitProtocol, type ParsedGitUrl, parseGitUrl } from "./git-url.ts";

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

export const MESSAGE_CHARS = 2_000;
/** A commit object bigger than this is hostile, not a long message; it is refused before `git log` reads it. */
const MAX_COMMIT_OBJECT_BYTES = 1024 * 1024;
/** History depths tried when the server refuses to serve a bare sha; bounded so a wrong sha cannot pull it all. */
const DEEPEN_STEPS = [10, 100, 1_000] as const;
const SHA_RE = /^[0-9a-f]{40}$/;
/** Same narrowing as refSchema in src/domain/validation.ts: never an option, never a revision expression. */
const REF_RE = /^(?!-)(?!.*\.\.)(?!.*\/\/)(?!.*@\{)[A-Za-z0-9._/-]{1,200}(?<![./])$/;
/** Nesting of submodules followed (each level's URLs are checked before it is fetched). */
const MAX_SUBMODULE_DEPTH = 3;
/** How often the size of dest is measured while git writes into it. */
const WATCH_INTERVAL_MS = 500;

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
  /** Extra CA bundle (PEM) for https git servers with a private CA; the system store otherwise. */
  caFile?: string | undefined;
  /** How often dest is measured while git writes into it (default 500 ms). */
  watchIntervalMs?: number | undefined;
}

interface Session {
  options: GitFetchOptions;
  url: ParsedGitUrl;
  args: string[];
  env: Record<string, string>;
  networkEnv: Record<string, string>;
  secrets: string[];
  deadline: number;
  /** The caller's signal, or the size watchdog's abort. */
  signal: AbortSignal;
  /** Set once dest passed maxBytes: the running git was killed for it. */
  overSize: () => boolean;
}

interface GitCall {
  /** Network calls alone get the credentials in their env. */
  network?: boolean;
  /** Calls that write into dest (fetch, checkout, submodules): dest is measured right after. */
  writes?: boolean;
  cwd?: string | undefined;
}

export class GitCli implements GitSource {
  readonly #runner: Runner;
  readonly #log: Logger;
  readonly #gitPath: string;
  readonly #allowFile: boolean;
  readonly #caFile: string | undefined;
  readonly #watchIntervalMs: number;

  constructor(runner: Runner, log: Logger, options: GitCliOptions = {}) {
    this.#runner = runner;
    this.#log = log;
    this.#gitPath = options.gitPath ?? "git";
    this.#allowFile = options.allowFileUrls ?? false;
    this.#caFile = options.caFile;
    this.#watchIntervalMs = options.watchIntervalMs ?? WATCH_INTERVAL_MS;
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
      // Belt and braces with protocol.allow: also binds git-lfs and any helper git starts.
      GIT_ALLOW_PROTOCOL: url.protocol,
    };
    if (!options.lfs) env.GIT_LFS_SKIP_SMUDGE = "1";
    // The size limit holds *during* the fetch: a watchdog kills git once dest passes maxBytes (a small pack can
    // inflate to gigabytes), instead of finding out after the disk is full.
    const limit = new AbortController();
    const watch = watchDiskUsage([options.dest], options.maxBytes, this.#watchIntervalMs, () =>
      limit.abort(new GitError("too_large", `repository exceeds ${options.maxBytes} bytes`)),
    );
    const s: Session = {
      options,
      url,
      args: [
        ...gitConfigArgs(url, { credentials: creds !== undefined, lfs: options.lfs === true, rawUrl: options.url }),
        ...(this.#caFile !== undefined ? ["-c", `http.sslCAInfo=${this.#caFile}`] : []),
      ],
      env,
      networkEnv: creds ? { ...env, ...credentialEnv(url, creds) } : env,
      secrets: creds ? [creds.password] : [],
      deadline: Date.now() + options.timeoutMs,
      signal: options.signal ? AbortSignal.any([options.signal, limit.signal]) : limit.signal,
      overSize: () => watch.exceeded,
    };
    try {
      await this.#git(s, ["init", "-q", "--template="]);
      const target = await this.#fetchTarget(s, commit);
      // Where the commit would send git next is checked from its blobs, before checkout can act on it.
      if (options.lfs) await this.#checkLfsConfig(s, target);
      const submodules = options.submodules ? await this.#submoduleUrls(s, options.dest, target, options.url, url) : [];
      await this.#git(s, ["checkout", "-q", "--detach", target, "--"], { writes: true });
      if (submodules.length > 0) await this.#updateSubmodules(s, options.dest, submodules, 1);
      const head = (await this.#git(s, ["rev-parse", "--verify", "HEAD^{commit}"])).trim();
      if (commit !== undefined && head !== commit) throw new GitError("failed", "checked-out commit differs");
      const meta = await this.#readMeta(s);
      const bytes = await this.#checkSize(s);
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
      watch.stop();
      await rm(home, { recursive: true, force: true });
    }
  }

  /** Returns what to check out: the commit when one is pinned, else FETCH_HEAD. */
  async #fetchTarget(s: Session, commit: string | undefined): Promise<string> {
    const { url, ref } = s.options;
    const fetch = (what: string, depth: number) =>
      this.#git(s, ["fetch", `--depth=${depth}`, "--no-tags", "--no-recurse-submodules", "--", url, what], {
        network: true,
        writes: true,
      });
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

  /** A config file of the commit (`.gitmodules`, `.lfsconfig`) read from its blob, never from the work tree. */
  async #blobConfig(s: Session, cwd: string, rev: string, file: string): Promise<Array<[string, string]>> {
    if (!(await this.#succeeds(s, ["cat-file", "-e", `${rev}:${file}`], cwd))) return [];
    try {
      return parseConfigList(await this.#git(s, ["config", "-z", "--blob", `${rev}:${file}`, "--list"], { cwd }));
    } catch (err) {
      if (err instanceof GitError && err.kind === "failed") throw refused(`${file} could not be parsed`);
      throw err;
    }
  }

  async #checkLfsConfig(s: Session, rev: string): Promise<void> {
    for (const [key, value] of lfsServerUrls(await this.#blobConfig(s, s.options.dest, rev, ".lfsconfig"))) {
      if (key.startsWith("url.")) throw refused(".lfsconfig may not rewrite URLs (url.*)");
      checkLinkedUrl(`.lfsconfig ${key}`, value, s.url, this.#allowFile);
    }
  }

  /** The submodules of `rev` in `cwd`, each URL resolved and checked against the app's own host and transport. */
  async #submoduleUrls(s: Session, cwd: string, rev: string, superUrl: string, superParsed: ParsedGitUrl) {
    const found = submodulesOf(await this.#blobConfig(s, cwd, rev, ".gitmodules"));
    return found.map((m) => {
      const url = resolveLinkedUrl(m.url, superUrl);
      checkLinkedUrl(`submodule ${m.name}`, url, superParsed, this.#allowFile);
      return { ...m, url };
    });
  }

  /**
   * One level at a time, never `--recursive`: each level's URLs are pinned in its .git/config (so `--init` cannot
   * take them from .gitmodules) only after they passed the check, then its own submodules are checked the same way.
   */
  async #updateSubmodules(
    s: Session,
    cwd: string,
    submodules: Array<{ name: string; path: string; url: string }>,
    depth: number,
  ): Promise<void> {
    if (depth > MAX_SUBMODULE_DEPTH) throw refused(`submodules nested deeper than ${MAX_SUBMODULE_DEPTH} levels`);
    for (const m of submodules) await this.#git(s, ["config", `submodule.${m.name}.url`, m.url], { cwd });
    await this.#git(s, ["submodule", "update", "--init", "--depth=1", "--"], { cwd, network: true, writes: true });
    for (const m of submodules) {
      const dir = join(cwd, m.path);
      const nested = await this.#submoduleUrls(s, dir, "HEAD", m.url, parseGitUrl(m.url, this.#allowFile));
      if (nested.length > 0) await this.#updateSubmodules(s, dir, nested, depth + 1);
    }
  }

  async #checkSize(s: Session): Promise<number> {
    const bytes = await measureBytes(s.options.dest, s.options.maxBytes);
    if (bytes > s.options.maxBytes) throw new GitError("too_large", `repository exceeds ${s.options.maxBytes} bytes`);
    return bytes;
  }

  async #readMeta(s: Session): Promise<{ message: string; author: string }> {
    const size = Number((await this.#git(s, ["cat-file", "-s", "HEAD"])).trim());
    if (!(size <= MAX_COMMIT_OBJECT_BYTES)) throw new GitError("too_large", "commit object is too large");
    const out = await this.#git(s, ["log", "-1", "--no-color", "--format=%H%x00%an%x00%B", "HEAD", "--"]);
    const [, author = "", message = ""] = out.split("\0");
    return { author, message: Array.from(message.replace(/\n+$/, "")).slice(0, MESSAGE_CHARS).join("") };
  }

  /** Runs git (in dest unless told otherwise) and returns stdout. */
  async #git(s: Session, args: string[], call: GitCall = {}): Promise<string> {
    const tooLarge = () => new GitError("too_large", `repository exceeds ${s.options.maxBytes} bytes`);
    if (s.overSize()) throw tooLarge();
    if (s.signal.aborted) throw new GitError("aborted", "aborted");
    const timeoutMs = s.deadline - Date.now();
    if (timeoutMs <= 0) throw new GitError("timeout", "timed out");
    let stdout: string;
    try {
      const result = await this.#runner.run(this.#gitPath, [...s.args, ...args], {
        cwd: call.cwd ?? s.options.dest,
        env: call.network ? s.networkEnv : s.env,
        timeoutMs,
        signal: s.signal,
        maxOutputBytes: 4 * MAX_COMMIT_OBJECT_BYTES,
      });
      stdout = result.stdout;
    } catch (err) {
      // Killed by the size watchdog: that is the reason, not "aborted".
      if (s.overSize()) throw tooLarge();
      throw err instanceof CommandError ? classify(err, s.secrets) : err;
    }
    if (call.writes) await this.#checkSize(s);
    return stdout;
  }

  /** For yes/no questions answered by the exit code (`cat-file -e`). */
  async #succeeds(s: Session, args: string[], cwd?: string): Promise<boolean> {
    try {
      await this.#git(s, args, { cwd });
      return true;
    } catch (err) {
      if (err instanceof GitError && (err.kind === "not_found" || err.kind === "failed")) return false;
      throw err;
    }
  }
}
