import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { processPushDelivery, tagMatches, triageRecordedPushes } from "../../commands/push-deploy.ts";
import { apps, auditEvents, deployments, locks, users, webhookDeliveries } from "../../src/db/schema.ts";
import { createApp } from "../../src/domain/apps.ts";
import { getDeployment, listDeployments } from "../../src/domain/deployments.ts";
import { deliveryOutbox, recordGithubDelivery } from "../../src/domain/webhook-deliveries.ts";
import { FakeJobQueue } from "../helpers/fake-queue.ts";
import { memoryLogger, tempDb } from "../helpers/fixtures.ts";
import { examplePush, githubExamples } from "../helpers/github.ts";

const REPO = "Codertocat/Hello-World";
const HEAD = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

function setup() {
  const t = tempDb();
  const queue = new FakeJobQueue();
  const log = memoryLogger();
  const deps = { db: t.db, queue, log: log.logger };
  /** An app with an active link (as a signed ping leaves it). */
  const app = (slug: string, extra: { branch?: string; githubRepo?: string } = {}) => {
    const created = createApp(t.db, {
      slug,
      gitUrl: `https://github.com/${REPO}.git`,
      domain: `${slug}.example.test`,
      githubRepo: REPO,
      branch: "master",
      ...extra,
    });
    t.db.update(apps).set({ githubLinkStatus: "active" }).where(eq(apps.uuid, created.uuid)).run();
    return created;
  };
  /** The apps whose link the route verified: by default every app linked to REPO (destroyed ones included). */
  const linkedToRepo = () =>
    t.db
      .select({ uuid: apps.uuid })
      .from(apps)
      .where(eq(apps.githubRepo, REPO))
      .all()
      .map((a) => a.uuid);
  /** Records a delivery as the webhook route does and returns its public id. */
  const deliver = (
    payload: Record<string, unknown>,
    deliveryId: string = randomUUID(),
    appUuids: string[] = linkedToRepo(),
  ) =>
    recordGithubDelivery(t.db, {
      deliveryId,
      event: "push",
      repository: REPO,
      ref: String(payload.ref),
      headCommit: String(payload.after),
      payload,
      appUuids,
    }).uuid;
  const run = (uuid: string) => processPushDelivery(deps, uuid);
  const deliveryStatus = (uuid: string) =>
    t.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.uuid, uuid)).get()?.status;
  const allDeployments = () => t.db.select().from(deployments).all();
  return { ...t, queue, log, deps, app, deliver, run, deliveryStatus, allDeployments };
}

let f: ReturnType<typeof setup>;
beforeEach(() => {
  f = setup();
});
afterEach(() => f.cleanup());

const withMessage = (message: string) => {
  const push = examplePush();
  (push.head_commit as { message: string }).message = message;
  return push;
};

describe("push mapping", () => {
  it("deploys the pushed head to every live app following the repository and branch", async () => {
    const web = f.app("web");
    const worker = f.app("worker");
    f.app("staging", { branch: "develop" });
    f.app("other", { githubRepo: "Codertocat/Other" });
    const gone = f.app("gone");
    f.db.update(apps).set({ destroyedAt: new Date() }).where(eq(apps.uuid, gone.uuid)).run();

    const delivery = f.deliver(examplePush());
    const result = await f.run(delivery);

    expect(result.kind).toBe("processed");
    const rows = f.allDeployments();
    expect(rows).toHaveLength(2);
    for (const app of [web, worker]) {
      const [dep] = listDeployments(f.db, app.uuid);
      expect(dep).toMatchObject({
        trigger: "push",
        ref: "master",
        commitSha: HEAD,
        commitMessage: "Initial commit",
        author: "Codertocat",
        status: "queued",
      });
      expect(f.queue.jobs.get(`deploy-${dep?.uuid}`)).toEqual({ queue: "deploy", data: { deploymentUuid: dep?.uuid } });
    }
    expect(f.deliveryStatus(delivery)).toBe("processed");
  });

  it("creates one deployment per app and delivery however often the job runs", async () => {
    f.app("web");
    f.app("worker");
    const delivery = f.deliver(examplePush());
    const first = await f.run(delivery);
    const second = await f.run(delivery);
    expect(f.allDeployments()).toHaveLength(2);
    expect(second).toEqual(first);
    expect(f.queue.jobs.size).toBe(2);
  });

  it("enqueues on the retry when the first run died after recording the deployment", async () => {
    f.app("web");
    const delivery = f.deliver(examplePush());
    f.queue.failNext = new Error("redis down");
    await expect(f.run(delivery)).rejects.toThrow("redis down");
    expect(f.allDeployments()).toHaveLength(1);
    expect(f.queue.jobs.size).toBe(0);

    await f.run(delivery);
    const rows = f.allDeployments();
    expect(rows).toHaveLength(1);
    expect([...f.queue.jobs.keys()]).toEqual([`deploy-${rows[0]?.uuid}`]);
  });

  it("leaves only the newest of two quick pushes queued (the pipeline's superseding)", async () => {
    const web = f.app("web");
    const first = await f.run(f.deliver(examplePush()));
    const newer = { ...examplePush(), after: "b".repeat(40) };
    const second = await f.run(f.deliver(newer));
    const [older] = first.kind === "processed" ? first.deployments : [];
    expect(getDeployment(f.db, older ?? "").status).toBe("superseded");
    expect(f.queue.jobs.has(`deploy-${older}`)).toBe(false);
    const [latest] = listDeployments(f.db, web.uuid);
    expect(latest).toMatchObject({ status: "queued", commitSha: "b".repeat(40) });
    expect(second).toEqual({ kind: "processed", deployments: [latest?.uuid], refused: [] });
  });

  it("deploys the new head of a force push", async () => {
    const web = f.app("web");
    const forced = { ...examplePush(), forced: true, before: "c".repeat(40), after: "d".repeat(40) };
    await f.run(f.deliver(forced));
    expect(listDeployments(f.db, web.uuid)[0]?.commitSha).toBe("d".repeat(40));
  });

  it("deploys only the apps whose link verified the delivery, never others following the same repository", async () => {
    const verified = f.app("web");
    const other = f.app("worker"); // same repository and branch, its own webhook secret: not this delivery's
    const pending = f.app("fresh");
    f.db.update(apps).set({ githubLinkStatus: "pending" }).where(eq(apps.uuid, pending.uuid)).run();
    await f.run(f.deliver(examplePush(), randomUUID(), [verified.uuid, pending.uuid]));
    expect(listDeployments(f.db, verified.uuid)).toHaveLength(1);
    expect(listDeployments(f.db, other.uuid)).toHaveLength(0);
    expect(listDeployments(f.db, pending.uuid)).toHaveLength(0);
  });

  it("ignores pushes to a branch no app follows", async () => {
    f.app("web", { branch: "main" });
    const delivery = f.deliver(examplePush());
    expect(await f.run(delivery)).toEqual({ kind: "ignored", reason: "no app follows branch master" });
    expect(f.deliveryStatus(delivery)).toBe("ignored");
    expect(f.queue.jobs.size).toBe(0);
  });
});

describe("skip rules", () => {
  it.each(["Fix typo [skip deploy]", "[Deploy Skip] docs only\n\nbody"])("skips %j", async (message) => {
    f.app("web");
    const delivery = f.deliver(withMessage(message));
    expect(await f.run(delivery)).toEqual({ kind: "ignored", reason: "skip marker in commit" });
    expect(f.allDeployments()).toHaveLength(0);
    expect(f.deliveryStatus(delivery)).toBe("ignored");
  });

  it("does not skip on look-alikes", async () => {
    f.app("web");
    await f.run(f.deliver(withMessage("skip deploy [skip ci]")));
    expect(f.allDeployments()).toHaveLength(1);
  });

  it("ignores branch deletions", async () => {
    f.app("web");
    const deleted = { ...examplePush(), deleted: true, after: "0".repeat(40), head_commit: null };
    const delivery = f.deliver(deleted);
    expect(await f.run(delivery)).toEqual({ kind: "ignored", reason: "ref deleted" });
    expect(f.allDeployments()).toHaveLength(0);
  });

  it("ignores tag deletions (official example)", async () => {
    f.db
      .update(apps)
      .set({ deployTagPattern: "*" })
      .where(eq(apps.uuid, f.app("web").uuid))
      .run();
    const deletion = githubExamples("push").find((p) => p.deleted === true) as Record<string, unknown>;
    expect(await f.run(f.deliver(deletion))).toEqual({ kind: "ignored", reason: "ref deleted" });
  });
});

describe("tag pushes", () => {
  const tagPush = () => {
    const push = githubExamples("push").find((p) => String(p.ref).startsWith("refs/tags/") && p.deleted === false);
    return structuredClone(push) as Record<string, unknown>;
  };

  it("are ignored when no app opted in", async () => {
    f.app("web");
    expect(await f.run(f.deliver(tagPush()))).toEqual({ kind: "ignored", reason: "no app follows tag simple-tag" });
  });

  it("deploy apps whose tag pattern matches, with the tag as ref", async () => {
    const web = f.app("web");
    const other = f.app("other");
    f.db.update(apps).set({ deployTagPattern: "simple-*" }).where(eq(apps.uuid, web.uuid)).run();
    f.db.update(apps).set({ deployTagPattern: "v*" }).where(eq(apps.uuid, other.uuid)).run();
    await f.run(f.deliver(tagPush()));
    expect(listDeployments(f.db, web.uuid)[0]).toMatchObject({ trigger: "push", ref: "simple-tag", commitSha: HEAD });
    expect(listDeployments(f.db, other.uuid)).toHaveLength(0);
  });

  it("match patterns as globs, literally otherwise", () => {
    expect(tagMatches("v*", "v1.2.3")).toBe(true);
    expect(tagMatches("v?.?", "v1.2")).toBe(true);
    expect(tagMatches("v1.*", "v1x2")).toBe(false);
    expect(tagMatches("release-*", "v1")).toBe(false);
    expect(tagMatches("v1.0", "v1.0.1")).toBe(false);
    expect(tagMatches("*-rc*", "v2-rc1")).toBe(true);
    expect(tagMatches("**", "")).toBe(true);
    expect(tagMatches("v*.*.*", "v1.2")).toBe(false);
  });

  it("a hostile pattern cannot make matching backtrack exponentially", () => {
    // A glob translated to a RegExp backtracks for minutes on this (the test would time out); the two-pointer
    // matcher is quadratic at worst (250 × 121 steps).
    expect(tagMatches(`${"*a".repeat(60)}*b`, "a".repeat(250))).toBe(false);
    expect(tagMatches(`${"*a".repeat(60)}*`, "a".repeat(250))).toBe(true);
  });
});

describe("locked apps", () => {
  it("refuse the push, audit it once per delivery, and let other apps on the branch deploy", async () => {
    const locked = f.app("web");
    const open = f.app("worker");
    const user = f.db
      .insert(users)
      .values({ uuid: randomUUID(), displayName: "Grace" })
      .returning({ id: users.id })
      .get();
    const appId = f.db.select({ id: apps.id }).from(apps).where(eq(apps.uuid, locked.uuid)).get()?.id ?? 0;
    f.db.insert(locks).values({ uuid: randomUUID(), appId, heldBy: user.id, reason: "release freeze" }).run();

    const deliveryId = randomUUID();
    const delivery = f.deliver(examplePush(), deliveryId);
    const result = await f.run(delivery);
    await f.run(delivery);

    expect(result).toMatchObject({ kind: "processed", refused: ["web"] });
    expect(listDeployments(f.db, locked.uuid)).toHaveLength(0);
    expect(listDeployments(f.db, open.uuid)).toHaveLength(1);
    const audits = f.db.select().from(auditEvents).all();
    expect(audits).toHaveLength(1);
    expect(audits[0]).toMatchObject({
      appId,
      actorLabel: "github",
      action: "deploy",
      outcome: "denied",
      correlationId: deliveryId,
      details: { reason: "deploy refused: locked", trigger: "push", ref: "master", commit: HEAD, lockedBy: "Grace" },
    });
    expect(f.log.lines().some((l) => l.msg === "deploy refused: locked" && l.app === "web")).toBe(true);
  });
});

describe("relay triage", () => {
  it("sets aside only pushes the job would ignore, and sends every push the job deploys to the job", async () => {
    const web = f.app("web");
    f.app("tags", { branch: "release" });
    f.db.update(apps).set({ deployTagPattern: "v*" }).where(eq(apps.uuid, web.uuid)).run();
    const gone = f.app("gone", { branch: "gone-branch" });
    f.db.update(apps).set({ destroyedAt: new Date() }).where(eq(apps.uuid, gone.uuid)).run();
    const pending = f.app("pending", { branch: "pending-branch" });
    f.db.update(apps).set({ githubLinkStatus: "pending" }).where(eq(apps.uuid, pending.uuid)).run();
    const push = (ref: string, extra: Record<string, unknown> = {}) => ({ ...examplePush(), ref, ...extra });
    const cases: Array<[string, Record<string, unknown>, string[]?]> = [
      ["followed branch", push("refs/heads/master")],
      ["branch of the other app", push("refs/heads/release")],
      ["unfollowed branch", push("refs/heads/feature/x")],
      ["matching tag", push("refs/tags/v1.2")],
      ["tag nothing matches", push("refs/tags/nightly")],
      ["deleted branch", push("refs/heads/master", { deleted: true, after: "0".repeat(40) })],
      ["not a branch or tag", push("refs/pull/1/head")],
      ["branch of a destroyed app", push("refs/heads/gone-branch")],
      ["branch of a pending link", push("refs/heads/pending-branch")],
      ["followed branch, no verified app", push("refs/heads/master"), []],
      ["followed branch, skip marker", { ...push("refs/heads/master"), head_commit: { message: "x [skip deploy]" } }],
    ];
    const uuids = new Map(cases.map(([name, payload, appUuids]) => [f.deliver(payload, randomUUID(), appUuids), name]));
    const rows = deliveryOutbox(f.db).pending(100);
    expect(rows).toHaveLength(cases.length);
    const { enqueue, ignore } = triageRecordedPushes(f.db, rows);
    const name = (r: { uuid: string }) => uuids.get(r.uuid);
    expect(ignore.map(name).sort()).toEqual(
      [
        "unfollowed branch",
        "tag nothing matches",
        "deleted branch",
        "not a branch or tag",
        "branch of a destroyed app",
        "branch of a pending link",
        "followed branch, no verified app",
      ].sort(),
    );
    // What the job does with every delivery: none the triage set aside deploys anything.
    for (const row of rows) {
      const result = await f.run(row.uuid);
      if (ignore.includes(row)) expect(result, name(row)).toMatchObject({ kind: "ignored" });
    }
    expect(enqueue.map(name).sort()).toEqual(
      ["followed branch", "branch of the other app", "matching tag", "followed branch, skip marker"].sort(),
    );
    expect(f.allDeployments()).toHaveLength(3);
  });

  it("sends a row it cannot read to the job", () => {
    const uuid = f.deliver(examplePush());
    const row = deliveryOutbox(f.db).pending(1)[0];
    if (!row) throw new Error("no pending row");
    const unreadable = [
      { ...row, appUuidsJson: "not json" },
      { ...row, appUuidsJson: '{"a":1}' },
      { ...row, ref: null },
    ];
    expect(triageRecordedPushes(f.db, unreadable).enqueue).toHaveLength(3);
    expect(row.uuid).toBe(uuid);
  });
});
