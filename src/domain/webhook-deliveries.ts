import { randomUUID } from "node:crypto";
import { and, eq, sql } from "drizzle-orm";
import type { Db, DbOrTx } from "../db/client.ts";
import { apps, auditEvents, type HeadCheck, webhookDeliveries } from "../db/schema.ts";
import { recordAudit } from "./audit.ts";

export interface NewGithubDelivery {
  deliveryId: string;
  event: string;
  repository: string | null;
  ref: string | null;
  headCommit: string | null;
  payload: unknown;
  /** The apps whose link verified the delivery; the push worker deploys these and no others. */
  appUuids: string[];
}

export interface RecordedDelivery {
  uuid: string;
  /** False when GitHub redelivered a delivery id we had already recorded. */
  isNew: boolean;
  status: (typeof webhookDeliveries.$inferSelect)["status"];
  jobId: string | null;
}

/**
 * Records a delivery once per `X-GitHub-Delivery`. The unique index makes the insert the idempotency check, so
 * two concurrent redeliveries cannot both see "new".
 */
export function recordGithubDelivery(db: DbOrTx, delivery: NewGithubDelivery): RecordedDelivery {
  const inserted = db
    .insert(webhookDeliveries)
    .values({ uuid: randomUUID(), source: "github", ...delivery })
    .onConflictDoNothing()
    .returning({ uuid: webhookDeliveries.uuid, status: webhookDeliveries.status, jobId: webhookDeliveries.jobId })
    .get();
  if (inserted) return { ...inserted, isNew: true };
  const existing = db
    .select({ uuid: webhookDeliveries.uuid, status: webhookDeliveries.status, jobId: webhookDeliveries.jobId })
    .from(webhookDeliveries)
    .where(and(eq(webhookDeliveries.source, "github"), eq(webhookDeliveries.deliveryId, delivery.deliveryId)))
    .get();
  if (!existing) throw new Error("webhook delivery vanished between insert and select");
  return { ...existing, isNew: false };
}

/** A push as the webhook route records it: the few fields it checked, and what the push worker will read. */
export interface RawGithubPush {
  deliveryId: string;
  repository: string;
  ref: string;
  headCommit: string;
  /**
   * JSON text of the verified body's fields the push worker reads (handlers/github-push.ts `storedPushPayload`);
   * the worker parses it with its own schema (commands/push-deploy.ts). A function is called only for a push that is
   * recorded `received`: an ignored push stores no body, so the route does not build one for it.
   */
  storedPayload: string | (() => string);
  appUuids: readonly string[];
}

/** The payload column of a push recorded `ignored`: JSON `null` (the column is not nullable). */
const IGNORED_PAYLOAD = "null";

/** `received`: for the outbox relay to enqueue; `ignored`: nothing to do (the recorder's `needsJob` said so). */
export type RecordedStatus = "received" | "ignored";

export interface RecordedDeliveryRow {
  uuid: string;
  /** False when GitHub redelivered a delivery id already recorded. */
  isNew: boolean;
  status: RecordedStatus;
}

export type DeliveryRecorder = (push: RawGithubPush) => Promise<RecordedDeliveryRow>;

export interface DeliveryRecorderOptions {
  /**
   * Whether each push of a batch needs the push job. Those that do not are recorded `ignored` in the same insert,
   * without their body, so the relay never reads or rewrites them. Asked once per batch, when it is written (so a
   * change to the apps committed while its requests were handled is seen); if it throws, the whole batch is recorded
   * `received` and the relay and the job decide as usual.
   */
  needsJob?: (pushes: readonly RawGithubPush[]) => boolean[];
}

interface Waiting {
  push: RawGithubPush;
  resolve: (recorded: RecordedDeliveryRow) => void;
  reject: (err: unknown) => void;
}

/** The most deliveries a group commit waits for; past it the batch is written at the end of the turn. */
export const GROUP_COMMIT_ROWS = 24;

/**
 * The webhook route's hot path: one prepared `INSERT … ON CONFLICT DO NOTHING` per delivery (the unique index on
 * (source, delivery_id) is the dedupe; the row's uuid is chosen here, so no RETURNING), and a second lookup only
 * for a redelivery. Statements are prepared once per database handle; the payload is the route's projection of the
 * push (about 0.5 KB, not 7–30 KB). GitHub's delivery ids are version-1 UUIDs whose first group is the low bits of
 * a clock, so the deliveries of a burst sort next to each other and a group commit touches one or two leaf pages of
 * that index; random ids would dirty a page per delivery (about a fifth of the route's CPU on the bench, where the
 * `tussilago-random-ids` target measures that case: bench/RESULTS.md).
 *
 * Group commit: the deliveries recorded while requests keep arriving are written in one transaction, at the end of
 * the first turn of the event loop that added none (or once there are GROUP_COMMIT_ROWS), and each caller's promise
 * resolves once that transaction has committed, so every answer still follows its own durable record. A lone
 * delivery is written one turn of the event loop later than at the first check (microseconds: the pending check
 * keeps the loop from sleeping). Measured on the webhook bench (bench/RESULTS.md): a commit per request cost more than the
 * insert; a commit per turn made many commits of one or two rows when answers and new requests interleave, and
 * waiting while the batch grows took 4-6 µs off each request.
 */
export function prepareDeliveryRecorder(db: Db, options: DeliveryRecorderOptions = {}): DeliveryRecorder {
  const insert = db.$client.prepare<unknown[]>(
    `insert into webhook_deliveries (uuid, source, delivery_id, event, repository, ref, head_commit, payload, app_uuids, status)
     values (?, 'github', ?, 'push', ?, ?, ?, ?, ?, ?)
     on conflict (source, delivery_id) do nothing`,
  );
  const existing = db.$client.prepare<[string], { uuid: string; status: string }>(
    "select uuid, status from webhook_deliveries where source = 'github' and delivery_id = ?",
  );
  const recordOne = (push: RawGithubPush, status: RecordedStatus): RecordedDeliveryRow => {
    const uuid = timeOrderedUuid();
    const { changes } = insert.run(
      uuid,
      push.deliveryId,
      push.repository,
      push.ref,
      push.headCommit,
      // An ignored push keeps its columns (delivery id, ref, after, apps: enough to say why nothing deployed) but
      // not the body: nothing will read it, and writing 7–30 KB per delivery was the largest cost of the route.
      status === "ignored"
        ? IGNORED_PAYLOAD
        : typeof push.storedPayload === "string"
          ? push.storedPayload
          : push.storedPayload(),
      JSON.stringify(push.appUuids),
      status,
    );
    if (changes === 1) return { uuid, isNew: true, status };
    // A redelivery; also the second of two copies within one batch, which sees the first's uncommitted row.
    const found = existing.get(push.deliveryId);
    if (!found) throw new Error("webhook delivery vanished between insert and select");
    return { uuid: found.uuid, isNew: false, status: found.status === "ignored" ? "ignored" : "received" };
  };
  const statusesOf = (batch: readonly Waiting[]): RecordedStatus[] => {
    const received = (): RecordedStatus[] => batch.map(() => "received");
    if (!options.needsJob) return received();
    try {
      const needs = options.needsJob(batch.map((w) => w.push));
      return batch.map((_, i) => (needs[i] === false ? "ignored" : "received"));
    } catch {
      return received();
    }
  };
  const recordAll = db.$client.transaction((batch: readonly Waiting[], statuses: readonly RecordedStatus[]) =>
    batch.map((w, i) => recordOne(w.push, statuses[i] ?? "received")),
  );
  let batch: Waiting[] = [];
  const flush = () => {
    const current = batch;
    batch = [];
    const statuses = statusesOf(current);
    let results: RecordedDeliveryRow[];
    try {
      results = recordAll(current, statuses);
    } catch {
      // The transaction rolled back; one failing row must not fail the others: record them one by one.
      for (const [i, w] of current.entries()) {
        try {
          w.resolve(recordOne(w.push, statuses[i] ?? "received"));
        } catch (err) {
          w.reject(err);
        }
      }
      return;
    }
    current.forEach((w, i) => {
      const result = results[i];
      if (result) w.resolve(result);
      else w.reject(new Error("delivery batch returned fewer rows than it was given"));
    });
  };
  // The batch is written at the end of the first turn in which it did not grow (or once it holds GROUP_COMMIT_ROWS):
  // while requests keep arriving, each turn's are added to it first.
  let sizeAtLastTurn = 0;
  const flushWhenSettled = () => {
    if (batch.length > sizeAtLastTurn && batch.length < GROUP_COMMIT_ROWS) {
      sizeAtLastTurn = batch.length;
      setImmediate(flushWhenSettled);
      return;
    }
    sizeAtLastTurn = 0;
    flush();
  };
  return (push) =>
    new Promise((resolve, reject) => {
      batch.push({ push, resolve, reject });
      if (batch.length === 1) setImmediate(flushWhenSettled);
    });
}

/**
 * A UUIDv7 (RFC 9562: 48-bit Unix milliseconds, then 74 random bits) for a delivery row. The unique index on
 * `uuid` then grows at its right edge like the primary key instead of at a random leaf per row: a group commit of
 * random UUIDs dirtied a leaf page per delivery, each written to the WAL, and the commit was the largest cost of
 * the webhook route on its bench (bench/RESULTS.md). The time it reveals is when GitHub's delivery was recorded.
 */
export function timeOrderedUuid(now = Date.now()): string {
  const random = randomUUID();
  const ms = now.toString(16).padStart(12, "0");
  return `${ms.slice(0, 8)}-${ms.slice(8, 12)}-7${random.slice(15)}`;
}

export interface PendingDelivery {
  uuid: string;
  deliveryId: string;
  /** The columns the route recorded from the verified body, so the relay can triage without the payload. */
  ref: string | null;
  headCommit: string | null;
  /** `app_uuids` as stored (JSON text of an array of app UUIDs). */
  appUuidsJson: string;
}

export interface DeliveryOutbox {
  /** Recorded deliveries whose job is not known to be on the queue yet, oldest first. */
  pending(limit: number): PendingDelivery[];
  /**
   * Marks deliveries enqueued, in one transaction. Only rows still `received`: the push worker may already have
   * processed a job before its add returned to us, and that later status must not be overwritten.
   */
  markEnqueued(entries: ReadonlyArray<{ uuid: string; jobId: string }>): void;
  /** Marks deliveries that need no job `ignored`, in one transaction; again only rows still `received`. */
  markIgnored(uuids: readonly string[]): void;
}

/** The outbox side of webhook_deliveries; the poll is served by the partial index webhook_deliveries_received_idx. */
export function deliveryOutbox(db: Db): DeliveryOutbox {
  // The literal `status = 'received'` (not a bound parameter) is what lets SQLite use the partial index.
  const pending = db.$client.prepare<[number], PendingDelivery>(
    `select uuid, delivery_id as deliveryId, ref, head_commit as headCommit, app_uuids as appUuidsJson
     from webhook_deliveries where status = 'received' order by id limit ?`,
  );
  const mark = db.$client.prepare<[string, string]>(
    "update webhook_deliveries set status = 'enqueued', job_id = ? where uuid = ? and status = 'received'",
  );
  const ignore = db.$client.prepare<[string]>(
    "update webhook_deliveries set status = 'ignored' where uuid = ? and status = 'received'",
  );
  const markAll = db.$client.transaction((entries: ReadonlyArray<{ uuid: string; jobId: string }>) => {
    for (const e of entries) mark.run(e.jobId, e.uuid);
  });
  const ignoreAll = db.$client.transaction((uuids: readonly string[]) => {
    for (const uuid of uuids) ignore.run(uuid);
  });
  return {
    pending: (limit) => pending.all(limit),
    markEnqueued: (entries) => markAll(entries),
    markIgnored: (uuids) => ignoreAll(uuids),
  };
}

export function markDeliveryEnqueued(db: DbOrTx, uuid: string, jobId: string): void {
  db.update(webhookDeliveries).set({ status: "enqueued", jobId }).where(eq(webhookDeliveries.uuid, uuid)).run();
}

export function markDeliveryIgnored(db: DbOrTx, uuid: string): void {
  stmts(db).ignored.run({ uuid });
}

export interface StoredDelivery {
  deliveryId: string;
  status: (typeof webhookDeliveries.$inferSelect)["status"];
  payload: unknown;
  appUuids: string[];
}

// The push worker reads and marks every delivery: prepared once per handle, not built and prepared per call
// (they showed in the webhook bench's profile, bench/RESULTS.md).
const statements = (db: DbOrTx) => ({
  find: db
    .select({
      deliveryId: webhookDeliveries.deliveryId,
      status: webhookDeliveries.status,
      payload: webhookDeliveries.payload,
      appUuids: webhookDeliveries.appUuids,
    })
    .from(webhookDeliveries)
    .where(eq(webhookDeliveries.uuid, sql.placeholder("uuid")))
    .prepare(),
  processed: db
    .update(webhookDeliveries)
    .set({ status: "processed" })
    .where(eq(webhookDeliveries.uuid, sql.placeholder("uuid")))
    .prepare(),
  ignored: db
    .update(webhookDeliveries)
    .set({ status: "ignored" })
    .where(eq(webhookDeliveries.uuid, sql.placeholder("uuid")))
    .prepare(),
});
const prepared = new WeakMap<DbOrTx, ReturnType<typeof statements>>();
function stmts(db: DbOrTx) {
  let s = prepared.get(db);
  if (!s) {
    s = statements(db);
    prepared.set(db, s);
  }
  return s;
}

export function findDelivery(db: DbOrTx, uuid: string): StoredDelivery | undefined {
  return stmts(db).find.get({ uuid });
}

export function markDeliveryProcessed(db: DbOrTx, uuid: string): void {
  stmts(db).processed.run({ uuid });
}

/** Whether `after` was the ref's head when the push was mapped (`not-checked` without API credentials). */
export function recordHeadCheck(db: DbOrTx, uuid: string, check: HeadCheck): void {
  db.update(webhookDeliveries).set({ headCheck: check }).where(eq(webhookDeliveries.uuid, uuid)).run();
}

/**
 * Audits that a push did not deploy `appUuid` (locked, stale head), once per (app, delivery): a retried job sees
 * the row and returns false, so a notice goes out once too.
 */
export function auditPushRefusalOnce(
  db: DbOrTx,
  appUuid: string,
  deliveryId: string,
  details: { reason: string; ref: string; commit: string; lockedBy?: string },
): boolean {
  return db.transaction((t) => {
    // One (app, correlation id) lookup in audit_events_app_correlation_idx. It was a range of the app's audit rows
    // since the delivery's time (minus a clock slack), which every push a locked app refused made longer: a burst of
    // such pushes took quadratic time (bench/RESULTS.md, the "followed branch of a locked app" rows).
    const seen = t
      .select({ id: auditEvents.id })
      .from(auditEvents)
      .innerJoin(apps, eq(apps.id, auditEvents.appId))
      .where(and(eq(apps.uuid, appUuid), eq(auditEvents.correlationId, deliveryId), eq(auditEvents.action, "deploy")))
      .get();
    if (seen) return false;
    recordAudit(t, {
      action: "deploy",
      outcome: "denied",
      actorLabel: "github",
      appUuid,
      details: { trigger: "push", ...details },
      correlationId: deliveryId,
    });
    return true;
  });
}

/** How long a recorded delivery is kept: GitHub redelivers (by hand) deliveries of the past 3 days only. */
export const DELIVERY_RETENTION_MS = 30 * 24 * 60 * 60_000;

/** How far ahead of the prune's clock a row's `created_at` may be and still count as recent (clocks differ a little). */
const FUTURE_SLACK_MS = 24 * 60 * 60_000;

/**
 * Deletes up to `limit` deliveries recorded before `before`, oldest first, except the outbox's `received` rows, which
 * the relay has still to enqueue. Without it every push stayed for ever, and the dedupe index on GitHub's
 * delivery ids kept growing (bench/RESULTS.md). A redelivery of a pruned id would be recorded again; the deployment
 * it maps to is still unique per (app, delivery) (commands/deploy.ts). Returns how many went.
 *
 * "Oldest" is in the order the rows were recorded (their id), which is that of `created_at` unless the clock went
 * back: a row is pruned once it and every row recorded before it are past the retention, so a clock step back can
 * only keep rows longer, never prune early. A row dated more than a day ahead of `now` (the clock was wrong forward
 * for a while) is not taken as the first recent row, so it cannot hold every later row back until its date passes;
 * it goes with the old rows recorded after it. This needs no index on `created_at` (there is none: it cost every
 * webhook delivery a write, bench/RESULTS.md): the boundary is found by walking the ids from the oldest, over the
 * rows that are going anyway.
 */
export function pruneDeliveries(db: DbOrTx, before: Date, options: { limit?: number; now?: Date } = {}): number {
  const cutoff = before.getTime();
  const latest = (options.now ?? new Date()).getTime() + FUTURE_SLACK_MS;
  if (!Number.isFinite(cutoff) || !Number.isFinite(latest)) throw new Error("pruneDeliveries: invalid date");
  const limit = options.limit ?? 5_000;
  return db.run(sql`delete from webhook_deliveries where id in (
      select id from webhook_deliveries
      where id < coalesce(
          (select id from webhook_deliveries where created_at >= ${cutoff} and created_at <= ${latest} order by id limit 1),
          9223372036854775807)
        and status != 'received'
      order by id limit ${limit})`).changes;
}
