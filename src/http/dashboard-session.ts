import { hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import { EncryptJWT, jwtDecrypt } from "jose";
import type { LoginTransaction, SlackSignIn } from "./oidc.ts";

/**
 * The dashboard's cookies are sealed (encrypted and authenticated, JWE `dir` + A256GCM via jose) with keys derived
 * from TUSSILAGO_DASHBOARD_COOKIE_SECRET, one key per purpose, so a sign-in cookie can never be replayed as a session.
 * Stateless by design: no session table (the database stays the bot's one writer's), and the roles are read from the
 * database on every request, so removing someone's role takes effect at once. A session lives SESSION_TTL_S; changing
 * the secret ends every session.
 */
export const SESSION_TTL_S = 8 * 3600;
export const LOGIN_TTL_S = 10 * 60;

type Purpose = "session" | "login";

export interface Session extends SlackSignIn {
  /** Synchronizer token the POST forms carry (CSRF); random per session. */
  csrf: string;
  /** Epoch seconds. */
  expiresAt: number;
}

export class CookieSealer {
  readonly #keys: Record<Purpose, Uint8Array>;
  readonly #now: () => number;

  constructor(secret: string, now: () => number = Date.now) {
    const key = (purpose: Purpose) =>
      new Uint8Array(hkdfSync("sha256", secret, "tussilago-dashboard", `cookie:${purpose}`, 32));
    this.#keys = { session: key("session"), login: key("login") };
    this.#now = now;
  }

  async #seal(purpose: Purpose, payload: Record<string, unknown>, ttlS: number): Promise<string> {
    const iat = Math.floor(this.#now() / 1000);
    return new EncryptJWT(payload)
      .setProtectedHeader({ alg: "dir", enc: "A256GCM" })
      .setAudience(purpose)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ttlS)
      .encrypt(this.#keys[purpose]);
  }

  /** The payload, or undefined for anything not sealed by us for this purpose, or expired. */
  async #open(purpose: Purpose, token: string | undefined): Promise<Record<string, unknown> | undefined> {
    if (token === undefined || token.length > 4096) return undefined;
    try {
      const { payload } = await jwtDecrypt(token, this.#keys[purpose], {
        audience: purpose,
        currentDate: new Date(this.#now()),
        keyManagementAlgorithms: ["dir"],
        contentEncryptionAlgorithms: ["A256GCM"],
      });
      return payload;
    } catch {
      return undefined;
    }
  }

  sealSession(who: SlackSignIn): Promise<string> {
    const csrf = randomBytes(24).toString("base64url");
    return this.#seal("session", { team: who.teamId, user: who.userId, name: who.name, csrf }, SESSION_TTL_S);
  }

  async openSession(token: string | undefined): Promise<Session | undefined> {
    const p = await this.#open("session", token);
    if (!p) return undefined;
    const { team, user, name, csrf, exp } = p;
    if (typeof team !== "string" || typeof user !== "string" || typeof name !== "string") return undefined;
    if (typeof csrf !== "string" || typeof exp !== "number") return undefined;
    return { teamId: team, userId: user, name, csrf, expiresAt: exp };
  }

  sealLogin(tx: LoginTransaction): Promise<string> {
    return this.#seal("login", { ...tx }, LOGIN_TTL_S);
  }

  async openLogin(token: string | undefined): Promise<LoginTransaction | undefined> {
    const p = await this.#open("login", token);
    if (!p) return undefined;
    const { state, nonce, codeVerifier } = p;
    if (typeof state !== "string" || typeof nonce !== "string" || typeof codeVerifier !== "string") return undefined;
    return { state, nonce, codeVerifier };
  }
}

/** Constant-time comparison of a submitted CSRF token with the session's. */
export function csrfMatches(session: Session, submitted: unknown): boolean {
  if (typeof submitted !== "string") return false;
  const a = Buffer.from(session.csrf);
  const b = Buffer.from(submitted);
  return a.length === b.length && timingSafeEqual(a, b);
}
