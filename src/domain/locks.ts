import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { apps, locks, users } from "../db/schema.ts";
import { appRowId } from "./apps.ts";
import { DomainError } from "./errors.ts";
import type { Actor } from "./users.ts";

export interface LockView {
  /** The holder's public id and how to show them (a Slack mention or a display name). */
  holderUuid: string;
  holderLabel: string;
  reason: string;
  since: Date;
}

export const MAX_LOCK_REASON = 200;

export function getLock(db: DbOrTx, appUuid: string): LockView | undefined {
  const row = db
    .select({
      holderUuid: users.uuid,
      slackUserId: users.slackUserId,
      displayName: users.displayName,
      reason: locks.reason,
      since: locks.createdAt,
    })
    .from(locks)
    .innerJoin(apps, eq(apps.id, locks.appId))
    .innerJoin(users, eq(users.id, locks.heldBy))
    .where(eq(apps.uuid, appUuid))
    .get();
  if (!row) return undefined;
  const holderLabel = row.slackUserId ? `<@${row.slackUserId}>` : row.displayName;
  return { holderUuid: row.holderUuid, holderLabel, reason: row.reason, since: row.since };
}

export class LockedError extends DomainError {
  readonly lock: LockView;
  constructor(appSlug: string, lock: LockView) {
    const why = lock.reason === "" ? "" : `: ${lock.reason}`;
    super(409, "locked", `${appSlug} is locked by ${lock.holderLabel} since ${lock.since.toISOString()}${why}`);
    this.lock = lock;
  }
}

/**
 * The check every deployment entry point runs before recording a deployment (Slack commands here; the push worker
 * must call it too). Throws a 409 naming the holder and the reason.
 */
export function assertNotLocked(db: DbOrTx, appUuid: string, appSlug = "the app"): void {
  const lock = getLock(db, appUuid);
  if (lock) throw new LockedError(appSlug, lock);
}

/** Takes the lock; taking a lock you already hold updates its reason. Someone else's lock is a 409. */
export function lockApp(
  db: DbOrTx,
  input: { appUuid: string; appSlug: string; actor: Actor; reason: string },
): LockView {
  const reason = input.reason.slice(0, MAX_LOCK_REASON);
  return db.transaction((t) => {
    const existing = getLock(t, input.appUuid);
    if (existing && existing.holderUuid !== input.actor.uuid) throw new LockedError(input.appSlug, existing);
    const appId = appRowId(t, input.appUuid);
    t.insert(locks)
      .values({ uuid: randomUUID(), appId, heldBy: input.actor.id, reason })
      .onConflictDoUpdate({ target: locks.appId, set: { reason } })
      .run();
    const lock = getLock(t, input.appUuid);
    if (!lock) throw new Error("lock vanished after insert");
    return lock;
  });
}

/**
 * Releases the lock. Only its holder may, unless `breakOthers` (admins): the caller decides who that is and
 * audits it. Returns the lock that was released, or undefined when the app was not locked.
 */
export function unlockApp(
  db: DbOrTx,
  input: { appUuid: string; appSlug: string; actor: Actor; breakOthers: boolean },
): LockView | undefined {
  return db.transaction((t) => {
    const existing = getLock(t, input.appUuid);
    if (!existing) return undefined;
    if (existing.holderUuid !== input.actor.uuid && !input.breakOthers) {
      throw new DomainError(
        403,
        "forbidden",
        `${input.appSlug} is locked by ${existing.holderLabel}; only they or an admin can unlock it`,
      );
    }
    t.delete(locks)
      .where(eq(locks.appId, appRowId(t, input.appUuid)))
      .run();
    return existing;
  });
}
