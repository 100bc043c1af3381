import { generateKeyPairSync, verify } from "node:crypto";
import { MockAgent } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { GithubAuthConfig } from "../../src/config.ts";
import { GithubApiError, GithubRestClient, gitHostFor } from "../../src/infra/github-api.ts";
import { githubGitCredentials } from "../../src/infra/github-credentials.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

const API = "https://api.github.com";
const SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const TOKEN = "github_pat_SECRET_0123456789";
const INSTALLATION_TOKEN = "ghs_INSTALLATION_SECRET_42";

interface Seen {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
}

function normaliseHeaders(raw: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (Array.isArray(raw)) {
    for (let i = 0; i + 1 < raw.length; i += 2) out[String(raw[i]).toLowerCase()] = String(raw[i + 1]);
  } else if (raw instanceof Headers) {
    raw.forEach((v, k) => {
      out[k.toLowerCase()] = v;
    });
  } else if (raw && typeof raw === "object") {
    for (const [k, v] of Object.entries(raw)) out[k.toLowerCase()] = String(v);
  }
  return out;
}

let agent: MockAgent;
let seen: Seen[];
let sleeps: number[];
let clock: number;
let log: ReturnType<typeof memoryLogger>;

beforeEach(() => {
  agent = new MockAgent();
  agent.disableNetConnect();
  seen = [];
  sleeps = [];
  clock = Date.parse("2026-01-01T00:00:00Z");
  log = memoryLogger();
});
afterEach(async () => {
  await agent.close();
});

function reply(
  method: string,
  path: string,
  statusCode: number,
  data: object | string = {},
  headers: Record<string, string> = {},
) {
  agent
    .get(API)
    .intercept({ method, path })
    .reply((opts) => {
      const text = typeof opts.body === "string" ? opts.body : "";
      seen.push({
        method: opts.method,
        path: opts.path,
        headers: normaliseHeaders(opts.headers),
        body: text ? JSON.parse(text) : undefined,
      });
      return { statusCode, data: typeof data === "string" ? data : JSON.stringify(data), responseOptions: { headers } };
    });
}

function client(auth: GithubAuthConfig = { kind: "token", token: TOKEN }, maxAttempts = 4) {
  return new GithubRestClient({
    apiUrl: API,
    auth,
    log: log.logger,
    dispatcher: agent,
    sleep: async (ms) => {
      sleeps.push(ms);
      clock += ms;
    },
    random: () => 0.5,
    now: () => clock,
    maxAttempts,
    backoff: { baseMs: 100, maxMs: 1_000 },
    maxRateLimitWaitMs: 30_000,
  });
}

describe("GithubRestClient requests", () => {
  it("reads a ref's head: exact match only, 404 → undefined, 5xx retried within the bound", async () => {
    const OTHER = "b".repeat(40);
    reply("GET", "/repos/acme/shop/git/ref/heads/main", 200, { ref: "refs/heads/main", object: { sha: SHA } });
    expect(await client().refHead("acme", "shop", "heads/main")).toBe(SHA);
    expect(seen[0]?.headers.authorization).toBe(`Bearer ${TOKEN}`);
    reply("GET", "/repos/acme/shop/git/ref/heads/gone", 404, { message: "Not Found" });
    expect(await client().refHead("acme", "shop", "heads/gone")).toBeUndefined();
    // GitHub answers a prefix with a list of refs: not the ref that was pushed.
    reply("GET", "/repos/acme/shop/git/ref/heads/ma", 200, [{ ref: "refs/heads/main", object: { sha: OTHER } }]);
    expect(await client().refHead("acme", "shop", "heads/ma")).toBeUndefined();
    reply("GET", "/repos/acme/shop/git/ref/tags/v1", 502, "bad gateway");
    reply("GET", "/repos/acme/shop/git/ref/tags/v1", 200, { ref: "refs/tags/v1", object: { sha: OTHER } });
    expect(await client().refHead("acme", "shop", "tags/v1")).toBe(OTHER);
    expect(sleeps).toHaveLength(1);
    for (let i = 0; i < 2; i++) reply("GET", "/repos/acme/shop/git/ref/heads/x", 503, "down");
    await expect(client(undefined, 2).refHead("acme", "shop", "heads/x")).rejects.toMatchObject({ retryable: true });
    await expect(client().refHead("acme", "shop", "heads/../../x")).rejects.toThrow("malformed ref");
    agent.assertNoPendingInterceptors();
  });

  it("proof of control: the repository's id, and a yes/no for a line in a file of the default branch", async () => {
    const CONTENT = "# MARKER-OF-PRIVATE-CONTENT\ntussilago-link abc123\n";
    const file = (content: string, extra: object = {}) => ({
      type: "file",
      encoding: "base64",
      size: Buffer.byteLength(content),
      content: Buffer.from(content)
        .toString("base64")
        .replace(/(.{60})/g, "$1\n"),
      ...extra,
    });
    reply("GET", "/repos/acme/shop", 200, { id: 42, full_name: "acme/shop" });
    expect(await client().repositoryId("acme", "shop")).toBe(42);
    reply("GET", "/repos/acme/gone", 404, { message: "Not Found" });
    expect(await client().repositoryId("acme", "gone")).toBeUndefined();

    reply("GET", "/repos/acme/shop/contents/.tussilago/link", 200, file(CONTENT));
    expect(await client().fileHasLine("acme", "shop", ".tussilago/link", "tussilago-link abc123")).toBe(true);
    reply("GET", "/repos/acme/shop/contents/.tussilago/link", 200, file(CONTENT));
    expect(await client().fileHasLine("acme", "shop", ".tussilago/link", "tussilago-link abc")).toBe(false);
    reply("GET", "/repos/acme/shop/contents/.tussilago/link", 404, { message: "Not Found" });
    expect(await client().fileHasLine("acme", "shop", ".tussilago/link", "tussilago-link abc123")).toBe(false);
    // A directory (a list), a submodule, or a file over 4 KiB holding the line: no.
    reply("GET", "/repos/acme/shop/contents/.tussilago/link", 200, [file(CONTENT)]);
    expect(await client().fileHasLine("acme", "shop", ".tussilago/link", "tussilago-link abc123")).toBe(false);
    reply("GET", "/repos/acme/shop/contents/.tussilago/link", 200, file(CONTENT, { type: "submodule" }));
    expect(await client().fileHasLine("acme", "shop", ".tussilago/link", "tussilago-link abc123")).toBe(false);
    const big = `${"x".repeat(5000)}\ntussilago-link abc123\n`;
    reply("GET", "/repos/acme/shop/contents/.tussilago/link", 200, file(big));
    expect(await client().fileHasLine("acme", "shop", ".tussilago/link", "tussilago-link abc123")).toBe(false);
    await expect(client().fileHasLine("acme", "shop", "../x", "l")).rejects.toThrow("malformed content path");

    // No ref asked: GitHub answers from the default branch. The content never reaches a log.
    expect(seen.filter((r) => r.path.includes("/contents/")).every((r) => !r.path.includes("?"))).toBe(true);
    expect(log.text()).not.toContain("MARKER-OF-PRIVATE-CONTENT");
    // Token mode has no App installation to ask about.
    expect(await client().appInstallationId("acme", "shop")).toBeUndefined();
    agent.assertNoPendingInterceptors();
  });

  it("posts a commit status with the token, API version and a description cut to 140 characters", async () => {
    reply("POST", `/repos/acme/shop/statuses/${SHA}`, 201, { id: 1 });
    await client().createCommitStatus("acme", "shop", SHA, {
      state: "success",
      target_url: "http://shop.example.test",
      description: "x".repeat(300),
      context: "tussilago/shop",
    });
    expect(seen).toHaveLength(1);
    const [req] = seen;
    expect(req?.headers).toMatchObject({
      authorization: `Bearer ${TOKEN}`,
      accept: "application/vnd.github+json",
      "x-github-api-version": "2022-11-28",
      "content-type": "application/json",
    });
    expect(req?.body).toMatchObject({ state: "success", target_url: "http://shop.example.test" });
    expect((req?.body as { description?: string } | undefined)?.description).toHaveLength(140);
    agent.assertNoPendingInterceptors();
  });

  it("creates a deployment (returning its id) and a deployment status", async () => {
    reply("POST", "/repos/acme/shop/deployments", 201, { id: 987654 });
    reply("POST", "/repos/acme/shop/deployments/987654/statuses", 201, { id: 5 });
    const gh = client();
    const created = await gh.createDeployment("acme", "shop", {
      ref: SHA,
      environment: "production",
      auto_merge: false,
      required_contexts: [],
    });
    expect(created).toEqual({ id: "987654" });
    await gh.createDeploymentStatus("acme", "shop", created.id, {
      state: "in_progress",
      environment_url: "http://shop.example.test",
      description: "Deploying",
    });
    expect(seen.map((s) => s.body)).toEqual([
      { ref: SHA, environment: "production", auto_merge: false, required_contexts: [] },
      { state: "in_progress", environment_url: "http://shop.example.test", description: "Deploying" },
    ]);
  });

  it("refuses malformed repository names and shas before any request", async () => {
    const gh = client();
    await expect(gh.createCommitStatus("acme", "../x", SHA, { state: "pending", context: "c" })).rejects.toThrow(
      GithubApiError,
    );
    await expect(gh.createCommitStatus("acme", "shop", "HEAD", { state: "pending", context: "c" })).rejects.toThrow(
      GithubApiError,
    );
    expect(seen).toHaveLength(0);
  });
});

describe("GitHub App authentication", () => {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const appAuth: GithubAuthConfig = { kind: "app", appId: "4242", privateKeyPem: pem };

  function installation(expiresInMs = 3_600_000) {
    reply("GET", "/repos/acme/shop/installation", 200, { id: 77 });
    reply("POST", "/app/installations/77/access_tokens", 201, {
      token: INSTALLATION_TOKEN,
      expires_at: new Date(clock + expiresInMs).toISOString(),
    });
  }

  it("signs an RS256 JWT, finds the installation per repository and mints a repository-scoped token", async () => {
    installation();
    reply("POST", `/repos/acme/shop/statuses/${SHA}`, 201, {});
    await client(appAuth).createCommitStatus("acme", "shop", SHA, { state: "pending", context: "tussilago/shop" });

    expect(seen.map((s) => `${s.method} ${s.path}`)).toEqual([
      "GET /repos/acme/shop/installation",
      "POST /app/installations/77/access_tokens",
      `POST /repos/acme/shop/statuses/${SHA}`,
    ]);
    const jwt = seen[0]?.headers.authorization?.replace(/^Bearer /, "") ?? "";
    const [header, payload, signature] = jwt.split(".");
    expect(JSON.parse(Buffer.from(header ?? "", "base64url").toString())).toEqual({ alg: "RS256", typ: "JWT" });
    const claims = JSON.parse(Buffer.from(payload ?? "", "base64url").toString()) as Record<string, number | string>;
    expect(claims.iss).toBe("4242");
    expect(Number(claims.exp) - Number(claims.iat)).toBeLessThanOrEqual(600);
    expect(
      verify("sha256", Buffer.from(`${header}.${payload}`), publicKey, Buffer.from(signature ?? "", "base64url")),
    ).toBe(true);
    expect(seen[1]?.headers.authorization).toBe(`Bearer ${jwt}`);
    expect(seen[1]?.body).toEqual({ repositories: ["shop"] });
    expect(seen[2]?.headers.authorization).toBe(`Bearer ${INSTALLATION_TOKEN}`);
  });

  it("reuses the token until a minute before it expires, then mints a new one", async () => {
    installation(10 * 60_000);
    reply("POST", `/repos/acme/shop/statuses/${SHA}`, 201, {});
    reply("POST", `/repos/acme/shop/statuses/${SHA}`, 201, {});
    const gh = client(appAuth);
    await gh.createCommitStatus("acme", "shop", SHA, { state: "pending", context: "c" });
    clock += 8 * 60_000;
    await gh.createCommitStatus("acme", "shop", SHA, { state: "success", context: "c" });
    expect(seen.filter((s) => s.path.endsWith("/access_tokens"))).toHaveLength(1);

    clock += 90_000; // now inside the last minute of validity
    installation();
    reply("POST", `/repos/acme/shop/statuses/${SHA}`, 201, {});
    await gh.createCommitStatus("acme", "shop", SHA, { state: "success", context: "c" });
    expect(seen.filter((s) => s.path.endsWith("/access_tokens"))).toHaveLength(2);
    agent.assertNoPendingInterceptors();
  });

  it("gives git an x-access-token credential for the app's own repository only", async () => {
    installation();
    const gh = client(appAuth);
    const app = {
      gitUrl: "https://github.com/acme/shop.git",
      githubRepo: "acme/shop",
      githubLinkStatus: "active",
      githubLinkProof: "challenge-file",
    };
    expect(await githubGitCredentials(gh, app)).toEqual({ username: "x-access-token", password: INSTALLATION_TOKEN });
    expect(await githubGitCredentials(gh, { ...app, gitUrl: "https://github.com/acme/other.git" })).toBeUndefined();
    expect(await githubGitCredentials(gh, { ...app, gitUrl: "https://gitlab.com/acme/shop.git" })).toBeUndefined();
    expect(await githubGitCredentials(gh, { ...app, gitUrl: "git@github.com:acme/shop.git" })).toBeUndefined();
    expect(await githubGitCredentials(gh, { ...app, githubRepo: null })).toBeUndefined();
    // A pending link is only a claim: the operator's token must not fetch a repository nobody proved control of.
    expect(await githubGitCredentials(gh, { ...app, githubLinkStatus: "pending" })).toBeUndefined();
    // Active by a signature alone (its admin can sign for any repository): no token either (docs/security.md).
    expect(await githubGitCredentials(gh, { ...app, githubLinkProof: "signature" })).toBeUndefined();
    expect(await githubGitCredentials(gh, { ...app, githubLinkProof: null })).toBeUndefined();
    expect(await githubGitCredentials(undefined, app)).toBeUndefined();
    expect(gitHostFor("https://ghe.example/api/v3")).toBe("ghe.example");
  });

  it("asks which installation covers a repository with the App's JWT; none → undefined", async () => {
    reply("GET", "/repos/acme/shop/installation", 200, { id: 77 });
    expect(await client(appAuth).appInstallationId("acme", "shop")).toBe(77);
    expect(seen[0]?.headers.authorization).toMatch(/^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    reply("GET", "/repos/victim/private/installation", 404, { message: "Not Found" });
    expect(await client(appAuth).appInstallationId("victim", "private")).toBeUndefined();
    // Not installed there: no installation token, so the repository is invisible to the bot.
    reply("GET", "/repos/victim/private/installation", 404, { message: "Not Found" });
    expect(await client(appAuth).repositoryId("victim", "private")).toBeUndefined();
    agent.assertNoPendingInterceptors();
  });

  it("never logs the private key, the JWT or the installation token, even when calls fail", async () => {
    installation();
    reply("POST", `/repos/acme/shop/statuses/${SHA}`, 502, { message: "Bad gateway" });
    reply("POST", `/repos/acme/shop/statuses/${SHA}`, 422, { message: "Validation Failed" });
    const err = await client(appAuth)
      .createCommitStatus("acme", "shop", SHA, { state: "pending", context: "c" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GithubApiError);
    const jwt = seen[0]?.headers.authorization?.replace(/^Bearer /, "") ?? "";
    const logged = log.text();
    expect(logged).toContain("retrying");
    for (const secret of [INSTALLATION_TOKEN, jwt, pem.split("\n")[1] ?? pem]) {
      expect(logged).not.toContain(secret);
      expect(String((err as Error).message)).not.toContain(secret);
    }
  });
});

describe("retries", () => {
  const status = () => client().createCommitStatus("acme", "shop", SHA, { state: "pending", context: "c" });
  const path = `/repos/acme/shop/statuses/${SHA}`;

  it("retries 5xx answers with capped exponential backoff, then succeeds", async () => {
    reply("POST", path, 502);
    reply("POST", path, 503);
    reply("POST", path, 201);
    await status();
    expect(seen).toHaveLength(3);
    // random() = 0.5 → three quarters of each step: 100 ms, then 200 ms.
    expect(sleeps).toEqual([75, 150]);
  });

  it("gives up after maxAttempts with a retryable error", async () => {
    for (let i = 0; i < 4; i++) reply("POST", path, 500);
    const err = (await status().catch((e: unknown) => e)) as GithubApiError;
    expect(err).toBeInstanceOf(GithubApiError);
    expect(err.status).toBe(500);
    expect(err.retryable).toBe(true);
    expect(seen).toHaveLength(4);
    expect(sleeps).toHaveLength(3);
  });

  it("retries network errors", async () => {
    agent.get(API).intercept({ method: "POST", path }).replyWithError(new Error("socket hang up"));
    reply("POST", path, 201);
    await status();
    expect(sleeps).toHaveLength(1);
    expect(seen).toHaveLength(1);
  });

  it("waits as long as Retry-After says on a 403 secondary rate limit", async () => {
    reply("POST", path, 403, { message: "You have exceeded a secondary rate limit" }, { "retry-after": "3" });
    reply("POST", path, 201);
    await status();
    expect(sleeps).toEqual([3_000]);
  });

  it("waits until x-ratelimit-reset on a 429 / exhausted primary limit", async () => {
    const reset = String(Math.floor(clock / 1000) + 12);
    reply("POST", path, 429, {}, { "x-ratelimit-remaining": "0", "x-ratelimit-reset": reset });
    reply(
      "POST",
      path,
      403,
      { message: "API rate limit exceeded" },
      { "x-ratelimit-remaining": "0", "x-ratelimit-reset": reset },
    );
    reply("POST", path, 201);
    await status();
    expect(sleeps[0]).toBe(12_000);
    expect(sleeps[1]).toBe(0);
  });

  it("fails at once when the rate limit resets later than the cap allows", async () => {
    reply("POST", path, 429, {}, { "retry-after": "3600" });
    const err = (await status().catch((e: unknown) => e)) as GithubApiError;
    expect(err.status).toBe(429);
    expect(sleeps).toEqual([]);
  });

  it.each([
    [404, "Not Found"],
    [422, "Validation Failed"],
    [403, "Resource not accessible by integration"],
  ])("does not retry %i", async (code, message) => {
    reply("POST", path, code, { message });
    const err = (await status().catch((e: unknown) => e)) as GithubApiError;
    expect(err).toBeInstanceOf(GithubApiError);
    expect(err.status).toBe(code);
    expect(err.retryable).toBe(false);
    expect(err.message).toContain(message);
    expect(seen).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });
});
