import * as oidc from "openid-client";

/**
 * Sign in with Slack (OpenID Connect, authorization code flow with PKCE; https://api.slack.com/authentication/sign-in-with-slack).
 *
 * openid-client (v6, certified by the OpenID Foundation) rather than hand-written checks over node:crypto: the ID
 * token validation has many small rules (signature against the issuer's JWKS with key rotation, `iss` equal to the
 * discovered issuer, `aud` and `azp`, `exp`/`iat` with bounded clock skew, `nonce`, `state` in the callback, the
 * PKCE verifier) and a library that is tested against the conformance suite gets each of them right. jose (its own
 * dependency) seals our cookies (src/http/dashboard-session.ts).
 */
export interface OidcSettings {
  /** `https://slack.com`, or a fake issuer in tests (http only on loopback; src/config.ts checks). */
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Absolute: the public base URL + the callback path. Slack must list it as a redirect URL of the app. */
  redirectUri: string;
  /** Tests answer discovery, JWKS and the token endpoint in-process; production uses the global fetch. */
  fetch?: oidc.CustomFetch | undefined;
}

/** What one sign-in must carry from the redirect to the callback (kept in a sealed, short-lived cookie). */
export interface LoginTransaction {
  state: string;
  nonce: string;
  codeVerifier: string;
}

export interface SlackSignIn {
  teamId: string;
  userId: string;
  name: string;
}

/** A refused sign-in. `reason` is for the log; the browser only reads that the sign-in failed and may try again. */
export class SignInError extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super("sign-in failed");
    this.name = "SignInError";
    this.reason = reason;
  }
}

const SLACK_USER_ID = "https://slack.com/user_id";
const SLACK_TEAM_ID = "https://slack.com/team_id";
const SLACK_ID = /^[A-Z0-9]{2,32}$/;

export class SlackOidc {
  readonly #settings: OidcSettings;
  #config: Promise<oidc.Configuration> | undefined;

  constructor(settings: OidcSettings) {
    this.#settings = settings;
  }

  /** Discovery once, on the first sign-in (not at boot: Slack being down must not stop the bot); retried on failure. */
  #configuration(): Promise<oidc.Configuration> {
    if (this.#config === undefined) {
      const s = this.#settings;
      const insecure = new URL(s.issuer).protocol === "http:";
      const pending = oidc.discovery(
        new URL(s.issuer),
        s.clientId,
        { redirect_uris: [s.redirectUri], id_token_signed_response_alg: "RS256" },
        // Slack's discovery document lists client_secret_post as the only token endpoint auth method.
        oidc.ClientSecretPost(s.clientSecret),
        {
          // The ID token comes straight from the token endpoint, so OIDC Core (3.1.3.7) lets TLS stand in for its
          // signature and openid-client skips that check by default. We check it anyway against the issuer's JWKS:
          // it costs one cached key fetch, and a token endpoint reached without TLS (a loopback test issuer) or
          // through an intercepting proxy cannot then forge an identity.
          execute: insecure
            ? [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks]
            : [oidc.enableNonRepudiationChecks],
          ...(s.fetch ? { [oidc.customFetch]: s.fetch } : {}),
          timeout: 10,
        },
      );
      this.#config = pending;
      pending.catch(() => {
        if (this.#config === pending) this.#config = undefined;
      });
    }
    return this.#config;
  }

  /** The authorization URL to send the browser to, and the secrets the callback will check against. */
  async begin(): Promise<{ url: URL; transaction: LoginTransaction }> {
    const config = await this.#configuration();
    const transaction = {
      state: oidc.randomState(),
      nonce: oidc.randomNonce(),
      codeVerifier: oidc.randomPKCECodeVerifier(),
    };
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: this.#settings.redirectUri,
      scope: "openid profile",
      response_type: "code",
      state: transaction.state,
      nonce: transaction.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(transaction.codeVerifier),
      code_challenge_method: "S256",
    });
    return { url, transaction };
  }

  /**
   * The callback: `query` is the callback's query string. Checks state, exchanges the code with the PKCE verifier,
   * validates the ID token (signature, issuer, audience, expiry, nonce) and returns the Slack identity in it.
   */
  async complete(query: URLSearchParams, transaction: LoginTransaction): Promise<SlackSignIn> {
    const config = await this.#configuration().catch((err: unknown) => {
      throw new SignInError(`discovery failed: ${describe(err)}`);
    });
    const current = new URL(this.#settings.redirectUri);
    current.search = query.toString();
    let claims: oidc.IDToken | undefined;
    try {
      const tokens = await oidc.authorizationCodeGrant(config, current, {
        expectedState: transaction.state,
        expectedNonce: transaction.nonce,
        pkceCodeVerifier: transaction.codeVerifier,
        idTokenExpected: true,
      });
      claims = tokens.claims();
    } catch (err) {
      throw new SignInError(describe(err));
    }
    const userId = claims?.[SLACK_USER_ID];
    const teamId = claims?.[SLACK_TEAM_ID];
    if (typeof userId !== "string" || typeof teamId !== "string" || !SLACK_ID.test(userId) || !SLACK_ID.test(teamId)) {
      throw new SignInError("the ID token carries no Slack user and team id");
    }
    const name = typeof claims?.name === "string" && claims.name.trim() !== "" ? claims.name : userId;
    return { teamId, userId, name: name.slice(0, 80) };
  }
}

/** openid-client's message and code (e.g. OAUTH_JWT_CLAIM_COMPARISON_FAILED "unexpected JWT "aud" claim value"). */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? `${code}: ${err.message}` : err.message;
}
