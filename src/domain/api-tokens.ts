import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { and, asc, eq, isNull } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { apiTokens, type Role } from "../db/schema.ts";
import { invalidError, notFoundError } from "./errors.ts";
import { uuidSchema } from "./validation.ts";

/**
 * Operator API tokens (docs/api.md). The token is `tsg_<lookupId>_<secret>`: 8 random bytes of lookup id (hex) and
 * 32 random bytes of secret (base64url, 256 bits). Only the SHA-256 of the whole token is stored. A request's token is
 * found by its lookup id, then its hash is compared with timingSafeEqual, so the time an answer takes does not depend
 * on how much of a guessed token was right; an unknown lookup id is compared against a dummy hash the same way.
 */

/** An operator name: it is shown in audit rows (`api:<name>`), logs and listings. */
export const TOKEN_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const TOKEN_FORMAT = /^tsg_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface ApiTokenView {
  uuid: string;
  name: string;
  role: Role;
  createdBy: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** Who a valid token acts as. */
export interface ApiPrincipal {
  tokenUuid: string;
  name: string;
  role: Role;
  /** How audit rows name this operator. */
  label: string;
}

export const principalLabel = (name: string) => `api:${name}`;

export function hashToken(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

export function generateToken(): { token: string; lookupId: string } {
  const lookupId = randomBytes(8).toString("hex");
  return { token: `tsg_${lookupId}_${randomBytes(32).toString("base64url")}`, lookupId };
}

const view = {
  uuid: apiTokens.uuid,
  name: apiTokens.name,
  role: apiTokens.role,
  createdBy: apiTokens.createdBy,
  createdAt: apiTokens.createdAt,
  lastUsedAt: apiTokens.lastUsedAt,
  revokedAt: apiTokens.revokedAt,
};

/** Creates a token; the returned `token` is the only time it exists in clear. */
export function createApiToken(
  db: DbOrTx,
  input: { name: string; role: Role; createdBy: string },
): { token: string; view: ApiTokenView } {
  if (!TOKEN_NAME.test(input.name)) {
    throw invalidError(
      "token name must be 1–63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
    );
  }
  const { token, lookupId } = generateToken();
  const uuid = randomUUID();
  db.insert(apiTokens)
    .values({
      uuid,
      name: input.name,
      role: input.role,
      lookupId,
      secretHash: hashToken(token).toString("hex"),
      createdBy: input.createdBy,
    })
    .run();
  const row = db.select(view).from(apiTokens).where(eq(apiTokens.uuid, uuid)).get();
  if (!row) throw new Error("token vanished after insert");
  return { token, view: row };
}

/** Every token, revoked ones included, oldest first. Never the hash. */
export function listApiTokens(db: DbOrTx): ApiTokenView[] {
  return db.select(view).from(apiTokens).orderBy(asc(apiTokens.createdAt), asc(apiTokens.id)).all();
}

/**
 * Revokes one token (by UUID) or every active token of an operator (by name). Takes effect on the next request: each
 * request reads the row. Returns what it revoked; naming nothing active is a 404.
 */
export function revokeApiTokens(db: DbOrTx, target: string, now = new Date()): ApiTokenView[] {
  const byUuid = uuidSchema.safeParse(target).success;
  if (!byUuid && !TOKEN_NAME.test(target)) throw invalidError("name a token by its UUID or its operator name");
  const where = and(byUuid ? eq(apiTokens.uuid, target) : eq(apiTokens.name, target), isNull(apiTokens.revokedAt));
  const targets = db.select(view).from(apiTokens).where(where).all();
  if (targets.length === 0) throw notFoundError(`active token ${target}`);
  db.update(apiTokens).set({ revokedAt: now }).where(where).run();
  return targets.map((t) => ({ ...t, revokedAt: now }));
}

// Compared against when the lookup id is unknown, so that path does the same work as a wrong secret.
const DUMMY_HASH = hashToken("tsg_0000000000000000_not-a-token");

/** The operator a presented token acts as, or undefined (malformed, unknown, wrong secret, revoked). */
export function verifyApiToken(db: DbOrTx, presented: string, now = new Date()): ApiPrincipal | undefined {
  const match = TOKEN_FORMAT.exec(presented);
  const row =
    match?.[1] === undefined
      ? undefined
      : db
          .select({ ...view, secretHash: apiTokens.secretHash })
          .from(apiTokens)
          .where(eq(apiTokens.lookupId, match[1]))
          .get();
  const expected = row ? Buffer.from(row.secretHash, "hex") : DUMMY_HASH;
  const equal = expected.length === DUMMY_HASH.length && timingSafeEqual(hashToken(presented), expected);
  if (!row || !equal || row.revokedAt !== null) return undefined;
  // Bounded writes: last use is recorded at most once a minute per token.
  if (row.lastUsedAt === null || now.getTime() - row.lastUsedAt.getTime() > 60_000) {
    db.update(apiTokens).set({ lastUsedAt: now }).where(eq(apiTokens.uuid, row.uuid)).run();
  }
  return { tokenUuid: row.uuid, name: row.name, role: row.role, label: principalLabel(row.name) };
}
