import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { triageRecordedPushes } from "../../commands/push-deploy.ts";
import { apps, webhookDeliveries } from "../../src/db/schema.ts";
import { createApp } from "../../src/domain/apps.ts";
import { deliveryOutbox, prepareDeliveryRecorder } from "../../src/domain/webhook-deliveries.ts";
import { DeliveryRelay } from "../../src/pipeline/delivery-relay.ts";
import { BullJobQueue, pushJobId, QUEUE_NAMES } from "../../src/pipeline/queues.ts";
import { dropPrefix, memoryLogger, tempDb, testRedis, uniquePrefix } from "../helpers/fixtures.ts";
import { EXAMPLE_REPO, examplePush } from "../helpers/github.ts";

// The outbox relay against real Redis and SQLite: pushes no verified app follows are marked ignored without a job,
// the others get exactly one job each, also when the bot stopped between recording a delivery and relaying it.

let redis: Redis;
let prefix: string;
let queue: BullJobQueue;
let database: ReturnType<typeof tempDb>;
let appUuid: string;

beforeEach(() => {
  redis = testRedis();
  prefix = uniquePrefix();
  queue = new BullJobQueue(redis, prefix);
  database = tempDb();
  appUuid = createApp(database.db, {
    slug: "web",
    gitUrl: `https://github.com/${EXAMPLE_REPO}.git`,
    domain: "web.example.test",
    githubRepo: EXAMPLE_REPO,
    branch: "master",
  }).uuid;
  database.db.update(apps).set({ githubLinkStatus: "active" }).where(eq(apps.uuid, appUuid)).run();
});

afterEach(async () => {
  await queue.close();
  await dropPrefix(redis, prefix);
  redis.disconnect();
  database.cleanup();
});

const relay = () =>
  new DeliveryRelay({
    outbox: deliveryOutbox(database.db),
    queue,
    log: memoryLogger("silent").logger,
    pollMs: 60_000,
    triage: (rows) => triageRecordedPushes(database.db, rows),
  });

/** Records pushes as the webhook route does (the route answers once this resolves). */
async function record(refs: string[]): Promise<string[]> {
  const recorder = prepareDeliveryRecorder(database.db);
  const push = examplePush();
  const ids = refs.map(() => randomUUID());
  await Promise.all(
    refs.map((ref, i) =>
      recorder({
        deliveryId: ids[i] as string,
        repository: EXAMPLE_REPO,
        ref,
        headCommit: String(push.after),
        storedPayload: JSON.stringify({ ...push, ref }),
        appUuids: [appUuid],
      }),
    ),
  );
  return ids;
}

const statuses = () =>
  Object.fromEntries(
    database.db
      .select({ id: webhookDeliveries.deliveryId, status: webhookDeliveries.status })
      .from(webhookDeliveries)
      .all()
      .map((r) => [r.id, r.status]),
  );
const jobIds = async () =>
  (await queue.queue(QUEUE_NAMES.githubPush).getJobs(["waiting", "active", "completed", "failed"]))
    .map((j) => j.id)
    .sort();

describe("delivery relay", () => {
  it("marks pushes of refs no verified app follows ignored without a job, and enqueues the rest once", async () => {
    const [followed, feature, tag] = await record(["refs/heads/master", "refs/heads/feature", "refs/tags/v1"]);
    const r = relay();
    await r.flush();
    expect(statuses()).toEqual({
      [followed as string]: "enqueued",
      [feature as string]: "ignored",
      [tag as string]: "ignored",
    });
    expect(await jobIds()).toEqual([pushJobId(followed as string)]);
    expect(r.moved).toEqual({ enqueued: 1, ignored: 2 });
  });

  it("relays deliveries a stopped bot recorded but never relayed, once, even with two relays at once", async () => {
    // The bot answered 202 (the rows are committed) and stopped before its relay ran.
    const refs = Array.from({ length: 120 }, (_, i) => (i % 3 === 0 ? "refs/heads/master" : `refs/heads/f${i}`));
    const ids = await record(refs);
    // The next start's pass, and a second relay racing it over the same rows (e.g. a pass woken while the start-up
    // pass still runs): job ids are the delivery ids, and rows are marked only while still `received`.
    const [a, b] = [relay(), relay()];
    await Promise.all([a.flush(), b.flush()]);
    const expected = ids
      .filter((_, i) => i % 3 === 0)
      .map(pushJobId)
      .sort();
    expect(await jobIds()).toEqual(expected);
    const s = statuses();
    expect(ids.filter((_, i) => i % 3 === 0).every((id) => s[id] === "enqueued")).toBe(true);
    expect(ids.filter((_, i) => i % 3 !== 0).every((id) => s[id] === "ignored")).toBe(true);
    expect(database.db.select().from(webhookDeliveries).all()).toHaveLength(120);
  });
});

describe("delivery recorder", () => {
  it("records a batch received when its triage fails, so the relay and the job still decide", async () => {
    const recorder = prepareDeliveryRecorder(database.db, {
      needsJob: () => {
        throw new Error("database is locked");
      },
    });
    const push = examplePush();
    const deliveryId = randomUUID();
    const recorded = await recorder({
      deliveryId,
      repository: EXAMPLE_REPO,
      ref: "refs/heads/feature",
      headCommit: String(push.after),
      storedPayload: JSON.stringify(push),
      appUuids: [appUuid],
    });
    expect(recorded).toMatchObject({ isNew: true, status: "received" });
    await relay().flush();
    expect(statuses()).toEqual({ [deliveryId]: "ignored" });
  });
});
