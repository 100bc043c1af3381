import { randomUUID } from "node:crypto";
import { type AppView, getAppBySlug, getAppByUuid, setAppFormation } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import { invalidError } from "../src/domain/errors.ts";
import {
  describeCounts,
  type Formation,
  parseScaleArgs,
  releaseCommands,
  replicasOf,
} from "../src/domain/formation.ts";
import { assertNotLocked } from "../src/domain/locks.ts";
import { currentRelease, type ReleaseView } from "../src/domain/releases.ts";
import { type ScaleOutcome, scaleOutcome } from "../src/domain/scale-outcomes.ts";
import { privateRedisApps } from "../src/domain/tenant-databases.ts";
import { assertWithinQuota, type TenantQuota, tenantUsage } from "../src/domain/tenant-quota.ts";
import { type Actor, authorize } from "../src/domain/users.ts";
import { QUEUE_NAMES } from "../src/pipeline/queues.ts";
import type { ChatOpsDeps, CommandDeps } from "./deps.ts";
import { type Gated, gate } from "./gate.ts";

/**
 * `scale <app> web=3 worker=2` (docs/python-apps.md, "Scale"): the new counts are checked against the current
 * release's process types and the tenant's quota, recorded (apps.formation), audited, and applied at once by a
 * `scale` job (commands/scale-job.ts → src/pipeline/app-restore.ts): no rebuild, no redeploy; missing containers
 * start (web ones health-checked, then routed), extra ones stop after the route no longer sends them anything.
 * Later deployments run the same formation. Without counts, `scale <app>` shows the formation.
 */

export interface ScaleDeps extends CommandDeps {
  /** The tenant-wide cap (TUSSILAGO_TENANT_MAX_*); unset → none. */
  tenantQuota?: TenantQuota | undefined;
  /** Opens REDIS_URLs to count private Redis servers against the quota; without it they are not counted. */
  secrets?: ChatOpsDeps["secrets"] | undefined;
}

export interface FormationView {
  app: string;
  /** The current release, when there is one. */
  release: string | null;
  /** Containers per process type of the current release (web first); `web` alone without a release. */
  formation: Array<{ type: string; count: number }>;
}

export interface ScaleResult extends FormationView {
  /** The request's public id: the job's, and the key of its outcome (`scaleStatus`). */
  request: string;
  /** Only the types whose count changed, before → after. */
  changes: Array<{ type: string; from: number; to: number }>;
  /** False when there is no release yet: the formation is recorded and the first deployment starts it. */
  applying: boolean;
}

function typesOf(release: ReleaseView | undefined): string[] {
  return release === undefined ? ["web"] : releaseCommands(release).map((c) => c.type);
}

function view(app: AppView, release: ReleaseView | undefined, formation: Formation | null): FormationView {
  return {
    app: app.slug,
    release: release === undefined ? null : `v${release.version}`,
    formation: typesOf(release).map((type) => ({ type, count: replicasOf(formation, type) })),
  };
}

/** `scale <app>`: the formation of the current release's process types. */
export function showFormation(deps: Pick<CommandDeps, "db">, input: { app: string }): FormationView {
  const app = getAppBySlug(deps.db, input.app);
  return view(app, currentRelease(deps.db, app.uuid), app.formation);
}

/**
 * The formation after `counts`, checked: every type must be one the current release declares (the message lists
 * those on offer), and the tenant must stay within its quota. Nothing is stored here.
 */
export function planScale(
  deps: ScaleDeps,
  app: AppView,
  counts: Readonly<Record<string, number>>,
): { release: ReleaseView | undefined; next: Record<string, number>; changes: ScaleResult["changes"] } {
  const release = currentRelease(deps.db, app.uuid);
  const offered = typesOf(release);
  const unknown = Object.keys(counts).filter((t) => !offered.includes(t));
  if (unknown.length > 0) {
    const which =
      release === undefined ? `${app.slug} has no release yet` : `release v${release.version} of ${app.slug}`;
    throw invalidError(
      `${which} declares no process type ${unknown.join(", ")}; types on offer: ${offered.join(", ")}`,
    );
  }
  const next = { ...(app.formation ?? {}), ...counts };
  const changes = Object.entries(counts)
    .map(([type, to]) => ({ type, from: replicasOf(app.formation, type), to }))
    .filter((c) => c.from !== c.to);
  // Only growth can break the quota: scaling down stays allowed even when the tenant is over it (a lowered cap).
  if (changes.some((c) => c.to > c.from)) {
    const privateRedis = deps.secrets
      ? new Set(privateRedisApps({ db: deps.db, secrets: deps.secrets }).map((r) => r.appUuid))
      : undefined;
    const usage = tenantUsage(deps.db, app.tenantUuid, {
      ...(privateRedis ? { privateRedis } : {}),
      change: { appUuid: app.uuid, formation: next },
    });
    assertWithinQuota(usage, deps.tenantQuota);
  }
  return { release, next, changes };
}

/**
 * Records the new formation, audits it, and enqueues the job that applies it. `who` says who asked (a Slack user,
 * or `actorLabel` "cli" / "api:<name>"); `responseUrl` is where a Slack request's outcome goes.
 */
export async function applyScale(
  deps: ScaleDeps,
  input: {
    app: AppView;
    counts: Readonly<Record<string, number>>;
    actor?: Actor | undefined;
    actorLabel?: string | undefined;
    correlationId?: string | undefined;
    responseUrl?: string | undefined;
  },
): Promise<ScaleResult> {
  const request = randomUUID();
  const who = input.actor === undefined ? { actorLabel: input.actorLabel ?? "cli" } : { actor: input.actor };
  // Checked and written in one IMMEDIATE transaction, from the app as it is now (not the view the caller read): two
  // scales at once (the CLI is another process) neither lose each other's counts nor pass the quota on the same
  // reading. A failed check throws out of it and writes nothing.
  const { app, release, next, changes } = deps.db.transaction(
    (tx) => {
      const app = getAppByUuid(tx, input.app.uuid);
      const plan = planScale(deps, app, input.counts);
      setAppFormation(tx, app.uuid, plan.next);
      recordAudit(tx, {
        ...who,
        action: "scale",
        outcome: "succeeded",
        appUuid: app.uuid,
        details: { request, formation: plan.next, changes: plan.changes },
        correlationId: input.correlationId,
      });
      return { app, ...plan };
    },
    { behavior: "immediate" },
  );
  deps.log.info({ appId: app.uuid, formation: next, request }, "formation recorded");
  const applying = release !== undefined;
  if (applying) {
    await deps.queue.enqueue(QUEUE_NAMES.scale, {
      appUuid: app.uuid,
      requestUuid: request,
      ...(input.responseUrl !== undefined ? { responseUrl: input.responseUrl } : {}),
      requester: input.actor?.label ?? input.actorLabel ?? "cli",
      correlationId: input.correlationId ?? request,
    });
  }
  return { ...view(app, release, next), request, changes, applying };
}

/** The CLI on the bot's host and the operator API: not gated by approval policies (commands/operator.ts). */
export function operatorScale(
  deps: ScaleDeps,
  input: { app: string; args: readonly string[]; actorLabel: string; correlationId?: string | undefined },
): Promise<ScaleResult> {
  const counts = parseScaleArgs(input.args);
  const app = getAppBySlug(deps.db, input.app);
  return applyScale(deps, { app, counts, actorLabel: input.actorLabel, correlationId: input.correlationId });
}

/** What `scale` binds a Slack requester's response_url to: it opens for this app's scale only. */
export function scaleUrlBinding(appUuid: string): string {
  return `scale-response-url:${appUuid}`;
}

/**
 * `/tussilago scale <app> web=2`: role deployer, refused while the app is locked, gated by the policy action
 * `scale`. The counts and quota are checked before a request is recorded, so an approver never approves the
 * impossible (and they are checked again when it is applied).
 */
export async function scaleAsActor(
  deps: ChatOpsDeps & ScaleDeps,
  input: {
    app: string;
    args: readonly string[];
    actor: Actor;
    correlationId?: string | undefined;
    responseUrl?: string | undefined;
  },
): Promise<Gated<ScaleResult>> {
  const counts = parseScaleArgs(input.args);
  const app = getAppBySlug(deps.db, input.app);
  authorize(deps.db, {
    actor: input.actor,
    app,
    needed: "deployer",
    action: "scale",
    correlationId: input.correlationId,
  });
  assertNotLocked(deps.db, app.uuid, app.slug);
  planScale(deps, app, counts);
  const action = {
    kind: "scale",
    app: app.uuid,
    counts,
    ...(input.responseUrl !== undefined
      ? { responseUrlSealed: deps.secrets.seal(input.responseUrl, scaleUrlBinding(app.uuid)) }
      : {}),
  } as const;
  return gate(deps, { app, action, actor: input.actor, correlationId: input.correlationId }, () =>
    applyScale(deps, {
      app,
      counts,
      actor: input.actor,
      correlationId: input.correlationId,
      responseUrl: input.responseUrl,
    }),
  );
}

export type ScaleStatus =
  | { state: "waiting" }
  | { state: "succeeded" | "failed"; message: string; details: Record<string, unknown> };

/** Where a scale request stands: waiting for its job, or what the job did (its audit row). */
export function scaleStatus(deps: Pick<CommandDeps, "db">, input: { app: string; request: string }): ScaleStatus {
  const app = getAppBySlug(deps.db, input.app);
  const outcome: ScaleOutcome | undefined = scaleOutcome(deps.db, app.uuid, input.request);
  if (outcome === undefined) return { state: "waiting" };
  const message = typeof outcome.details.message === "string" ? outcome.details.message : "";
  return {
    state: outcome.outcome === "succeeded" ? "succeeded" : "failed",
    message,
    details: outcome.details,
  };
}

/** "web 2 → 3, worker 1 → 0" */
export function describeChanges(changes: ScaleResult["changes"]): string {
  return changes.length === 0 ? "no change" : changes.map((c) => `${c.type} ${c.from} → ${c.to}`).join(", ");
}

/** "web ×2, worker ×1" of a formation view. */
export function describeFormation(formation: FormationView["formation"]): string {
  return describeCounts(Object.fromEntries(formation.map((f) => [f.type, f.count])));
}
