import { getAppBySlug } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import { getLock, type LockView, lockApp, unlockApp } from "../src/domain/locks.ts";
import { type Actor, authorize, roleAtLeast, roleIn } from "../src/domain/users.ts";
import type { ChatOpsDeps } from "./deps.ts";

type Deps = Pick<ChatOpsDeps, "db" | "log">;

export function lockCommand(
  deps: Deps,
  input: { app: string; actor: Actor; reason: string; correlationId?: string | undefined },
): LockView {
  const app = getAppBySlug(deps.db, input.app);
  authorize(deps.db, {
    actor: input.actor,
    app,
    needed: "deployer",
    action: "lock",
    correlationId: input.correlationId,
  });
  const lock = lockApp(deps.db, { appUuid: app.uuid, appSlug: app.slug, actor: input.actor, reason: input.reason });
  recordAudit(deps.db, {
    action: "lock",
    outcome: "succeeded",
    actor: input.actor,
    appUuid: app.uuid,
    details: { reason: lock.reason },
    correlationId: input.correlationId,
  });
  deps.log.info({ appId: app.uuid, actorId: input.actor.uuid }, "app locked");
  return lock;
}

export interface UnlockResult {
  released: LockView | undefined;
  /** True when an admin released someone else's lock. */
  broken: boolean;
}

/** The holder unlocks; an admin may break anyone's lock, which is audited as `lock.break`. */
export function unlockCommand(
  deps: Deps,
  input: { app: string; actor: Actor; correlationId?: string | undefined },
): UnlockResult {
  const app = getAppBySlug(deps.db, input.app);
  authorize(deps.db, {
    actor: input.actor,
    app,
    needed: "deployer",
    action: "unlock",
    correlationId: input.correlationId,
  });
  const before = getLock(deps.db, app.uuid);
  const isAdmin = roleAtLeast(roleIn(deps.db, input.actor, app.tenantSlug), "admin");
  const broken = before !== undefined && before.holderUuid !== input.actor.uuid;
  try {
    const released = unlockApp(deps.db, {
      appUuid: app.uuid,
      appSlug: app.slug,
      actor: input.actor,
      breakOthers: isAdmin,
    });
    if (released) {
      recordAudit(deps.db, {
        action: broken ? "lock.break" : "unlock",
        outcome: "succeeded",
        actor: input.actor,
        appUuid: app.uuid,
        details: { holder: released.holderUuid, reason: released.reason },
        correlationId: input.correlationId,
      });
      deps.log.info({ appId: app.uuid, actorId: input.actor.uuid, broken }, "app unlocked");
    }
    return { released, broken: released !== undefined && broken };
  } catch (err) {
    recordAudit(deps.db, {
      action: "lock.break",
      outcome: "denied",
      actor: input.actor,
      appUuid: app.uuid,
      correlationId: input.correlationId,
    });
    throw err;
  }
}
