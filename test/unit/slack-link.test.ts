import { eq } from "drizzle-orm";
import { describe, expect } from "vitest";
import { subcommandUsage } from "../../commands/help.ts";
import { parseCommandText } from "../../handlers/slack-command.ts";
import { apps, auditEvents } from "../../src/db/schema.ts";
import { chatopsTest as test, type World } from "../helpers/chatops.ts";

function appRow(world: World, slug: string) {
  return world.db
    .select({ repo: apps.githubRepo, branch: apps.branch, channel: apps.slackChannelId })
    .from(apps)
    .where(eq(apps.slug, slug))
    .get();
}

function audits(world: World, action: string) {
  return world.db.select().from(auditEvents).where(eq(auditEvents.action, action)).all();
}

describe("parseCommandText: link/unlink", () => {
  test.for([
    ["link web-app github acme/web", { kind: "link", action: "link-github", app: "web-app", repo: "acme/web" }],
    [
      "link web-app github acme/web release/1",
      { kind: "link", action: "link-github", app: "web-app", repo: "acme/web", branch: "release/1" },
    ],
    ["link web-app channel", { kind: "link", action: "link-channel", app: "web-app" }],
    ["link web-app github --rotate-secret", { kind: "link", action: "rotate-github-secret", app: "web-app" }],
    ["unlink web-app channel", { kind: "link", action: "unlink-channel", app: "web-app" }],
  ] as const)("%s", ([text, parsed]) => {
    expect(parseCommandText(text)).toEqual({ branch: undefined, ...parsed });
  });

  test.for([
    ["link", "link"],
    ["link web-app", "link"],
    ["link web-app github", "link"],
    ["link web-app github acme", "link"],
    ["link web-app github https://github.com/acme/web", "link"],
    ["link web-app github acme/web --upload-pack=x", "link"],
    ["link web-app github acme/web main extra", "link"],
    ["link Web_App channel", "link"],
    ["link web-app channel C0OTHER", "link"],
    ["link web-app gitlab acme/web", "link"],
    ["link web-app github --rotate-secret main", "link"],
    ["unlink web-app github", "unlink"],
    ["unlink web-app", "unlink"],
  ] as const)("%s → usage of %s", ([text, name]) => {
    expect(parseCommandText(text)).toEqual({ kind: "usage", name });
  });
});

describe("/tussilago link over signed HTTP", () => {
  test("an admin links a GitHub repo and branch: stored and audited", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0ADMIN", "admin");
    const { body } = await harness.command("link web-app github acme/web release/1", "U0ADMIN");
    // The secret is in this answer only: ephemeral, so only the admin who typed the command sees it.
    expect(body.response_type).toBe("ephemeral");
    const secret = /Webhook secret \(shown once\): `([0-9a-f]{64})`/.exec(String(body.text))?.[1];
    expect(secret).toBeDefined();
    const challenge = /`tussilago-link ([0-9a-f]{40})`/.exec(String(body.text))?.[1];
    expect(challenge).toBeDefined();
    expect(body.text).toBe(
      "*web-app* is linked to `acme/web` branch `release/1`, *pending*: nothing deploys until GitHub proves the link.\n" +
        `Webhook secret (shown once): \`${secret}\`\nAdd it at https://github.com/acme/web/settings/hooks ` +
        "(payload URL `<bot>/webhooks/github`, content type `application/json`); GitHub's ping activates the link.\n" +
        "To prove you control the repository, commit the file `.tussilago/link` containing the line " +
        `\`tussilago-link ${challenge}\` to its default branch. Where the bot has GitHub API credentials, the link ` +
        "turns active only once that file is there when a signed ping or push arrives (redeliver the ping after " +
        "committing it).",
    );
    expect(JSON.stringify(world.db.select().from(apps).all())).not.toContain(secret);
    expect(JSON.stringify(world.db.select().from(auditEvents).all())).not.toContain(secret);
    expect(appRow(world, "web-app")).toMatchObject({ repo: "acme/web", branch: "release/1" });
    const audit = audits(world, "app.link-github");
    expect(audit.map((a) => [a.outcome, a.actorLabel])).toEqual([["succeeded", "<@U0ADMIN>"]]);
  });

  test("an admin rotates the link's webhook secret; a deployer may not", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0ADMIN", "admin");
    world.user("U0DEPLOY", "deployer");
    const first = await harness.command("link web-app github acme/web", "U0ADMIN");
    const refused = await harness.command("link web-app github --rotate-secret", "U0DEPLOY");
    expect(refused.body.text).toBe("Not allowed: you need the admin role in acme for that");
    const { body } = await harness.command("link web-app github --rotate-secret", "U0ADMIN");
    expect(body.response_type).toBe("ephemeral");
    expect(body.text).toMatch(/^New webhook secret for \*web-app\*; the old one no longer verifies/);
    const secretOf = (text: unknown) => /`([0-9a-f]{64})`/.exec(String(text))?.[1];
    expect(secretOf(body.text)).toBeDefined();
    expect(secretOf(body.text)).not.toBe(secretOf(first.body.text));
    expect(audits(world, "app.rotate-webhook-secret").map((a) => a.outcome)).toEqual(["succeeded"]);
  });

  test("an admin links the channel the command was typed in, then unlinks it", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0ADMIN", "admin");
    const linked = await harness.command("link web-app channel", "U0ADMIN", "C0DEPLOYS");
    expect(linked.body.text).toBe("Deploy threads of *web-app* now go to <#C0DEPLOYS>.");
    expect(appRow(world, "web-app")?.channel).toBe("C0DEPLOYS");
    expect(audits(world, "app.link-channel").map((a) => a.outcome)).toEqual(["succeeded"]);

    const unlinked = await harness.command("unlink web-app channel", "U0ADMIN", "C0ELSEWHERE");
    expect(unlinked.body.text).toBe("*web-app* is unlinked from <#C0DEPLOYS>.");
    expect(appRow(world, "web-app")?.channel).toBeNull();
    expect(audits(world, "app.unlink-channel").map((a) => a.outcome)).toEqual(["succeeded"]);
  });

  test("a DM cannot be linked as the deploy channel", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0ADMIN", "admin");
    const { body } = await harness.command("link web-app channel", "U0ADMIN", "D0DIRECT");
    expect(body.text).toBe("type this command in the channel to link, not in a DM");
    expect(appRow(world, "web-app")?.channel).toBeNull();
  });

  test("a deployer is refused: audited as denied, nothing stored", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0DEPLOY", "deployer");
    const github = await harness.command("link web-app github acme/web", "U0DEPLOY");
    expect(github.body.text).toBe("Not allowed: you need the admin role in acme for that");
    const channel = await harness.command("link web-app channel", "U0DEPLOY", "C0DEPLOYS");
    expect(channel.body.text).toBe("Not allowed: you need the admin role in acme for that");
    expect(appRow(world, "web-app")).toMatchObject({ repo: null, channel: null });
    const audit = world.db.select().from(auditEvents).all();
    expect(audit.map((a) => [a.action, a.outcome])).toEqual([
      ["app.link-github", "denied"],
      ["app.link-channel", "denied"],
    ]);
  });

  test("a malformed repository gets the usage line and stores nothing", async ({ world, harness }) => {
    world.app("web-app");
    world.user("U0ADMIN", "admin");
    const { status, body } = await harness.command("link web-app github not-a-repo", "U0ADMIN");
    expect(status).toBe(200);
    expect(body).toEqual({ response_type: "ephemeral", text: subcommandUsage("link") });
    expect(appRow(world, "web-app")?.repo).toBeNull();
    expect(world.db.select().from(auditEvents).all()).toEqual([]);
  });
});
