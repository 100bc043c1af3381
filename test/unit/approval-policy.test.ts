import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { APPROVE_ACTION, buttonValue, describeAction } from "../../handlers/slack-approval-message.ts";
import { parsePolicyArgs } from "../../handlers/slack-policy.ts";
import { approvals, auditEvents, deployments } from "../../src/db/schema.ts";
import { effectivePolicy, normalizePolicy, planPolicyChange } from "../../src/domain/approval-policy.ts";
import { getApproval } from "../../src/domain/approvals.ts";
import { getAppBySlug } from "../../src/domain/apps.ts";
import { DomainError } from "../../src/domain/errors.ts";
import { bareIntegers, chatopsTest as test, type World } from "../helpers/chatops.ts";

const production = { environment: "production", approvalPolicy: null } as const;

describe("approval policy (domain)", () => {
  it("defaults by environment, and a stored list replaces the default", () => {
    expect(effectivePolicy(production)).toEqual({
      actions: ["rollback", "scale", "env", "destroy", "db.drop", "run"],
      isDefault: true,
    });
    expect(effectivePolicy({ environment: "staging", approvalPolicy: null })).toEqual({ actions: [], isDefault: true });
    expect(effectivePolicy({ environment: "staging", approvalPolicy: ["deploy"] })).toEqual({
      actions: ["deploy"],
      isDefault: false,
    });
  });

  it("has one spelling per policy, so equal policies hash equal; unknown actions are refused", () => {
    expect(normalizePolicy(["db.drop", "deploy", "deploy", "env"])).toEqual(["deploy", "env", "db.drop"]);
    expect(() => normalizePolicy(["deploy", "format-disk"])).toThrow(DomainError);
  });

  it("plans what a change tightens and what it loosens", () => {
    expect(planPolicyChange(production, { kind: "add", actions: ["deploy"] })).toEqual({
      next: ["deploy", "rollback", "scale", "env", "destroy", "db.drop", "run"],
      effective: ["deploy", "rollback", "scale", "env", "destroy", "db.drop", "run"],
      loosened: [],
      tightened: ["deploy"],
    });
    expect(planPolicyChange(production, { kind: "remove", actions: ["rollback", "restart"] })).toMatchObject({
      next: ["scale", "env", "destroy", "db.drop", "run"],
      loosened: ["rollback"],
      tightened: [],
    });
    // A reset is judged by where it lands: back to a laxer default loosens, back to a stricter one does not.
    expect(planPolicyChange({ environment: "staging", approvalPolicy: ["deploy"] }, { kind: "reset" })).toMatchObject({
      next: null,
      loosened: ["deploy"],
    });
    expect(planPolicyChange({ environment: "production", approvalPolicy: [] }, { kind: "reset" })).toMatchObject({
      next: null,
      loosened: [],
      tightened: ["rollback", "scale", "env", "destroy", "db.drop", "run"],
    });
    expect(() => planPolicyChange(production, { kind: "add", actions: [] })).toThrow(DomainError);
  });

  it("a deploy request says whether the approval ships a fixed commit or whatever a ref points to", () => {
    const sha = "0123456789abcdef0123456789abcdef01234567";
    expect(describeAction({ kind: "deploy", app: "a", ref: sha }, "web-app")).toBe(
      "deploy commit `0123456789ab` to *web-app*",
    );
    expect(describeAction({ kind: "deploy", app: "a", ref: "v1.2" }, "web-app")).toBe(
      "deploy `v1.2` to *web-app* (whatever it points to when approved)",
    );
  });

  it("parses the slash command strictly", () => {
    expect(parsePolicyArgs(["web-app"])).toEqual({ kind: "policy", app: "web-app" });
    expect(parsePolicyArgs(["web-app", "add", "deploy", "restart"])).toEqual({
      kind: "policy",
      app: "web-app",
      change: { kind: "add", actions: ["deploy", "restart"] },
    });
    expect(parsePolicyArgs(["web-app", "reset"])).toEqual({
      kind: "policy",
      app: "web-app",
      change: { kind: "reset" },
    });
    for (const bad of [[], ["web-app", "add"], ["web-app", "add", "rm-rf"], ["web-app", "reset", "x"], ["Web App"]]) {
      expect(parsePolicyArgs(bad)).toBeUndefined();
    }
  });
});

const policyOf = (world: World, slug: string) => effectivePolicy(getAppBySlug(world.db, slug));
const audit = (world: World) =>
  world.db
    .select()
    .from(auditEvents)
    .all()
    .map((a) => `${a.action}:${a.outcome}:${a.actorLabel}`);
const pendingApproval = (world: World) => {
  const row = world.db.select().from(approvals).where(eq(approvals.status, "pending")).get();
  if (!row) throw new Error("no pending approval");
  return getApproval(world.db, row.uuid);
};

describe("/tussilago policy", () => {
  test("anyone who can see the app sees its policy; strangers do not", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0VIEW", "viewer");
    expect((await harness.command("policy web-app", "U0VIEW")).body.text).toBe(
      "Approvals needed on *web-app* (production) for: rollback, scale, env, destroy, db.drop, run (the production default).",
    );
    expect((await harness.command("policy web-app", "U0STRANGER")).body.text).toMatch(/^Not allowed: /);
    expect((await harness.command("policy web-app add", "U0VIEW")).body.text).toBe(
      "Usage: /tussilago policy <app> [add|remove <deploy|rollback|restart|scale|env|destroy|db.drop|run>… | reset]",
    );
  });

  test("only admins change it; a deployer is refused and audited", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0DEP", "deployer");
    expect((await harness.command("policy web-app add deploy", "U0DEP")).body.text).toMatch(/^Not allowed: /);
    expect(policyOf(world, "web-app").isDefault).toBe(true);
    expect(audit(world)).toEqual(["policy:denied:<@U0DEP>"]);
  });

  test("deploy to production opt-in: tightening applies at once, then a deploy waits for someone else", async ({
    world,
    harness,
  }) => {
    world.app("web-app");
    world.user("U0ADMIN", "admin");
    world.user("U0DEP", "deployer");
    world.user("U0APPR", "approver");
    expect((await harness.command("policy web-app add deploy", "U0ADMIN")).body.text).toBe(
      "Approvals needed on *web-app* now for: deploy, rollback, scale, env, destroy, db.drop, run.",
    );
    const deploy = await harness.command("deploy web-app hotfix", "U0DEP");
    expect(deploy.body.text).toMatch(/needs an approval from someone else/);
    expect(world.db.select().from(deployments).all()).toEqual([]);
    const approval = pendingApproval(world);
    expect(approval.action).toEqual({ kind: "deploy", app: getAppBySlug(world.db, "web-app").uuid, ref: "hotfix" });
    const posted = world.slack.calls.find((c) => c.method === "chat.postMessage");
    expect(posted?.text).toBe(
      "Approval needed: <@U0DEP> asks to deploy `hotfix` to *web-app* (whatever it points to when approved).",
    );

    await harness.click(APPROVE_ACTION, buttonValue(approval), "U0APPR");
    const queued = world.db.select().from(deployments).all();
    expect(queued.map((d) => [d.ref, d.trigger])).toEqual([["hotfix", "command"]]);
    expect([...world.queue.jobs.keys()]).toEqual([`deploy-${queued[0]?.uuid}`]);
    expect(harness.responses()).toEqual([`Approved; deployment ${queued[0]?.uuid} is queued.`]);
    expect(audit(world)).toEqual([
      "policy.set:succeeded:<@U0ADMIN>",
      "approval.request.deploy:allowed:<@U0DEP>",
      "approval.approved:succeeded:<@U0APPR>",
      "deploy:succeeded:<@U0DEP>",
    ]);
    for (const text of world.slack.renderedTexts()) expect(bareIntegers(text)).toEqual([]);
  });

  test("loosening waits for another approver, even for an admin; then the action runs without one", async ({
    world,
    harness,
  }) => {
    const app = world.app("web-app");
    world.release(app);
    world.release(app);
    world.user("U0ADMIN", "admin");
    world.user("U0APPR", "approver");
    expect((await harness.command("policy web-app remove rollback", "U0ADMIN")).body.text).toMatch(
      /needs an approval from someone else/,
    );
    expect(policyOf(world, "web-app").actions).toContain("rollback");
    const approval = pendingApproval(world);
    expect(world.slack.calls.find((c) => c.method === "chat.postMessage")?.text).toBe(
      "Approval needed: <@U0ADMIN> asks to set the approval policy of *web-app* to: scale, env, destroy, db.drop, run.",
    );
    // The admin cannot wave their own request through.
    await harness.click(APPROVE_ACTION, buttonValue(approval), "U0ADMIN");
    expect(policyOf(world, "web-app").actions).toContain("rollback");
    await harness.click(APPROVE_ACTION, buttonValue(approval), "U0APPR");
    expect(harness.responses()).toEqual([
      "Not done: you cannot approve your own request",
      "Approved; the action has been applied.",
    ]);
    expect(policyOf(world, "web-app")).toEqual({
      actions: ["scale", "env", "destroy", "db.drop", "run"],
      isDefault: false,
    });
    expect((await harness.command("rollback web-app", "U0ADMIN")).body.text).toMatch(
      /^Rollback of \*web-app\* to v1 queued/,
    );
  });

  test("restart can be gated too", async ({ world, harness }) => {
    const app = world.app("web-app", "staging");
    world.release(app);
    world.user("U0ADMIN", "admin");
    world.user("U0DEP", "deployer");
    expect((await harness.command("restart web-app", "U0DEP")).body.text).toMatch(/^Restart of \*web-app\*/);
    await harness.command("policy web-app add restart", "U0ADMIN");
    expect((await harness.command("restart web-app", "U0DEP")).body.text).toMatch(/needs an approval/);
    expect(pendingApproval(world).action).toMatchObject({ kind: "restart", version: 1 });
    // Back to the staging default (nothing gated) is a loosening: it needs an approval as well.
    expect((await harness.command("policy web-app reset", "U0ADMIN")).body.text).toMatch(/needs an approval/);
    expect(policyOf(world, "web-app")).toEqual({ actions: ["restart"], isDefault: false });
  });
});

describe("deploy of an older released commit is a rollback for the policy", () => {
  const OLD = "a".repeat(40);
  const CURRENT = "b".repeat(40);
  const NEW = "c".repeat(40);

  test("production (rollback gated): `deploy <sha of an older release>` waits for an approval", async ({
    world,
    harness,
  }) => {
    // Attack: the default production policy gates rollback, not deploy. Naming the old release's commit in a
    // deploy would roll production back with nobody else looking.
    const app = world.app("web-app");
    world.release(app, OLD);
    world.release(app, CURRENT);
    world.user("U0DEP", "deployer");
    expect((await harness.command(`deploy web-app ${OLD}`, "U0DEP")).body.text).toMatch(/needs an approval/);
    expect(pendingApproval(world).action).toMatchObject({ kind: "deploy", ref: OLD });
    expect(world.db.select().from(deployments).where(eq(deployments.trigger, "command")).all()).toHaveLength(0);
  });

  test("the current release's commit and a commit never released deploy at once", async ({ world, harness }) => {
    const app = world.app("web-app");
    world.release(app, OLD);
    world.release(app, CURRENT);
    world.user("U0DEP", "deployer");
    for (const sha of [CURRENT, NEW]) {
      expect((await harness.command(`deploy web-app ${sha}`, "U0DEP")).body.text).not.toMatch(/needs an approval/);
    }
    expect(world.db.select().from(approvals).all()).toHaveLength(0);
  });

  test("staging (nothing gated) deploys an old commit at once", async ({ world, harness }) => {
    const app = world.app("web-app", "staging");
    world.release(app, OLD);
    world.release(app, CURRENT);
    world.user("U0DEP", "deployer");
    expect((await harness.command(`deploy web-app ${OLD}`, "U0DEP")).body.text).not.toMatch(/needs an approval/);
  });
});

describe("an approval re-checks what may have changed since the request", () => {
  test("a policy loosening requested against an older policy is not applied over a newer one", async ({
    world,
    harness,
  }) => {
    world.app("web-app");
    world.user("U0ADMIN", "admin");
    world.user("U0ADMIN2", "admin");
    world.user("U0APPR", "approver");
    await harness.command("policy web-app remove env", "U0ADMIN");
    const stale = pendingApproval(world);
    // Meanwhile someone tightens it: that applies at once.
    await harness.command("policy web-app add deploy restart", "U0ADMIN2");
    await harness.click(APPROVE_ACTION, buttonValue(stale), "U0APPR");
    expect(harness.responses()).toEqual(["Not done: the approval policy changed since the request; ask again"]);
    expect(policyOf(world, "web-app").actions).toEqual([
      "deploy",
      "rollback",
      "restart",
      "scale",
      "env",
      "destroy",
      "db.drop",
      "run",
    ]);
    expect(getApproval(world.db, stale.uuid).status).toBe("pending");
  });

  test("a requester who lost the role meanwhile gets nothing done by an approval", async ({ world, harness }) => {
    world.app("web-app");
    const admin = world.user("U0ADMIN", "admin");
    world.user("U0APPR", "approver");
    await harness.command("policy web-app remove destroy", "U0ADMIN");
    const request = pendingApproval(world);
    world.user("U0ADMIN", "viewer");
    await harness.click(APPROVE_ACTION, buttonValue(request), "U0APPR");
    expect(harness.responses()).toEqual(["Not done: the requester no longer holds the admin role in acme"]);
    expect(policyOf(world, "web-app").actions).toContain("destroy");
    expect(admin.label).toBe("<@U0ADMIN>");
  });

  test("a restart approved after a newer release shipped does not roll the app back", async ({ world, harness }) => {
    const app = world.app("web-app", "staging");
    world.release(app);
    world.user("U0ADMIN", "admin");
    world.user("U0DEP", "deployer");
    world.user("U0APPR", "approver");
    await harness.command("policy web-app add restart", "U0ADMIN");
    await harness.command("restart web-app", "U0DEP");
    const request = pendingApproval(world);
    world.release(app); // v2 is current now
    await harness.click(APPROVE_ACTION, buttonValue(request), "U0APPR");
    expect(harness.responses()).toEqual(["Not done: the current release changed since the request; ask again"]);
    expect(
      world.db
        .select()
        .from(deployments)
        .all()
        .filter((d) => d.trigger === "rollback"),
    ).toEqual([]);
  });

  test("an approved deploy reports in the channel where the request was posted", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0ADMIN", "admin");
    world.user("U0DEP", "deployer");
    world.user("U0APPR", "approver");
    await harness.command("policy web-app add deploy", "U0ADMIN");
    await harness.command("deploy web-app", "U0DEP", "C0DEPLOYS");
    await harness.click(APPROVE_ACTION, buttonValue(pendingApproval(world)), "U0APPR");
    expect(
      world.db
        .select()
        .from(deployments)
        .all()
        .map((d) => d.slackChannelId),
    ).toEqual(["C0DEPLOYS"]);
  });
});
