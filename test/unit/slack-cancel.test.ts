import { and, eq } from "drizzle-orm";
import { describe, expect } from "vitest";
import { SUBCOMMANDS } from "../../commands/help.ts";
import { parseCommandText } from "../../handlers/slack-command.ts";
import { auditEvents } from "../../src/db/schema.ts";
import { claimDeployment, getDeployment, recordStage, requestDeployment } from "../../src/domain/deployments.ts";
import { lockApp } from "../../src/domain/locks.ts";
import { deployJobId, QUEUE_NAMES } from "../../src/pipeline/queues.ts";
import { renderParent, renderReplies, type ThreadView } from "../../src/reporters/slack-thread-format.ts";
import { bareIntegers, chatopsTest as test, type World } from "../helpers/chatops.ts";

async function queued(world: World, appUuid: string): Promise<string> {
  const { deployment } = requestDeployment(world.db, { appUuid, trigger: "command", ref: "main" });
  await world.queue.enqueue(QUEUE_NAMES.deploy, { deploymentUuid: deployment.uuid });
  return deployment.uuid;
}

const audits = (world: World, outcome: "succeeded" | "denied") =>
  world.db
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.action, "cancel"), eq(auditEvents.outcome, outcome)))
    .all();

describe("/tussilago cancel", () => {
  test("parses an app only, and is listed in help", () => {
    expect(parseCommandText("cancel web-app")).toEqual({ kind: "cancel", app: "web-app" });
    expect(parseCommandText("cancel")).toEqual({ kind: "usage", name: "cancel" });
    expect(parseCommandText("cancel web-app now")).toEqual({ kind: "usage", name: "cancel" });
    expect(SUBCOMMANDS.map((s) => s.name)).toContain("cancel");
  });

  test("a deployer cancels a queued deployment: cancelled by them, job removed, audited", async ({
    world,
    harness,
  }) => {
    const app = world.app("web-app");
    world.user("U0USER", "deployer");
    const uuid = await queued(world, app.uuid);
    const { body } = await harness.command("cancel web-app");
    expect(body).toEqual({
      response_type: "ephemeral",
      text: `Cancelled the queued deployment of *web-app* (${uuid}).`,
    });
    expect(getDeployment(world.db, uuid)).toMatchObject({ status: "cancelled", failureReason: "cancelled by @u0user" });
    expect(world.queue.jobs.has(deployJobId(uuid))).toBe(false);
    expect(audits(world, "succeeded")).toHaveLength(1);
    expect(bareIntegers(body.text ?? "")).toEqual([]);
  });

  test("a running deployment is asked to stop; past the route switch the answer says it is too late", async ({
    world,
    harness,
  }) => {
    const app = world.app("web-app");
    world.user("U0USER", "deployer");
    const uuid = await queued(world, app.uuid);
    claimDeployment(world.db, uuid);
    const asked = (await harness.command("cancel web-app")).body.text ?? "";
    expect(asked).toContain(`Stopping the running deployment of *web-app* (${uuid})`);
    expect(getDeployment(world.db, uuid)).toMatchObject({ status: "running", cancelRequestedBy: "@u0user" });

    recordStage(world.db, uuid, "route", { status: "running", startedAt: 1 });
    const late = (await harness.command("cancel web-app")).body.text ?? "";
    expect(late).toBe(
      `Too late to stop deployment ${uuid} of *web-app*: it is already switching traffic, so it finishes.`,
    );
  });

  test("a viewer may not cancel (audited as denied); nothing to cancel is said plainly; a lock does not stop a cancel", async ({
    world,
    harness,
  }) => {
    const app = world.app("web-app");
    world.user("U0VIEW", "viewer");
    const deployer = world.user("U0USER", "deployer");
    const uuid = await queued(world, app.uuid);
    expect((await harness.command("cancel web-app", "U0VIEW")).body.text).toBe(
      "Not allowed: you need the deployer role in acme for that",
    );
    expect(getDeployment(world.db, uuid).status).toBe("queued");
    expect(audits(world, "denied")).toHaveLength(1);

    lockApp(world.db, { appUuid: app.uuid, appSlug: app.slug, actor: deployer, reason: "freeze" });
    expect((await harness.command("cancel web-app")).body.text).toContain("Cancelled the queued deployment");
    expect((await harness.command("cancel web-app")).body.text).toBe(
      "*web-app* has no queued or running deployment to cancel.",
    );
  });
});

describe("the deployment thread of a cancelled deployment", () => {
  const view = (): ThreadView => ({
    uuid: "d-2",
    appSlug: "web-app",
    stages: new Map([
      ["source", { status: "succeeded", durationMs: 1_000 }],
      ["build", { status: "cancelled" }],
    ]),
    final: {
      type: "deployment",
      deploymentUuid: "d-2",
      appUuid: "a-1",
      appSlug: "web-app",
      status: "cancelled",
      at: 1,
      reason: "cancelled by @ada",
    },
  });

  test("the parent says who cancelled; the reply says where it stopped and what keeps serving", () => {
    const parent = renderParent(view(), { trigger: "cli", ref: "main", author: null, commitSha: null }, null);
    expect(parent.text).toBe("*web-app* · deploy `main` · :no_entry_sign: cancelled by @ada");
    expect(JSON.stringify(parent.blocks)).toContain(":no_entry_sign: build");
    expect(renderReplies(view(), { version: 1, deploymentUuid: "d-1" })).toEqual([
      "Stopped during build: cancelled by @ada. Its new container and image were removed. The previous release v1 keeps serving.",
    ]);
    expect(renderReplies(view(), undefined)).toEqual([
      "Stopped during build: cancelled by @ada. Its new container and image were removed. No earlier release was serving; the app stays down until a deployment succeeds.",
    ]);
  });
});
