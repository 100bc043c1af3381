import type { Job } from "bullmq";
import { and, asc, eq, isNotNull, isNull } from "drizzle-orm";
import { z } from "zod";
import { deployCommand } from "../../commands/deploy.ts";
import type { Db } from "../db/client.ts";
import { apps, auditEvents, webhookDeliveries } from "../db/schema.ts";
import { recordAudit } from "../domain/audit.ts";
import { DomainError } from "../domain/errors.ts";
import { getLock } from "../domain/locks.ts";
import { refSchema } from "../domain/validation.ts";
import { markDeliveryIgnored } from "../domain/webhook-deliveries.ts";
import type { Logger } from "../log.ts";
import { type JobPayloads, type JobQueue, QUEUE_NAMES } from "./queues.ts";
import type { WorkerPool } from "./worker-pool.ts";

/** A push not deployed because the app is locked; `reason` is the lock's reason ("" when none was given). */
export interface PushRefusal {
  appUuid: string;
  appSlug: string;
  reason: string;
  lockedBy: string;
  commitSha: string;
  author: string | undefined;
}

export interface PushWorkerDeps {
  db: Db;
  queue: JobQueue;
  log: Logger;
  /** Called once per (delivery, app) refusal, never again on a retried job; must not throw (e.g. a Slack notice). */
  onRefused?: ((info: PushRefusal) => void) | undefined;
}

/** What one push delivery became; also the job's return value (visible in BullMQ, public ids only). */
export type PushResult =
  | { kind: "ignored"; reason: string }
  | { kind: "processed"; deployments: string[]; refused: string[] };

const ZERO_SHA = "0".repeat(40);
const SKIP_MARKER = /\[(skip deploy|deploy skip)\]/i;
const MAX_MESSAGE = 2_000;
const MAX_AUTHOR = 200;

/** The fields the mapping reads; lenient about the rest (the stored payload may be trimmed by the route). */
const storedPushSchema = z.object({
  ref: z.string(),
  after: z.string().regex(/^[0-9a-f]{40}$/),
  deleted: z.boolean().optional(),
  forced: z.boolean().optional(),
  repository: z.object({ full_name: z.string() }),
  head_commit: z
    .object({
      message: z.string(),
      author: z.object({ name: z.string().optional(), username: z.string().optional() }).optional(),
    })
    .nullable()
    .optional(),
  pusher: z.object({ name: z.string().optional() }).optional(),
});
type StoredPush = z.infer<typeof storedPushSchema>;

export function registerPushWorker(pool: WorkerPool, deps: PushWorkerDeps): void {
  pool.add<JobPayloads["github-push"], PushResult>(QUEUE_NAMES.githubPush, (job: Job<JobPayloads["github-push"]>) =>
    processPushDelivery(deps, job.data.deliveryUuid),
  );
}

/**
 * Maps one recorded push delivery to deployments. Safe to run twice (a stalled job): each (app, delivery) pair
 * yields at most one deployment (unique index, see commands/deploy.ts), and a lock refusal is audited once.
 */
export async function processPushDelivery(deps: PushWorkerDeps, deliveryUuid: string): Promise<PushResult> {
  const row = deps.db
    .select({
      deliveryId: webhookDeliveries.deliveryId,
      status: webhookDeliveries.status,
      payload: webhookDeliveries.payload,
    })
    .from(webhookDeliveries)
    .where(eq(webhookDeliveries.uuid, deliveryUuid))
    .get();
  const log = deps.log.child({ deliveryUuid, githubDelivery: row?.deliveryId });
  if (!row) {
    log.warn("push job for an unknown delivery; nothing to do");
    return { kind: "ignored", reason: "unknown delivery" };
  }
  const parsed = storedPushSchema.safeParse(row.payload);
  if (!parsed.success) return ignore(deps, log, deliveryUuid, "malformed stored payload");
  const push = parsed.data;

  const target = targetOf(push);
  if (typeof target === "string") return ignore(deps, log, deliveryUuid, target);
  const message = push.head_commit?.message ?? null;
  if (message !== null && SKIP_MARKER.test(message)) return ignore(deps, log, deliveryUuid, "skip marker in commit");

  const candidates = appsFollowing(deps.db, push.repository.full_name, target);
  if (candidates.length === 0) return ignore(deps, log, deliveryUuid, `no app follows ${target.kind} ${target.name}`);

  const author = (push.pusher?.name ?? push.head_commit?.author?.username ?? push.head_commit?.author?.name)?.slice(
    0,
    MAX_AUTHOR,
  );
  const deployments: string[] = [];
  const refused: string[] = [];
  for (const app of candidates) {
    const appLog = log.child({ appId: app.uuid, app: app.slug });
    const lock = getLock(deps.db, app.uuid);
    if (lock) {
      const first = auditRefusalOnce(deps.db, app, row.deliveryId, {
        ref: target.name,
        commit: push.after,
        lockedBy: lock.holderLabel,
      });
      if (first) {
        deps.onRefused?.({
          appUuid: app.uuid,
          appSlug: app.slug,
          reason: lock.reason,
          lockedBy: lock.holderLabel,
          commitSha: push.after,
          author,
        });
      }
      appLog.warn({ lockedBy: lock.holderLabel, commit: push.after }, "deploy refused: locked");
      refused.push(app.slug);
      continue;
    }
    try {
      const result = await deployCommand(
        { db: deps.db, queue: deps.queue, log: appLog },
        {
          app: app.slug,
          ref: target.name,
          trigger: "push",
          commitSha: push.after,
          commitMessage: message?.slice(0, MAX_MESSAGE),
          author,
          githubDeliveryId: row.deliveryId,
        },
      );
      deployments.push(result.deployment.uuid);
      appLog.info(
        {
          deploymentId: result.deployment.uuid,
          commit: push.after,
          forced: push.forced === true,
          replay: !!result.duplicate,
        },
        result.duplicate ? "push already mapped to this deployment" : "push mapped to a deployment",
      );
    } catch (err) {
      // A domain refusal (app destroyed meanwhile, invalid ref) concerns this app only; infrastructure errors
      // (Redis) propagate so BullMQ retries the whole delivery, which the per-app idempotency makes safe.
      if (!(err instanceof DomainError)) throw err;
      appLog.warn({ err: err.message }, "push not deployed");
    }
  }
  deps.db.update(webhookDeliveries).set({ status: "processed" }).where(eq(webhookDeliveries.uuid, deliveryUuid)).run();
  log.info({ deployments, refused }, "push delivery processed");
  return { kind: "processed", deployments, refused };
}

type Target = { kind: "branch" | "tag"; name: string };

/** The branch or tag a push deploys, or why it deploys nothing. */
function targetOf(push: StoredPush): Target | string {
  if (push.deleted === true || push.after === ZERO_SHA) return "ref deleted";
  const match = /^refs\/(heads|tags)\/(.+)$/.exec(push.ref);
  if (!match?.[2]) return "not a branch or tag";
  if (!refSchema.safeParse(match[2]).success) return "unsupported ref name";
  return { kind: match[1] === "tags" ? "tag" : "branch", name: match[2] };
}

interface FollowingApp {
  uuid: string;
  slug: string;
}

/** Live apps of `repo` that follow the branch, or that opted in to the tag by pattern; oldest first. */
function appsFollowing(db: Db, repo: string, target: Target): FollowingApp[] {
  const live = and(eq(apps.githubRepo, repo), isNull(apps.destroyedAt));
  const order = [asc(apps.createdAt), asc(apps.id)] as const;
  if (target.kind === "branch") {
    return db
      .select({ uuid: apps.uuid, slug: apps.slug })
      .from(apps)
      .where(and(live, eq(apps.branch, target.name)))
      .orderBy(...order)
      .all();
  }
  return db
    .select({ uuid: apps.uuid, slug: apps.slug, pattern: apps.deployTagPattern })
    .from(apps)
    .where(and(live, isNotNull(apps.deployTagPattern)))
    .orderBy(...order)
    .all()
    .filter((a) => a.pattern !== null && tagMatches(a.pattern, target.name))
    .map(({ uuid, slug }) => ({ uuid, slug }));
}

/**
 * Glob match for tag opt-ins: `*` any run of characters, `?` one character, everything else literal. A two-pointer
 * matcher (backtracking only to the last `*`), so a tenant's pattern like `*a*a*a*…` cannot make the push worker
 * backtrack exponentially the way a translated RegExp could.
 */
export function tagMatches(pattern: string, tag: string): boolean {
  if (pattern.length > 200 || tag.length > 255) return false;
  let p = 0;
  let t = 0;
  let star = -1;
  let resume = 0;
  while (t < tag.length) {
    if (p < pattern.length && (pattern[p] === "?" || pattern[p] === tag[t])) {
      p++;
      t++;
    } else if (p < pattern.length && pattern[p] === "*") {
      star = p++;
      resume = t;
    } else if (star >= 0) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === "*") p++;
  return p === pattern.length;
}

function auditRefusalOnce(
  db: Db,
  app: FollowingApp,
  deliveryId: string,
  details: { ref: string; commit: string; lockedBy: string },
): boolean {
  return db.transaction((tx) => {
    const t = tx as unknown as Db;
    const seen = t
      .select({ id: auditEvents.id })
      .from(auditEvents)
      .innerJoin(apps, eq(apps.id, auditEvents.appId))
      .where(and(eq(apps.uuid, app.uuid), eq(auditEvents.correlationId, deliveryId), eq(auditEvents.action, "deploy")))
      .get();
    if (seen) return false;
    recordAudit(t, {
      action: "deploy",
      outcome: "denied",
      actorLabel: "github",
      appUuid: app.uuid,
      details: { reason: "deploy refused: locked", trigger: "push", ...details },
      correlationId: deliveryId,
    });
    return true;
  });
}

function ignore(deps: PushWorkerDeps, log: Logger, deliveryUuid: string, reason: string): PushResult {
  markDeliveryIgnored(deps.db, deliveryUuid);
  log.info({ reason }, "push delivery ignored");
  return { kind: "ignored", reason };
}
