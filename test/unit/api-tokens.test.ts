import { createHash } from "node:crypto";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createTokenCommand, listTokensCommand, revokeTokenCommand } from "../../commands/tokens.ts";
import { apiTokens, auditEvents } from "../../src/db/schema.ts";
import { createApiToken, verifyApiToken } from "../../src/domain/api-tokens.ts";
import { DomainError } from "../../src/domain/errors.ts";
import { memoryLogger, tempDb } from "../helpers/fixtures.ts";

// Every comparison of a presented token with a stored hash must go through timingSafeEqual: the spy counts them.
const { timingSafeEqualSpy } = vi.hoisted(() => ({ timingSafeEqualSpy: { calls: 0 } }));
vi.mock("node:crypto", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:crypto")>();
  return {
    ...actual,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      timingSafeEqualSpy.calls += 1;
      return actual.timingSafeEqual(a, b);
    },
  };
});

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function setup() {
  const t = tempDb();
  cleanups.push(t.cleanup);
  return { db: t.db, ...memoryLogger("info") };
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

describe("API tokens", () => {
  it("stores only the SHA-256 of a 256-bit token, and the token verifies as its operator", () => {
    const { db } = setup();
    const { token, view } = createApiToken(db, { name: "alice", role: "deployer", createdBy: "cli" });
    expect(token).toMatch(/^tsg_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(token.slice(21), "base64url")).toHaveLength(32);
    const row = db.select().from(apiTokens).get();
    expect(row?.secretHash).toBe(sha256(token));
    expect(JSON.stringify(row)).not.toContain(token.slice(21));
    expect(verifyApiToken(db, token)).toEqual({
      tokenUuid: view.uuid,
      name: "alice",
      role: "deployer",
      label: "api:alice",
    });
  });

  it("refuses a wrong secret, an unknown lookup id and a malformed token, comparing in constant time", () => {
    const { db } = setup();
    const { token } = createApiToken(db, { name: "alice", role: "admin", createdBy: "cli" });
    const last = token.at(-1) === "A" ? "B" : "A";
    const wrongSecret = `${token.slice(0, -1)}${last}`;
    const unknownId = `tsg_ffffffffffffffff_${token.slice(21)}`;
    timingSafeEqualSpy.calls = 0;
    expect(verifyApiToken(db, wrongSecret)).toBeUndefined();
    expect(timingSafeEqualSpy.calls).toBe(1);
    expect(verifyApiToken(db, unknownId)).toBeUndefined();
    expect(timingSafeEqualSpy.calls).toBe(2);
    expect(verifyApiToken(db, "not-a-token")).toBeUndefined();
    expect(verifyApiToken(db, "")).toBeUndefined();
    expect(timingSafeEqualSpy.calls).toBe(4);
    expect(verifyApiToken(db, token)?.name).toBe("alice");
    expect(timingSafeEqualSpy.calls).toBe(5);
  });

  it("a revoked token no longer verifies; revoking by name revokes each of that operator's tokens", () => {
    const { db, logger } = setup();
    const one = createTokenCommand({ db, log: logger }, { name: "alice", role: "viewer", actorLabel: "cli" });
    const two = createTokenCommand({ db, log: logger }, { name: "alice", role: "admin", actorLabel: "cli" });
    const bob = createTokenCommand({ db, log: logger }, { name: "bob", role: "viewer", actorLabel: "cli" });
    expect(revokeTokenCommand({ db, log: logger }, { target: one.view.uuid, actorLabel: "cli" })).toHaveLength(1);
    expect(verifyApiToken(db, one.token)).toBeUndefined();
    expect(verifyApiToken(db, two.token)?.role).toBe("admin");
    expect(revokeTokenCommand({ db, log: logger }, { target: "alice", actorLabel: "cli" })).toHaveLength(1);
    expect(verifyApiToken(db, two.token)).toBeUndefined();
    expect(verifyApiToken(db, bob.token)?.name).toBe("bob");
    expect(() => revokeTokenCommand({ db, log: logger }, { target: "alice", actorLabel: "cli" })).toThrow(DomainError);
    const listed = listTokensCommand({ db });
    expect(listed.map((t) => [t.name, t.revokedAt !== null])).toEqual([
      ["alice", true],
      ["alice", true],
      ["bob", false],
    ]);
    expect(JSON.stringify(listed)).not.toMatch(/secretHash|lookupId|tsg_/);
    const actions = db.select({ action: auditEvents.action, actor: auditEvents.actorLabel }).from(auditEvents).all();
    expect(actions.map((a) => a.action)).toEqual([
      "token.create",
      "token.create",
      "token.create",
      "token.revoke",
      "token.revoke",
    ]);
  });

  it("refuses a name that could not be shown safely in an audit row", () => {
    const { db } = setup();
    for (const name of ["", "Alice", "a b", "api:x", "-x", "x".repeat(64)]) {
      expect(() => createApiToken(db, { name, role: "viewer", createdBy: "cli" })).toThrow(DomainError);
    }
  });

  it("records the last use at most once a minute", () => {
    const { db } = setup();
    const { token } = createApiToken(db, { name: "alice", role: "viewer", createdBy: "cli" });
    verifyApiToken(db, token, new Date(1_000_000));
    verifyApiToken(db, token, new Date(1_030_000));
    expect(db.select().from(apiTokens).get()?.lastUsedAt?.getTime()).toBe(1_000_000);
    verifyApiToken(db, token, new Date(1_070_000));
    expect(db.select().from(apiTokens).get()?.lastUsedAt?.getTime()).toBe(1_070_000);
  });
});
