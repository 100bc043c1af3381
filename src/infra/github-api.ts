import { createPrivateKey, type KeyObject, sign } from "node:crypto";
import { type Dispatcher, request } from "undici";
import type { GithubAuthConfig } from "../config.ts";
import { type BackoffOptions, cappedExponentialDelay } from "../lib/backoff.ts";
import type { Logger } from "../log.ts";

/** What reporters and the source stage need from GitHub; `FakeGithub` (test/helpers/fake-github.ts) is the test double. */
export interface GithubApi {
  createCommitStatus(owner: string, repo: string, sha: string, status: CommitStatusInput): Promise<void>;
  createDeployment(owner: string, repo: string, input: DeploymentInput): Promise<{ id: string }>;
  createDeploymentStatus(
    owner: string,
    repo: string,
    deploymentId: string,
    status: DeploymentStatusInput,
  ): Promise<void>;
  /**
   * What `ref` (`heads/main`, `tags/v1`) points to now, or undefined when the ref does not exist. GitHub answers a
   * prefix match with a list (`heads/ma` → `heads/main`, …): only an exact match counts.
   */
  refHead(owner: string, repo: string, ref: string): Promise<string | undefined>;
  /** The id GitHub gives `owner/name` now, or undefined when the bot's credentials cannot see it (404). */
  repositoryId(owner: string, repo: string): Promise<number | undefined>;
  /**
   * Whether `path` on the default branch is a file of at most 4 KiB that holds `line` as one of its lines (ignoring
   * surrounding blanks). A yes/no only: the content is never returned, logged or put in an error.
   */
  fileHasLine(owner: string, repo: string, path: string, line: string): Promise<boolean>;
  /**
   * GitHub App mode: the id of the App's installation that covers `owner/name` (asked with the App's JWT), or
   * undefined when none does. Token mode: always undefined.
   */
  appInstallationId(owner: string, repo: string): Promise<number | undefined>;
  /** HTTPS git credentials for `owner/name`: a token readable by the git credential helper, never argv. */
  gitCredentials(owner: string, repo: string): Promise<GitCredentials>;
  /** The git host that matches the API (github.com for api.github.com; the GHE host otherwise). */
  readonly gitHost: string;
}

export interface GitCredentials {
  username: string;
  password: string;
}

export interface CommitStatusInput {
  state: "error" | "failure" | "pending" | "success";
  target_url?: string;
  description?: string;
  context: string;
}

export interface DeploymentInput {
  ref: string;
  environment: string;
  auto_merge: false;
  required_contexts: string[];
  description?: string;
  transient_environment?: boolean;
  production_environment?: boolean;
}

export interface DeploymentStatusInput {
  state: "error" | "failure" | "inactive" | "in_progress" | "queued" | "pending" | "success";
  environment_url?: string;
  log_url?: string;
  description?: string;
}

export class GithubApiError extends Error {
  /** HTTP status, or undefined for a network failure. */
  readonly status: number | undefined;
  readonly retryable: boolean;
  constructor(message: string, status: number | undefined, retryable: boolean) {
    super(message);
    this.name = "GithubApiError";
    this.status = status;
    this.retryable = retryable;
  }
}

export interface GithubClientOptions {
  apiUrl: string;
  auth: GithubAuthConfig;
  log: Logger;
  /** Tests pass a MockAgent; production uses undici's global dispatcher. */
  dispatcher?: Dispatcher;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
  /** Total tries per call, first included. */
  maxAttempts?: number;
  backoff?: BackoffOptions;
  /** Longest wait we accept from Retry-After / x-ratelimit-reset; longer limits fail this call (bounded). */
  maxRateLimitWaitMs?: number;
  timeoutMs?: number;
}

const NAME = /^[A-Za-z0-9_.-]{1,100}$/;
const SHA = /^[0-9a-f]{40}$/;
const REF = /^(heads|tags)\/[A-Za-z0-9._/-]{1,250}$/;
const CONTENT_PATH = /^[A-Za-z0-9._-]{1,100}(\/[A-Za-z0-9._-]{1,100}){0,4}$/;
/** A proof file is one short line; anything larger is not one. */
const PROOF_FILE_MAX = 4096;
// GitHub rejects longer descriptions with 422 (commit statuses and deployment statuses alike).
export const DESCRIPTION_MAX = 140;
const TOKEN_MARGIN_MS = 60_000;

export function truncateDescription(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length <= DESCRIPTION_MAX ? flat : `${flat.slice(0, DESCRIPTION_MAX - 1)}…`;
}

/** RS256 JWT for a GitHub App itself; GitHub allows at most 10 minutes and recommends backdating iat for skew. */
export function githubAppJwt(appId: string, key: KeyObject | string, nowMs: number): string {
  const nowS = Math.floor(nowMs / 1000);
  const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const unsigned = `${enc({ alg: "RS256", typ: "JWT" })}.${enc({ iat: nowS - 60, exp: nowS + 540, iss: appId })}`;
  const signingKey = typeof key === "string" ? createPrivateKey(key) : key;
  return `${unsigned}.${sign("sha256", Buffer.from(unsigned), signingKey).toString("base64url")}`;
}

/** api.github.com → github.com; GHE (`https://ghe.example/api/v3`) → ghe.example; `api.x.ghe.com` → x.ghe.com. */
export function gitHostFor(apiUrl: string): string {
  const host = new URL(apiUrl).host;
  return host.startsWith("api.") ? host.slice(4) : host;
}

const sleepMs = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * GitHub REST over undici. Retries 5xx, network errors and rate limits (403/429) with capped, jittered backoff,
 * honouring Retry-After / x-ratelimit-reset up to a cap; any other 4xx fails at once. Tokens live only in the
 * Authorization header and are never logged or put in error messages.
 */
export class GithubRestClient implements GithubApi {
  readonly gitHost: string;
  readonly #base: string;
  readonly #auth: GithubAuthConfig;
  readonly #log: Logger;
  readonly #dispatcher: Dispatcher | undefined;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #random: () => number;
  readonly #now: () => number;
  readonly #maxAttempts: number;
  readonly #backoff: BackoffOptions;
  readonly #maxRateLimitWaitMs: number;
  readonly #timeoutMs: number;
  readonly #key: KeyObject | undefined;
  // Per repository: installation tokens are minted scoped to the one repository they serve.
  readonly #tokens = new Map<string, Promise<{ token: string; expiresAt: number }>>();

  constructor(options: GithubClientOptions) {
    this.#base = options.apiUrl.replace(/\/+$/, "");
    this.gitHost = gitHostFor(this.#base);
    this.#auth = options.auth;
    this.#log = options.log;
    this.#dispatcher = options.dispatcher;
    this.#sleep = options.sleep ?? sleepMs;
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? Date.now;
    this.#maxAttempts = options.maxAttempts ?? 5;
    this.#backoff = options.backoff ?? { baseMs: 1_000, maxMs: 30_000 };
    this.#maxRateLimitWaitMs = options.maxRateLimitWaitMs ?? 60_000;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#key = options.auth.kind === "app" ? createPrivateKey(options.auth.privateKeyPem) : undefined;
  }

  async createCommitStatus(owner: string, repo: string, sha: string, status: CommitStatusInput): Promise<void> {
    if (!SHA.test(sha)) throw new GithubApiError("commit status needs a full 40-hex sha", undefined, false);
    const body = { ...status, ...(status.description ? { description: truncateDescription(status.description) } : {}) };
    await this.#repoCall(owner, repo, "POST", `/statuses/${sha}`, body);
  }

  async createDeployment(owner: string, repo: string, input: DeploymentInput): Promise<{ id: string }> {
    const body = { ...input, ...(input.description ? { description: truncateDescription(input.description) } : {}) };
    const created = (await this.#repoCall(owner, repo, "POST", "/deployments", body)) as { id?: unknown } | null;
    // 202 "auto-merged" answers carry no id; with auto_merge false GitHub should always create (201).
    if (typeof created?.id !== "number") throw new GithubApiError("GitHub created no deployment", 202, false);
    return { id: String(created.id) };
  }

  async createDeploymentStatus(
    owner: string,
    repo: string,
    deploymentId: string,
    status: DeploymentStatusInput,
  ): Promise<void> {
    if (!/^\d{1,20}$/.test(deploymentId)) throw new GithubApiError("malformed deployment id", undefined, false);
    const body = { ...status, ...(status.description ? { description: truncateDescription(status.description) } : {}) };
    await this.#repoCall(owner, repo, "POST", `/deployments/${deploymentId}/statuses`, body);
  }

  async refHead(owner: string, repo: string, ref: string): Promise<string | undefined> {
    if (!REF.test(ref) || ref.split("/").some((part) => part === "" || part === "." || part === "..")) {
      throw new GithubApiError("malformed ref", undefined, false);
    }
    const path = ref.split("/").map(encodeURIComponent).join("/");
    let answer: unknown;
    try {
      answer = await this.#repoCall(owner, repo, "GET", `/git/ref/${path}`, undefined);
    } catch (err) {
      if (err instanceof GithubApiError && err.status === 404) return undefined;
      throw err;
    }
    const found = answer as { ref?: unknown; object?: { sha?: unknown } } | null;
    if (Array.isArray(answer) || found?.ref !== `refs/${ref}`) return undefined;
    const sha = found.object?.sha;
    if (typeof sha !== "string" || !SHA.test(sha)) throw new GithubApiError("malformed ref answer", undefined, false);
    return sha;
  }

  async repositoryId(owner: string, repo: string): Promise<number | undefined> {
    let answer: unknown;
    try {
      answer = await this.#repoCall(owner, repo, "GET", "", undefined);
    } catch (err) {
      // 404: not there, or not visible to the bot; a 301 (renamed) is not followed: the caller asks by the new name.
      if (err instanceof GithubApiError && (err.status === 404 || err.status === 301)) return undefined;
      throw err;
    }
    const id = (answer as { id?: unknown } | null)?.id;
    if (typeof id !== "number" || !Number.isSafeInteger(id))
      throw new GithubApiError("malformed repository answer", undefined, false);
    return id;
  }

  async fileHasLine(owner: string, repo: string, path: string, line: string): Promise<boolean> {
    if (!CONTENT_PATH.test(path) || path.split("/").some((part) => part === "." || part === "..")) {
      throw new GithubApiError("malformed content path", undefined, false);
    }
    let answer: unknown;
    try {
      // No ref: GitHub reads the default branch, which only people with push access can change.
      answer = await this.#repoCall(owner, repo, "GET", `/contents/${path}`, undefined);
    } catch (err) {
      if (err instanceof GithubApiError && err.status === 404) return false;
      throw err;
    }
    // A directory answers with a list; a submodule or a symlink leaving the repository has another type.
    const file = answer as { type?: unknown; encoding?: unknown; size?: unknown; content?: unknown } | null;
    if (Array.isArray(answer) || file?.type !== "file" || file.encoding !== "base64") return false;
    if (typeof file.size !== "number" || file.size > PROOF_FILE_MAX || typeof file.content !== "string") return false;
    const text = Buffer.from(file.content, "base64").toString("utf8");
    return text.split(/\r?\n/).some((l) => l.trim() === line);
  }

  async appInstallationId(owner: string, repo: string): Promise<number | undefined> {
    checkName(owner, repo);
    if (this.#auth.kind !== "app") return undefined;
    let answer: unknown;
    try {
      answer = await this.#send("GET", `/repos/${owner}/${repo}/installation`, this.#appJwt(), undefined);
    } catch (err) {
      if (err instanceof GithubApiError && err.status === 404) return undefined;
      throw err;
    }
    const id = (answer as { id?: unknown } | null)?.id;
    if (typeof id !== "number" || !Number.isSafeInteger(id))
      throw new GithubApiError("no App installation id", undefined, false);
    return id;
  }

  async gitCredentials(owner: string, repo: string): Promise<GitCredentials> {
    checkName(owner, repo);
    return { username: "x-access-token", password: await this.#tokenFor(owner, repo) };
  }

  async #repoCall(owner: string, repo: string, method: "GET" | "POST", suffix: string, body: unknown) {
    checkName(owner, repo);
    const token = await this.#tokenFor(owner, repo);
    try {
      return await this.#send(method, `/repos/${owner}/${repo}${suffix}`, token, body);
    } catch (err) {
      // A revoked or expired installation token: the next call mints a new one.
      if (err instanceof GithubApiError && err.status === 401) this.#tokens.delete(`${owner}/${repo}`);
      throw err;
    }
  }

  async #tokenFor(owner: string, repo: string): Promise<string> {
    if (this.#auth.kind === "token") return this.#auth.token;
    const key = `${owner}/${repo}`;
    const cached = this.#tokens.get(key);
    if (cached) {
      const held = await cached.catch(() => undefined);
      if (held && held.expiresAt - TOKEN_MARGIN_MS > this.#now()) return held.token;
      if (this.#tokens.get(key) === cached) this.#tokens.delete(key);
    }
    // Concurrent callers share one mint; a failed mint is forgotten so the next call tries again.
    let pending = this.#tokens.get(key);
    if (!pending) {
      pending = this.#mintInstallationToken(owner, repo);
      this.#tokens.set(key, pending);
    }
    try {
      return (await pending).token;
    } catch (err) {
      if (this.#tokens.get(key) === pending) this.#tokens.delete(key);
      throw err;
    }
  }

  async #mintInstallationToken(owner: string, repo: string): Promise<{ token: string; expiresAt: number }> {
    const jwt = this.#appJwt();
    const installation = (await this.#send("GET", `/repos/${owner}/${repo}/installation`, jwt, undefined)) as {
      id?: unknown;
    } | null;
    if (typeof installation?.id !== "number") throw new GithubApiError("no App installation id", undefined, false);
    const minted = (await this.#send("POST", `/app/installations/${installation.id}/access_tokens`, jwt, {
      repositories: [repo],
    })) as { token?: unknown; expires_at?: unknown } | null;
    if (typeof minted?.token !== "string" || typeof minted.expires_at !== "string") {
      throw new GithubApiError("malformed installation token answer", undefined, false);
    }
    this.#log.info({ repository: `${owner}/${repo}` }, "GitHub App installation token minted");
    return { token: minted.token, expiresAt: Date.parse(minted.expires_at) };
  }

  #appJwt(): string {
    if (this.#auth.kind !== "app" || this.#key === undefined) throw new Error("not a GitHub App");
    return githubAppJwt(this.#auth.appId, this.#key, this.#now());
  }

  async #send(method: "GET" | "POST", path: string, token: string, body: unknown): Promise<unknown> {
    for (let attempt = 1; ; attempt++) {
      let status: number | undefined;
      let headers: Record<string, string | string[] | undefined> = {};
      let text = "";
      try {
        const res = await request(`${this.#base}${path}`, {
          method,
          headers: {
            accept: "application/vnd.github+json",
            authorization: `Bearer ${token}`,
            "user-agent": "tussilago-deploy-bot",
            "x-github-api-version": "2022-11-28",
            ...(body === undefined ? {} : { "content-type": "application/json" }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          headersTimeout: this.#timeoutMs,
          bodyTimeout: this.#timeoutMs,
          ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
        });
        status = res.statusCode;
        headers = res.headers;
        text = await res.body.text();
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (attempt >= this.#maxAttempts) {
          throw new GithubApiError(`GitHub ${method} ${path} failed: network error ${String(code)}`, undefined, true);
        }
        await this.#wait(attempt, method, path, undefined, this.#backoffDelay(attempt));
        continue;
      }
      if (status >= 200 && status < 300) return parseJson(text, `GitHub ${method} ${path}`);

      const rateLimited = status === 429 || (status === 403 && isRateLimit(headers, text));
      const message = `GitHub ${method} ${path} answered ${status}${githubMessage(text)}`;
      if (!(status >= 500 || rateLimited)) throw new GithubApiError(message, status, false);
      const delay = rateLimited ? this.#rateLimitDelay(headers, attempt) : this.#backoffDelay(attempt);
      if (attempt >= this.#maxAttempts || delay === undefined) throw new GithubApiError(message, status, true);
      await this.#wait(attempt, method, path, status, delay);
    }
  }

  #backoffDelay(attempt: number): number {
    return cappedExponentialDelay(attempt, this.#backoff, this.#random);
  }

  /** Retry-After (seconds) or x-ratelimit-reset (epoch seconds); undefined when the wait exceeds our cap. */
  #rateLimitDelay(headers: Record<string, string | string[] | undefined>, attempt: number): number | undefined {
    const retryAfter = Number(header(headers, "retry-after"));
    const reset = Number(header(headers, "x-ratelimit-reset"));
    let wait: number;
    if (Number.isFinite(retryAfter) && retryAfter >= 0 && header(headers, "retry-after") !== undefined) {
      wait = retryAfter * 1000;
    } else if (Number.isFinite(reset) && header(headers, "x-ratelimit-reset") !== undefined) {
      wait = Math.max(0, reset * 1000 - this.#now());
    } else {
      // Secondary limits without a hint: GitHub asks for at least a minute; the cap bounds us anyway.
      wait = Math.max(this.#backoffDelay(attempt), 60_000);
    }
    return wait > this.#maxRateLimitWaitMs ? undefined : wait;
  }

  async #wait(attempt: number, method: string, path: string, status: number | undefined, delayMs: number) {
    this.#log.warn({ method, path, status, attempt, delayMs }, "GitHub API call failed; retrying");
    await this.#sleep(delayMs);
  }
}

function parseJson(text: string, what: string): unknown {
  if (text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new GithubApiError(`${what} answered with malformed JSON`, undefined, false);
  }
}

function checkName(owner: string, repo: string): void {
  if (!NAME.test(owner) || !NAME.test(repo) || owner.startsWith(".") || repo.startsWith(".")) {
    throw new GithubApiError("malformed repository name", undefined, false);
  }
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function isRateLimit(headers: Record<string, string | string[] | undefined>, text: string): boolean {
  if (header(headers, "x-ratelimit-remaining") === "0" || header(headers, "retry-after") !== undefined) return true;
  return /rate limit/i.test(text);
}

/** GitHub's own `message` field, bounded: useful in logs (e.g. 422 validation), never a credential. */
function githubMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    return typeof parsed.message === "string" ? `: ${parsed.message.slice(0, 200)}` : "";
  } catch {
    return "";
  }
}
