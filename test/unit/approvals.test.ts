import { eq } from "drizzle-orm";
import { describe, expect } from "vitest";
import { APPROVE_ACTION, buttonValue, DENY_ACTION } from "../../handlers/slack-approval-message.ts";
import { approvals, apps as appsTable, auditEvents, deployments } from "../../src/db/schema.ts";
import {
  type ApprovalView,
  actionHash,
  decideApproval,
  getApproval,
  needsApproval,
  requestApproval,
} from "../../src/domain/approvals.ts";
import { bareIntegers, type slackHarness, chatopsTest as test, type World } from "../helpers/chatops.ts";

/** A production app with two releases, a requester, an approver, and a pending rollback request from Slack. */
async function pendingRollback(world: World, harness: Awaited<ReturnType<typeof slackHarness>>): Promise<ApprovalView> {
  const app = world.app("web-app");
  world.release(app);
  world.release(app);
  world.user("U0REQ", "deployer");
  world.user("U0APPR", "approver");
  const { body } = await harness.command("rollback web-app", "U0REQ");
  expect(body.text).toMatch(/needs an approval/);
  const row = world.db.select().from(approvals).get();
  if (!row) throw new Error("no approval recorded");
  return getApproval(world.db, row.uuid);
}

const rollbacks = (world: World) =>
  world.db.select().from(deployments).where(eq(deployments.trigger, "rollback")).all();

describe("policy", () => {
  test("production: destroy, rollback, env changes and database drop need approval; staging: none", () => {
    const production = { environment: "production", approvalPolicy: null } as const;
    const staging = { environment: "staging", approvalPolicy: null } as const;
    for (const kind of ["destroy", "rollback", "env.set", "env.unset", "db.drop"] as const) {
      expect(needsApproval(production, kind)).toBe(true);
      expect(needsApproval(staging, kind)).toBe(false);
    }
    expect(needsApproval(production, "restart")).toBe(false);
    expect(needsApproval(production, "deploy")).toBe(false);
  });

  test("a stored policy replaces the environment default", () => {
    expect(needsApproval({ environment: "staging", approvalPolicy: ["deploy"] }, "deploy")).toBe(true);
    expect(needsApproval({ environment: "production", approvalPolicy: [] }, "rollback")).toBe(false);
    expect(needsApproval({ environment: "production", approvalPolicy: ["env"] }, "env.unset")).toBe(true);
  });

  test("the hash is over canonical JSON: key order does not matter, any change does", () => {
    const a = actionHash({ kind: "env.unset", app: "a", key: "K" });
    expect(actionHash({ key: "K", app: "a", kind: "env.unset" } as never)).toBe(a);
    expect(actionHash({ kind: "env.unset", app: "a", key: "L" })).not.toBe(a);
  });
});

describe("approval buttons", () => {
  test("the request message names the action and binds the buttons to its hash", async ({ world, harness }) => {
    const approval = await pendingRollback(world, harness);
    const posted = world.slack.calls[0];
    expect(posted?.method).toBe("chat.postMessage");
    expect(posted?.text).toBe("Approval needed: <@U0REQ> asks to roll *web-app* back to v1.");
    expect(JSON.stringify(posted)).toContain(buttonValue(approval));
    expect(approval.actionHash).toBe(actionHash(approval.action));
    expect(approval.slackMessageTs).toBe(posted?.method === "chat.postMessage" ? posted.ts : "");
    expect(rollbacks(world)).toEqual([]);
  });

  test("an approver approves: the rollback is enqueued, the message shows who and when, audited", async ({
    world,
    harness,
  }) => {
    const approval = await pendingRollback(world, harness);
    world.clock.now += 60_000;
    expect(await harness.click(APPROVE_ACTION, buttonValue(approval), "U0APPR")).toBe(200);
    expect(rollbacks(world)).toHaveLength(1);
    expect([...world.queue.jobs.keys()]).toEqual([`deploy-${rollbacks(world)[0]?.uuid}`]);
    const update = world.slack.calls.find((c) => c.method === "chat.update");
    expect(update?.text).toBe(
      "<@U0REQ> asked to roll *web-app* back to v1. :white_check_mark: Approved by <@U0APPR> at 2030-01-01T10:01:00.000Z.",
    );
    expect(harness.responses()).toEqual([expect.stringMatching(/^Approved; deployment \S+ is queued\.$/)]);
    const audit = world.db
      .select()
      .from(auditEvents)
      .all()
      .map((a) => `${a.action}:${a.outcome}:${a.actorLabel}`);
    expect(audit).toEqual([
      "approval.request.rollback:allowed:<@U0REQ>",
      "approval.approved:succeeded:<@U0APPR>",
      "rollback:succeeded:<@U0REQ>",
    ]);
    for (const text of world.slack.renderedTexts()) expect(bareIntegers(text)).toEqual([]);
  });

  test("the requester cannot approve their own request", async ({ world, harness }) => {
    const approval = await pendingRollback(world, harness);
    world.user("U0REQ", "admin"); // not even as an admin
    await harness.click(APPROVE_ACTION, buttonValue(approval), "U0REQ");
    expect(harness.responses()).toEqual(["Not done: you cannot approve your own request"]);
    expect(getApproval(world.db, approval.uuid).status).toBe("pending");
    expect(rollbacks(world)).toEqual([]);
    const denied = world.db.select().from(auditEvents).where(eq(auditEvents.outcome, "denied")).all();
    expect(denied.map((d) => d.action)).toEqual(["approval.approve"]);
  });

  test("a deployer (not approver) cannot approve", async ({ world, harness }) => {
    const approval = await pendingRollback(world, harness);
    world.user("U0OTHER", "deployer");
    await harness.click(APPROVE_ACTION, buttonValue(approval), "U0OTHER");
    expect(harness.responses()).toEqual(["Not done: you need the approver role in acme to decide this"]);
    expect(getApproval(world.db, approval.uuid).status).toBe("pending");
  });

  test("an expired request cannot be approved and the message says it expired", async ({ world, harness }) => {
    const approval = await pendingRollback(world, harness);
    world.clock.now += 30 * 60_000;
    await harness.click(APPROVE_ACTION, buttonValue(approval), "U0APPR");
    expect(harness.responses()).toEqual(["This request has expired; ask again."]);
    expect(getApproval(world.db, approval.uuid).status).toBe("expired");
    expect(world.slack.calls.at(-1)?.text).toMatch(/:hourglass: Expired at /);
    expect(rollbacks(world)).toEqual([]);
  });

  test("a changed action needs a new approval: a button with another hash, or a tampered payload", async ({
    world,
    harness,
  }) => {
    const approval = await pendingRollback(world, harness);
    const otherHash = actionHash({ ...approval.action, version: 2 } as never);
    await harness.click(APPROVE_ACTION, `${approval.uuid}.${otherHash}`, "U0APPR");
    world.db
      .update(approvals)
      .set({ actionPayload: { ...approval.action, version: 2 } })
      .where(eq(approvals.uuid, approval.uuid))
      .run();
    await harness.click(APPROVE_ACTION, buttonValue(approval), "U0APPR");
    expect(harness.responses()).toEqual([
      "Not done: this button does not match the requested action; ask again",
      "Not done: this button does not match the requested action; ask again",
    ]);
    expect(rollbacks(world)).toEqual([]);
  });

  test("double clicks and replays are idempotent: one decision, one deployment", async ({ world, harness }) => {
    const approval = await pendingRollback(world, harness);
    await harness.click(APPROVE_ACTION, buttonValue(approval), "U0APPR");
    await harness.click(APPROVE_ACTION, buttonValue(approval), "U0APPR");
    world.user("U0APPR2", "approver");
    await harness.click(DENY_ACTION, buttonValue(approval), "U0APPR2");
    expect(rollbacks(world)).toHaveLength(1);
    expect(harness.responses().slice(1)).toEqual(["Already approved.", "Already approved."]);
    expect(world.slack.calls.filter((c) => c.method === "chat.update")).toHaveLength(1);
  });

  test("a forged or unsigned click is rejected before any listener runs", async ({ world, harness }) => {
    const approval = await pendingRollback(world, harness);
    expect(await harness.click(APPROVE_ACTION, buttonValue(approval), "U0APPR", { signature: "v0=deadbeef" })).toBe(
      401,
    );
    expect(await harness.click(APPROVE_ACTION, buttonValue(approval), "U0APPR", { signature: null })).toBe(401);
    expect(getApproval(world.db, approval.uuid).status).toBe("pending");
  });

  test("deny: nothing runs, the message shows who denied", async ({ world, harness }) => {
    const approval = await pendingRollback(world, harness);
    await harness.click(DENY_ACTION, buttonValue(approval), "U0APPR");
    expect(rollbacks(world)).toEqual([]);
    expect(world.slack.calls.at(-1)?.text).toMatch(/:no_entry: Denied by <@U0APPR> at /);
  });

  test("an approved env change is applied sealed, exactly as requested", async ({ world, harness }) => {
    const app = world.app("api-app");
    world.user("U0REQ", "deployer");
    world.user("U0APPR", "approver");
    await harness.command("env set api-app SECRET=hunter2-value", "U0REQ");
    const row = world.db.select().from(approvals).get();
    const approval = getApproval(world.db, row?.uuid ?? "");
    expect(JSON.stringify(approval.action)).not.toContain("hunter2");
    await harness.click(APPROVE_ACTION, buttonValue(approval), "U0APPR");
    expect(harness.responses()).toEqual(["Approved; the action has been applied."]);
    expect((await harness.command("env list api-app", "U0REQ")).body.text).toBe("*api-app* env: `SECRET`");
    expect(app.slug).toBe("api-app");
  });

  test("an approved destroy re-checks locks: a lock taken after the request keeps the app", async ({
    world,
    harness,
  }) => {
    // Attack: an admin asks to destroy a production app; an operator locks it (an incident, a migration) before
    // anyone approves; a second approver, not reading the lock, clicks Approve. The lock must still win.
    const app = world.app("web-app");
    world.release(app);
    world.user("U0ADMIN", "admin");
    world.user("U0APPR", "approver");
    world.user("U0OPS", "admin");
    expect((await harness.command("destroy web-app", "U0ADMIN")).body.text).toMatch(/needs an approval/);
    const row = world.db.select().from(approvals).get();
    if (!row) throw new Error("no approval recorded");
    expect((await harness.command("lock web-app incident 42", "U0OPS")).body.text).toMatch(/locked/i);
    await harness.click(APPROVE_ACTION, buttonValue(getApproval(world.db, row.uuid)), "U0APPR");
    const stored = world.db.select().from(appsTable).where(eq(appsTable.uuid, app.uuid)).get();
    expect(stored?.destroyedAt).toBeNull();
    expect([...world.queue.jobs.keys()]).toEqual([]);
    expect(harness.responses().join("\n")).toMatch(/locked by <@U0OPS>/);
  });

  test("approvals lists pending requests with buttons, for members of the tenant only", async ({ world, harness }) => {
    await pendingRollback(world, harness);
    const listed = await harness.command("approvals", "U0APPR");
    expect(listed.body.text).toBe("1 pending approval request(s).");
    expect(JSON.stringify(listed.body.blocks)).toContain(APPROVE_ACTION);
    expect((await harness.command("approvals", "U0STRANGER")).body.text).toBe("No pending approval requests.");
  });

  test("domain: a repeated identical request returns the pending one", ({ world }) => {
    const app = world.app("web-app");
    const req = world.user("U0REQ", "deployer");
    const action = { kind: "destroy", app: app.uuid } as const;
    const first = requestApproval(world.db, { app, action, requester: req, now: world.clock.now });
    const again = requestApproval(world.db, { app, action, requester: req, now: world.clock.now });
    expect(first.isNew).toBe(true);
    expect(again).toEqual({ approval: first.approval, isNew: false });
    const appr = world.user("U0APPR", "approver");
    const decided = decideApproval(world.db, {
      uuid: first.approval.uuid,
      hash: first.approval.actionHash,
      decider: appr,
      decision: "approved",
      now: world.clock.now,
    });
    expect(decided.kind).toBe("decided");
  });
});
