import { join } from "node:path";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { subcommandUsage } from "../../commands/help.ts";
import { runAuditSubcommand, SLACK_AUDIT_EVENTS } from "../../handlers/slack-audit.ts";
import { parseCommandText } from "../../handlers/slack-command.ts";
import { openDb } from "../../src/db/client.ts";
import { auditEvents } from "../../src/db/schema.ts";
import { createApp, ensureTenant } from "../../src/domain/apps.ts";
import { recordAudit } from "../../src/domain/audit.ts";
import { ensureSlackUser, grantRole } from "../../src/domain/users.ts";
import { bareIntegers, chatopsTest as test } from "../helpers/chatops.ts";
import { tempDir } from "../helpers/fixtures.ts";

const audited = (world: { db: ReturnType<typeof openDb> }, action = "audit.read") =>
  world.db
    .select()
    .from(auditEvents)
    .where(eq(auditEvents.action, action))
    .all()
    .map((a) => `${a.outcome}:${a.actorLabel}`);

describe("parse /tussilago audit", () => {
  it("app and an optional --since window", () => {
    expect(parseCommandText("audit web-app")).toEqual({ kind: "audit", app: "web-app", sinceMs: undefined });
    expect(parseCommandText("audit web-app --since 1h")).toEqual({ kind: "audit", app: "web-app", sinceMs: 3_600_000 });
    expect(parseCommandText("audit web-app —since 7d")).toEqual({
      kind: "audit",
      app: "web-app",
      sinceMs: 604_800_000,
    });
    for (const bad of [
      "audit",
      "audit Web_App",
      "audit web-app --since",
      "audit web-app --since forever",
      "audit a b c d",
    ]) {
      expect(parseCommandText(bad)).toEqual({ kind: "usage", name: "audit" });
    }
    expect(subcommandUsage("audit")).toBe("Usage: /tussilago audit <app> [--since 1h]");
  });
});

describe("/tussilago audit over signed HTTP", () => {
  test("an admin sees the app's events, newest first, escaped, ephemeral; the read is audited", async ({
    world,
    harness,
  }) => {
    const app = world.app("web-app");
    const other = world.app("other-app");
    const dep = world.user("U0DEP", "deployer");
    world.user("U0ADMIN", "admin");
    recordAudit(world.db, {
      action: "deploy",
      outcome: "succeeded",
      actor: dep,
      appUuid: app.uuid,
      details: { ref: "main" },
    });
    recordAudit(world.db, {
      action: "lock",
      outcome: "succeeded",
      actor: dep,
      appUuid: app.uuid,
      details: { reason: "<!channel> `boom`" },
    });
    recordAudit(world.db, { action: "deploy", outcome: "succeeded", actor: dep, appUuid: other.uuid });
    const { body } = await harness.command("audit web-app", "U0ADMIN");
    expect(body.response_type).toBe("ephemeral");
    const lines = (body.text ?? "").split("\n");
    expect(lines[0]).toBe("Audit log of *web-app*, newest first:");
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^• \S+Z <@U0DEP> `lock` succeeded · reason=&lt;!channel&gt; ˋboomˋ$/),
      expect.stringMatching(/^• \S+Z <@U0DEP> `deploy` succeeded · ref=main$/),
    ]);
    expect(bareIntegers(body.text ?? "")).toEqual([]);
    expect(audited(world)).toEqual(["allowed:<@U0ADMIN>"]);

    // The window: everything above is older than a second from "now" two hours on.
    world.clock.now = Date.now() + 2 * 3_600_000;
    expect((await harness.command("audit web-app --since 1h", "U0ADMIN")).body.text).toMatch(
      /^No audit events for \*web-app\* since \S+Z\.$/,
    );
  });

  test("a deployer is refused, and the refusal is audited", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0DEP", "deployer");
    const { body } = await harness.command("audit web-app", "U0DEP");
    expect(body).toEqual({ response_type: "ephemeral", text: "Not allowed: you need the admin role in acme for that" });
    expect(audited(world)).toEqual(["denied:<@U0DEP>"]);
  });

  test("a stranger gets the unknown-app answer (audited); an unknown app is not found", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0ADMIN", "admin");
    const stranger = (await harness.command("audit web-app", "U0STRANGER")).body.text;
    expect(stranger).toBe("app web-app not found");
    expect((await harness.command("audit no-such-app", "U0ADMIN")).body.text).toBe("app no-such-app not found");
    expect(audited(world)).toEqual(["denied:<@U0STRANGER>"]);
  });

  test("a long log stays within Slack's limits and points at the CLI", async ({ world, harness }) => {
    const app = world.app("web-app");
    const dep = world.user("U0DEP", "deployer");
    world.user("U0ADMIN", "admin");
    for (let i = 0; i < 60; i++) {
      recordAudit(world.db, {
        action: "env.set",
        outcome: "succeeded",
        actor: dep,
        appUuid: app.uuid,
        details: { key: "K".repeat(100) },
      });
    }
    const text = (await harness.command("audit web-app", "U0ADMIN")).body.text ?? "";
    expect(text.length).toBeLessThanOrEqual(3_000);
    expect(text).toMatch(/\nShowing the newest \d+; for more: `tussilago audit --app web-app`$/);
  });
});

describe("runAuditSubcommand", () => {
  it("a bounded number of statements, however many events", ({ onTestFinished }) => {
    const dir = tempDir();
    onTestFinished(dir.cleanup);
    let counting = false;
    let statements = 0;
    const db = openDb(join(dir.path, "db.sqlite3"), {
      onQuery: () => {
        if (counting) statements += 1;
      },
    });
    onTestFinished(() => {
      db.$client.close();
    });
    const tenant = ensureTenant(db, "acme");
    const app = createApp(db, {
      slug: "web-app",
      tenant: "acme",
      gitUrl: "https://git.example.com/a.git",
      domain: "a.example.com",
    });
    const admin = ensureSlackUser(db, { teamId: "T0TEAM", userId: "U0ADMIN", displayName: "admin" });
    grantRole(db, admin, tenant.id, "admin");
    const count = () => {
      statements = 0;
      counting = true;
      runAuditSubcommand(
        { db, now: Date.now },
        { kind: "audit", app: "web-app", sinceMs: undefined },
        { actor: admin, correlationId: "c" },
      );
      counting = false;
      return statements;
    };
    recordAudit(db, { action: "deploy", outcome: "succeeded", actorLabel: "cli", appUuid: app.uuid });
    const one = count();
    for (let i = 0; i < 3 * SLACK_AUDIT_EVENTS; i++) {
      const user = ensureSlackUser(db, { teamId: "T0TEAM", userId: `U0U${i}`, displayName: `u${i}` });
      recordAudit(db, { action: "deploy", outcome: "succeeded", actor: user, appUuid: app.uuid });
    }
    expect(count()).toBe(one);
    expect(one).toBeLessThanOrEqual(6);
  });
});
