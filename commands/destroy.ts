import { type AppView, getAppBySlug, markAppDestroyed } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import { assertNotLocked } from "../src/domain/locks.ts";
import { type Actor, authorize } from "../src/domain/users.ts";
import { QUEUE_NAMES } from "../src/pipeline/queues.ts";
import type { ChatOpsDeps } from "./deps.ts";
import { type Gated, gate } from "./gate.ts";

/** Admins only; production apps need an approval first (src/domain/approvals.ts). A locked app is not destroyed. */
export async function destroyCommand(
  deps: ChatOpsDeps,
  input: { app: string; actor: Actor; correlationId?: string | undefined },
): Promise<Gated<{ app: AppView }>> {
  const app = getAppBySlug(deps.db, input.app);
  authorize(deps.db, {
    actor: input.actor,
    app,
    needed: "admin",
    action: "destroy",
    correlationId: input.correlationId,
  });
  assertNotLocked(deps.db, app.uuid, app.slug);
  return gate(
    deps,
    { app, actor: input.actor, correlationId: input.correlationId, action: { kind: "destroy", app: app.uuid } },
    async () => {
      await applyDestroy(deps, { app, actor: input.actor, correlationId: input.correlationId });
      return { app };
    },
  );
}

/**
 * Marks the app destroyed (its slug and domain stay reserved), then enqueues a reconcile pass, which removes the
 * containers and the route of apps that are no longer live. The handler never touches podman or Caddy itself.
 * The lock is checked here, not only by the command: an approval runs this much later, and a lock taken in
 * between must still win.
 */
export async function applyDestroy(
  deps: Pick<ChatOpsDeps, "db" | "queue" | "log">,
  input: { app: AppView; actor: Actor; correlationId?: string | undefined },
): Promise<void> {
  assertNotLocked(deps.db, input.app.uuid, input.app.slug);
  markAppDestroyed(deps.db, input.app.uuid);
  await deps.queue.enqueue(QUEUE_NAMES.reconcile, { reason: "destroy" }, `reconcile-destroy-${input.app.uuid}`);
  recordAudit(deps.db, {
    action: "destroy",
    outcome: "succeeded",
    actor: input.actor,
    appUuid: input.app.uuid,
    correlationId: input.correlationId,
  });
  deps.log.info({ appId: input.app.uuid }, "app destroyed; teardown enqueued");
}
