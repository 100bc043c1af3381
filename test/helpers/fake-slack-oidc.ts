import { createHash, randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";

/**
 * A fake "Sign in with Slack" OpenID provider: discovery, JWKS, the authorize redirect and the token endpoint, at
 * Slack's paths. It checks what Slack checks (client id and secret, redirect URI, the code once, PKCE S256) and
 * issues an RS256 ID token with Slack's claims. `tamper` changes the next ID token, to test that the bot refuses it.
 * Used in-process (`fetch`, no port) by unit tests and over a real port (`listen`) by the browser test.
 */
export interface SlackUser {
  teamId: string;
  userId: string;
  name: string;
}

export interface IdTokenTamper {
  iss?: string;
  aud?: string;
  nonce?: string;
  /** Seconds relative to now. */
  expIn?: number;
  /** Sign with a key the JWKS does not publish. */
  foreignKey?: boolean;
}

interface PendingCode {
  user: SlackUser;
  nonce: string | undefined;
  challenge: string;
  redirectUri: string;
}

export class FakeSlackOidc {
  readonly clientId = "1234567890.0987654321";
  readonly clientSecret = "fake-client-secret";
  /** Who the next authorize request signs in as (a real Slack would show its own sign-in screen). */
  user: SlackUser | undefined;
  tamper: IdTokenTamper = {};
  /** Token requests seen, with whether their PKCE verifier matched the challenge. */
  readonly tokenRequests: { pkceOk: boolean }[] = [];
  /** Redirect URIs the app may use (Slack: "Redirect URLs" of the app's OAuth settings). */
  readonly redirectUris = new Set<string>();
  readonly app = new Hono();
  #server: ReturnType<typeof serve> | undefined;
  readonly #codes = new Map<string, PendingCode>();
  readonly #keys: Promise<{ kid: string; privateKey: CryptoKey; jwk: JWK; foreign: CryptoKey }>;

  constructor() {
    this.#keys = (async () => {
      const pair = await generateKeyPair("RS256", { extractable: true });
      const other = await generateKeyPair("RS256");
      const jwk = await exportJWK(pair.publicKey);
      return {
        kid: "fake-1",
        privateKey: pair.privateKey,
        jwk: { ...jwk, kid: "fake-1", alg: "RS256", use: "sig" },
        foreign: other.privateKey,
      };
    })();
    const origin = (url: string) => new URL(url).origin;
    this.app.get("/.well-known/openid-configuration", (c) => {
      const iss = origin(c.req.url);
      return c.json({
        issuer: iss,
        authorization_endpoint: `${iss}/openid/connect/authorize`,
        token_endpoint: `${iss}/api/openid.connect.token`,
        userinfo_endpoint: `${iss}/api/openid.connect.userInfo`,
        jwks_uri: `${iss}/openid/connect/keys`,
        scopes_supported: ["openid", "profile", "email"],
        response_types_supported: ["code"],
        response_modes_supported: ["form_post"],
        grant_types_supported: ["authorization_code"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
        claims_supported: ["sub", "auth_time", "iss"],
        claims_parameter_supported: false,
        request_parameter_supported: false,
        request_uri_parameter_supported: true,
        token_endpoint_auth_methods_supported: ["client_secret_post", "client_secret_basic"],
      });
    });
    this.app.get("/openid/connect/keys", async (c) => c.json({ keys: [(await this.#keys).jwk] }));
    this.app.get("/openid/connect/authorize", (c) => {
      const q = new URL(c.req.url).searchParams;
      const redirectUri = q.get("redirect_uri") ?? "";
      if (q.get("client_id") !== this.clientId || !this.redirectUris.has(redirectUri)) {
        return c.text("bad client or redirect_uri", 400);
      }
      if (q.get("response_type") !== "code" || !(q.get("scope") ?? "").split(" ").includes("openid")) {
        return c.text("bad request", 400);
      }
      const target = new URL(redirectUri);
      const state = q.get("state");
      if (state !== null) target.searchParams.set("state", state);
      if (!this.user) {
        target.searchParams.set("error", "access_denied");
        return c.redirect(target.href, 302);
      }
      if (q.get("code_challenge_method") !== "S256" || !q.get("code_challenge")) return c.text("PKCE required", 400);
      const code = randomBytes(16).toString("hex");
      this.#codes.set(code, {
        user: this.user,
        nonce: q.get("nonce") ?? undefined,
        challenge: q.get("code_challenge") ?? "",
        redirectUri,
      });
      target.searchParams.set("code", code);
      return c.redirect(target.href, 302);
    });
    this.app.post("/api/openid.connect.token", async (c) => {
      const form = new URLSearchParams(await c.req.text());
      const pending = this.#codes.get(form.get("code") ?? "");
      this.#codes.delete(form.get("code") ?? "");
      const verifier = form.get("code_verifier") ?? "";
      const pkceOk =
        pending !== undefined && createHash("sha256").update(verifier).digest("base64url") === pending.challenge;
      this.tokenRequests.push({ pkceOk });
      // Slack answers errors with 200 and ok:false; openid-client then finds no access token and refuses.
      if (
        !pending ||
        !pkceOk ||
        form.get("client_id") !== this.clientId ||
        form.get("client_secret") !== this.clientSecret ||
        form.get("redirect_uri") !== pending.redirectUri ||
        form.get("grant_type") !== "authorization_code"
      ) {
        return c.json({ ok: false, error: "invalid_code" }, 400);
      }
      const keys = await this.#keys;
      const now = Math.floor(Date.now() / 1000);
      const t = this.tamper;
      const idToken = await new SignJWT({
        "https://slack.com/user_id": pending.user.userId,
        "https://slack.com/team_id": pending.user.teamId,
        name: pending.user.name,
        ...(pending.nonce !== undefined || t.nonce !== undefined ? { nonce: t.nonce ?? pending.nonce } : {}),
      })
        .setProtectedHeader({ alg: "RS256", kid: keys.kid, typ: "JWT" })
        .setIssuer(t.iss ?? origin(c.req.url))
        .setAudience(t.aud ?? this.clientId)
        .setSubject(pending.user.userId)
        .setIssuedAt(now + Math.min(0, t.expIn ?? 0) - 5)
        .setExpirationTime(now + (t.expIn ?? 300))
        .sign(t.foreignKey ? keys.foreign : keys.privateKey);
      return c.json({
        ok: true,
        access_token: `xoxp-${randomBytes(8).toString("hex")}`,
        token_type: "Bearer",
        id_token: idToken,
      });
    });
  }

  /** For openid-client's customFetch: answers in-process. */
  fetch = (url: string, init: { method?: string; headers?: Record<string, string>; body?: unknown }) =>
    Promise.resolve(
      this.app.request(url, {
        method: init.method ?? "GET",
        headers: init.headers ?? {},
        ...(init.body !== undefined && init.body !== null
          ? { body: init.body as NonNullable<RequestInit["body"]> }
          : {}),
      }),
    );

  async listen(): Promise<string> {
    const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
      const s = serve({ fetch: this.app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
    });
    this.#server = server;
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    const server = this.#server;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => server.close(() => resolve()));
  }
}
