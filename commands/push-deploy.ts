import { z } from "zod";
import type { Db } from "../src/db/client.ts";
import { DomainError } from "../src/domain/errors.ts";
import { appsVersion, type FollowingApp, verifiedAppsFollowing } from "../src/domain/github-links.ts";
import { getLock } from "../src/domain/locks.ts";
import { refSchema } from "../src/domain/validation.ts";
import {
  auditPushRefusalOnce,
  findDelivery,
  markDeliveryIgnored,
  markDeliveryProcessed,
  recordHeadCheck,
} from "../src/domain/webhook-deliveries.ts";
import { type GithubApi, GithubApiError } from "../src/infra/github-api.ts";
import type { Logger } from "../src/log.ts";
import type { PushRefusal, PushResult } from "../src/pipeline/push-worker.ts";
import type { JobQueue } from "../src/pipeline/queues.ts";
import { deployCommand } from "./deploy.ts";

export interface PushDeployDeps {
  db: Db;
  queue: JobQueue;
  log: Logger;
  /** With API credentials: `after` must still be the ref's head (a replayed old push must not roll back). */
  github?: GithubApi | undefined;
  /** Called once per (delivery, app) refusal, never again on a retried job; must not throw (e.g. a Slack notice). */
  onRefused?: ((info: PushRefusal) => void) | undefined;
}

const ZERO_SHA = "0".repeat(40);
const SKIP_MARKER = /\[(skip deploy|deploy skip)\]/i;
const MAX_MESSAGE = 2_000;
const MAX_AUTHOR = 200;

/** The fields the mapping reads; lenient about the rest (the stored payload may be trimmed by the route). */
export const storedPushSchema = z.object({
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

/**
 * Maps one recorded push delivery to deployments of the apps whose link verified it (src/http/github-route.ts).
 * Safe to run twice (a stalled job): each (app, delivery) pair yields at most one deployment (unique index, see
 * commands/deploy.ts), and a lock refusal is audited once.
 */
export async function processPushDelivery(deps: PushDeployDeps, deliveryUuid: string): Promise<PushResult> {
  const row = findDelivery(deps.db, deliveryUuid);
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

  const candidates = verifiedAppsFollowing(deps.db, row.appUuids, target, tagMatches);
  if (candidates.length === 0) return ignore(deps, log, deliveryUuid, `no app follows ${target.kind} ${target.name}`);

  const head = await checkHead(deps, log, deliveryUuid, push, candidates);
  if (head !== "current" && head !== "not-checked") {
    for (const app of candidates) {
      auditPushRefusalOnce(deps.db, app.uuid, row.deliveryId, {
        reason: head,
        ref: target.name,
        commit: push.after,
      });
    }
    return ignore(deps, log, deliveryUuid, head);
  }

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
      const first = auditPushRefusalOnce(deps.db, app.uuid, row.deliveryId, {
        reason: "deploy refused: locked",
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
          headCheck: head,
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
  markDeliveryProcessed(deps.db, deliveryUuid);
  // Debug: each deployment and refusal has its own line above; this one per delivery only adds volume.
  log.debug({ deployments, refused }, "push delivery processed");
  return { kind: "processed", deployments, refused };
}

type Target = { kind: "branch" | "tag"; name: string };

/** The branch or tag a push deploys, or why it deploys nothing. */
function targetOf(push: StoredPush): Target | string {
  if (push.deleted === true) return "ref deleted";
  return refTarget(push.ref, push.after);
}

function refTarget(ref: string, after: string): Target | string {
  if (after === ZERO_SHA) return "ref deleted";
  const match = /^refs\/(heads|tags)\/(.+)$/.exec(ref);
  if (!match?.[2]) return "not a branch or tag";
  if (!refSchema.safeParse(match[2]).success) return "unsupported ref name";
  return { kind: match[1] === "tags" ? "tag" : "branch", name: match[2] };
}

/** A recorded push as the outbox relay reads it: the columns the route stored from the verified body. */
export interface RecordedPush {
  ref: string | null;
  headCommit: string | null;
  /** `app_uuids` as stored: JSON text of the apps whose link verified the delivery. */
  appUuidsJson: string;
}

/**
 * Splits recorded pushes into those that need the push job and those it would only mark ignored: pushes of a ref
 * that no app the delivery verified follows (feature branches, mostly), or of no branch or tag at all. Decided from
 * the columns the route recorded, in a bounded number of queries per batch (one per distinct apps × ref), with no
 * payload parse and no Redis round trip; the job parsed the whole payload and took four Redis round trips to reach
 * the same "ignored" (bench/RESULTS.md). Never ignores a push the job would deploy: whatever it cannot decide from
 * the columns (a missing column, unreadable app list, a following app) goes to the job, which decides everything
 * again from the full payload.
 */
export function triageRecordedPushes<T extends RecordedPush>(
  db: Db,
  rows: readonly T[],
): { enqueue: T[]; ignore: T[] } {
  const decide = batchDecider(db);
  const enqueue: T[] = [];
  const ignore: T[] = [];
  for (const row of rows) {
    let appUuids: unknown;
    try {
      appUuids = JSON.parse(row.appUuidsJson);
    } catch {
      appUuids = undefined;
    }
    (decide(row.ref, row.headCommit, appUuids, row.appUuidsJson) ? enqueue : ignore).push(row);
  }
  return { enqueue, ignore };
}

/**
 * The same decision for the pushes the webhook route is about to record (handlers/github-push.ts), asked once per
 * batch when it is written: `false` for a push the job would only ignore, which is then recorded `ignored` in its
 * insert. Decisions are kept across batches by (ref, deletion or not, apps) until `apps` may have changed, read
 * afresh for every batch (src/domain/github-links.ts `appsVersion`): a burst on one branch costs one query, not one
 * per batch (3 % of the route's CPU on the webhook bench, bench/RESULTS.md). Only a fresh reading will do: a cached
 * `false` must not outlive a change that makes the app follow the ref, or that push would never deploy (a stale
 * `true` only costs the relay and the job a look).
 */
export function cachedPushesNeedingJob(
  db: Db,
): (pushes: ReadonlyArray<{ ref: string; headCommit: string; appUuids: readonly string[] }>) => boolean[] {
  const version = appsVersion(db, { everyCall: true });
  const decided = new Map<string, boolean>();
  const decide = batchDecider(db, decided);
  let seen = -1;
  return (pushes) => {
    const now = version();
    if (now !== seen || decided.size >= 1_000) {
      decided.clear();
      seen = now;
    }
    return pushes.map((p) => decide(p.ref, p.headCommit, p.appUuids, p.appUuids.join(",")));
  };
}

/**
 * Decisions cached by (ref, after, apps) in `decided` (one batch's by default): a batch of one busy branch costs one
 * query. Of `after` only what needsPushJob reads counts: missing, a deletion, or any other commit.
 */
function batchDecider(db: Db, decided = new Map<string, boolean>()) {
  return (ref: string | null, after: string | null, appUuids: unknown, appsKey: string): boolean => {
    const key = `${ref}\n${after === null ? "none" : after === ZERO_SHA ? "deleted" : "commit"}\n${appsKey}`;
    let needsJob = decided.get(key);
    if (needsJob === undefined) {
      needsJob = needsPushJob(db, ref, after, appUuids);
      decided.set(key, needsJob);
    }
    return needsJob;
  };
}

function needsPushJob(db: Db, ref: string | null, after: string | null, appUuids: unknown): boolean {
  if (ref === null || after === null) return true;
  if (!Array.isArray(appUuids) || !appUuids.every((u) => typeof u === "string")) return true;
  const target = refTarget(ref, after);
  if (typeof target === "string") return false;
  return verifiedAppsFollowing(db, appUuids, target, tagMatches).length > 0;
}

/**
 * Is `after` still what `ref` points to at GitHub? Asked of the repository under its linked name (the route
 * updated it on a rename). A ref that is gone, or points elsewhere, means an old or replayed push: it must not
 * deploy. GitHub unreachable after the client's bounded retries → throw, so the job is retried; any other API
 * refusal fails closed. Without credentials nothing can be asked: recorded as `not-checked`.
 */
async function checkHead(
  deps: PushDeployDeps,
  log: Logger,
  deliveryUuid: string,
  push: StoredPush,
  apps: FollowingApp[],
): Promise<"current" | "not-checked" | string> {
  if (deps.github === undefined) {
    recordHeadCheck(deps.db, deliveryUuid, "not-checked");
    // Recorded in the delivery's head_check column; a line per push would only repeat the configuration.
    log.debug("push head not checked: no GitHub API credentials");
    return "not-checked";
  }
  const [owner, repo] = (apps[0]?.repo ?? push.repository.full_name).split("/");
  let head: string | undefined;
  try {
    head = await deps.github.refHead(owner ?? "", repo ?? "", push.ref.replace(/^refs\//, ""));
  } catch (err) {
    if (err instanceof GithubApiError && err.retryable) throw err;
    log.warn({ err: err instanceof Error ? err.message : String(err) }, "push head check refused by GitHub");
    recordHeadCheck(deps.db, deliveryUuid, "stale");
    return "stale push refused: the head of the ref could not be checked";
  }
  if (head === push.after) {
    recordHeadCheck(deps.db, deliveryUuid, "current");
    return "current";
  }
  recordHeadCheck(deps.db, deliveryUuid, "stale");
  log.warn({ commit: push.after, head }, "stale push: after is not the head of the ref");
  return "stale push: after is not the current head of the ref";
}

/**
 * Glob match for tag opt-ins: `*` any run of characters, `?` one character, everything else literal. A two-pointer
 * matcher (backtracking only to the last `*`), so a tenant's pattern like `*a*a*a*…` cannot make the push mapping
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

function ignore(deps: PushDeployDeps, log: Logger, deliveryUuid: string, reason: string): PushResult {
  markDeliveryIgnored(deps.db, deliveryUuid);
  // Most pushes are of branches nothing follows: one info line each flooded the log (bench/RESULTS.md).
  log.debug({ reason }, "push delivery ignored");
  return { kind: "ignored", reason };
}
