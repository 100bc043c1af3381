import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createAppCommand, linkGithubCommand, rotateWebhookSecretCommand } from "../../commands/apps.ts";
import { processPushDelivery } from "../../commands/push-deploy.ts";
import { formatCreatedApp } from "../../src/cli/format.ts";
import { apps, auditEvents, deployments, webhookDeliveries } from "../../src/db/schema.ts";
import { getAppBySlug } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { requestDeployment } from "../../src/domain/deployments.ts";
import { createApp } from "../../src/http/app.ts";
import { githubRoute } from "../../src/http/github-route.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { attachGithubStatusReporter } from "../../src/reporters/github-status.ts";
import { FakeGithub } from "../helpers/fake-github.ts";
import { FakeJobQueue } from "../helpers/fake-queue.ts";
import { memoryLogger, tempDb } from "../helpers/fixtures.ts";
import {
  EXAMPLE_REPO,
  EXAMPLE_REPO_ID,
  examplePing,
  examplePush,
  githubRequest,
  TEST_SECRET_KEY,
} from "../helpers/github.ts";
import { pipelineFixture, SHA } from "../helpers/pipeline.ts";
import { relayFor } from "../helpers/relay.ts";

/** The App's webhook secret (GITHUB_WEBHOOK_SECRET): only the operator holds it. */
const GLOBAL = "the operator's App webhook secret";
const A_REPO = "tenant-a/site";
const A_REPO_ID = 4242;

function setup(options: { appMode?: boolean; globalSecret?: string } = {}) {
  const t = tempDb();
  const queue = new FakeJobQueue();
  const log = memoryLogger();
  const secrets = new SecretBox(TEST_SECRET_KEY);
  const http = createApp({
    logger: log.logger,
    readiness: [],
    githubRoutes: githubRoute({
      globalSecret: options.globalSecret,
      appMode: options.appMode ?? false,
      secrets,
      maxBodyBytes: 1024 * 1024,
      db: t.db,
      onRecorded: relayFor(t.db, queue, log.logger).onRecorded,
    }),
  });
  const deps = { db: t.db, log: log.logger, secrets };
  /** An app of `tenant`, linked through the command as an admin would; returns the secret shown once. */
  const linked = (slug: string, tenant: string, repo: string) => {
    createAppCommand(deps, {
      slug,
      tenant,
      gitUrl: `https://github.com/${repo}.git`,
      domain: `${slug}.example.test`,
      branch: "master",
    });
    const link = linkGithubCommand(deps, { app: slug, repo });
    expect(link.status).toBe("pending");
    return link.webhookSecret as string;
  };
  const send = (secret: string, event: string, payload: unknown, deliveryId = randomUUID()) =>
    http.request("/webhooks/github", githubRequest(secret, event, JSON.stringify(payload), { deliveryId }));
  const ping = (secret: string, repo: string, repoId: number) => send(secret, "ping", examplePing(repo, repoId));
  const row = (slug: string) => t.db.select().from(apps).where(eq(apps.slug, slug)).get();
  const deliveries = () => t.db.select().from(webhookDeliveries).all();
  const audits = (action: string) => t.db.select().from(auditEvents).where(eq(auditEvents.action, action)).all();
  return { ...t, queue, log, secrets, deps, linked, send, ping, row, deliveries, audits };
}

let f: ReturnType<typeof setup>;
beforeEach(() => {
  f = setup();
});
afterEach(() => f.cleanup());

describe("GitHub sender: a delivery verifies with the secret of the repository it names", () => {
  it("a forged push for tenant B's repository signed with tenant A's link secret → 401, nothing recorded", async () => {
    const aSecret = f.linked("a-site", "tenant-a", A_REPO);
    const bSecret = f.linked("b-shop", "tenant-b", EXAMPLE_REPO);
    expect((await f.ping(aSecret, A_REPO, A_REPO_ID)).status).toBe(200);
    expect((await f.ping(bSecret, EXAMPLE_REPO, EXAMPLE_REPO_ID)).status).toBe(200);
    const before = f.db.select().from(auditEvents).all().length;

    const forged = examplePush(); // names tenant B's repository, commit of the attacker's choosing
    forged.after = "c".repeat(40);
    const res = await f.send(aSecret, "push", forged);
    expect(res.status).toBe(401);
    expect(f.deliveries()).toHaveLength(0);
    expect(f.queue.jobs.size).toBe(0);
    expect(f.db.select().from(auditEvents).all()).toHaveLength(before);

    // The same body signed by the repository's own link is accepted, for tenant B's app only.
    const genuine = await f.send(bSecret, "push", examplePush());
    expect(genuine.status).toBe(202);
    expect(f.deliveries().map((d) => d.appUuids)).toEqual([[f.row("b-shop")?.uuid]]);
  });

  it("an unknown repository → 401 with nothing recorded, whatever secret signed it", async () => {
    const res = await f.send("anything", "push", examplePush());
    expect(res.status).toBe(401);
    expect(f.deliveries()).toHaveLength(0);
    expect(f.db.select().from(auditEvents).all()).toHaveLength(0);
  });

  it("a push naming the linked repository's name but another repository.id → refused and audited", async () => {
    const secret = f.linked("b-shop", "tenant-b", EXAMPLE_REPO);
    await f.ping(secret, EXAMPLE_REPO, EXAMPLE_REPO_ID);
    const impostor = examplePush(); // a new repository that took the old name after a rename or transfer
    (impostor.repository as { id: number }).id = 999_999;
    const res = await f.send(secret, "push", impostor);
    expect(res.status).toBe(403);
    expect(f.deliveries()).toHaveLength(0);
    expect(f.queue.jobs.size).toBe(0);
    const [refusal] = f.audits("github.delivery");
    expect(refusal).toMatchObject({ outcome: "denied", actorLabel: "github" });
    expect(refusal?.details).toMatchObject({ repositoryId: 999_999, linkedRepositoryId: EXAMPLE_REPO_ID });
    expect(f.row("b-shop")).toMatchObject({ githubRepo: EXAMPLE_REPO, githubRepoId: EXAMPLE_REPO_ID });
  });

  it("a renamed or transferred repository keeps working: same id, new name → the stored name follows", async () => {
    const secret = f.linked("b-shop", "tenant-b", EXAMPLE_REPO);
    await f.ping(secret, EXAMPLE_REPO, EXAMPLE_REPO_ID);
    const renamed = examplePush();
    (renamed.repository as { full_name: string }).full_name = "new-owner/Hello-World";
    const res = await f.send(secret, "push", renamed);
    expect(res.status).toBe(202);
    expect(f.row("b-shop")).toMatchObject({ githubRepo: "new-owner/Hello-World", githubRepoId: EXAMPLE_REPO_ID });
    expect(f.audits("app.github-repo-renamed")).toHaveLength(1);
  });
});

describe("Tenant admin: a link needs proof of control", () => {
  it("activation by a signed ping: a wrong secret leaves it pending; the link's secret activates it", async () => {
    const secret = f.linked("b-shop", "tenant-b", EXAMPLE_REPO);
    expect((await f.ping("guessed", EXAMPLE_REPO, EXAMPLE_REPO_ID)).status).toBe(401);
    expect(f.row("b-shop")?.githubLinkStatus).toBe("pending");

    const res = await f.ping(secret, EXAMPLE_REPO, EXAMPLE_REPO_ID);
    expect(res.status).toBe(200);
    expect(f.row("b-shop")).toMatchObject({ githubLinkStatus: "active", githubRepoId: EXAMPLE_REPO_ID });
    expect(f.audits("app.github-link-activated")).toHaveLength(1);
    expect(f.deliveries()).toHaveLength(0);
  });

  it("an admin signing a ping with their own link's secret cannot take over a repository another tenant proved", async () => {
    const victim = f.linked("b-shop", "tenant-b", EXAMPLE_REPO);
    await f.ping(victim, EXAMPLE_REPO, EXAMPLE_REPO_ID);
    // Tenant A links the same repository and forges GitHub's ping itself: it holds its own link's secret.
    const own = f.linked("a-copy", "tenant-a", EXAMPLE_REPO);
    const res = await f.ping(own, EXAMPLE_REPO, EXAMPLE_REPO_ID);
    expect(res.status).toBe(403);
    expect(f.row("a-copy")).toMatchObject({ githubLinkStatus: "pending", githubRepoId: null });
    expect(f.audits("github.delivery")[0]?.details).toMatchObject({
      reason: "repository is linked by another tenant",
    });
    // Its forged pushes deploy nothing either; the victim's own link keeps working.
    expect((await f.send(own, "push", examplePush())).status).toBe(403);
    expect(f.deliveries()).toHaveLength(0);
    expect((await f.send(victim, "push", examplePush())).status).toBe(202);
  });

  it("a pending link's first push activates it and does nothing else: no delivery, no job, no deployment", async () => {
    const secret = f.linked("b-shop", "tenant-b", EXAMPLE_REPO);
    const res = await f.send(secret, "push", examplePush());
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ activated: true });
    expect(f.row("b-shop")?.githubLinkStatus).toBe("active");
    expect(f.deliveries()).toHaveLength(0);
    expect(f.queue.jobs.size).toBe(0);
    expect(f.db.select().from(deployments).all()).toHaveLength(0);
    // The next push deploys.
    expect((await f.send(secret, "push", examplePush())).status).toBe(202);
  });

  it("a pending link writes no GitHub status, deployment or status update, even for a command deploy", async () => {
    const p = pipelineFixture();
    try {
      linkGithubCommand(
        { db: p.db, log: memoryLogger().logger, secrets: f.secrets },
        { app: "shop", repo: "victim/private" },
      );
      expect(getAppBySlug(p.db, "shop").githubLinkStatus).toBe("pending");
      const github = new FakeGithub();
      const reporter = attachGithubStatusReporter(p.deps.events, { db: p.db, github, log: memoryLogger().logger });
      const { deployment } = requestDeployment(p.db, {
        appUuid: p.app.uuid,
        trigger: "command",
        ref: "main",
        commitSha: SHA,
      });
      expect(await runDeployment(p.deps, deployment.uuid, { finalAttempt: false })).toBe("succeeded");
      await reporter.idle();
      reporter.detach();
      expect(github.calls).toEqual([]);
    } finally {
      p.cleanup();
    }
  });

  it("the secret is shown once and stored only sealed, bound to its app", () => {
    const secret = f.linked("b-shop", "tenant-b", EXAMPLE_REPO);
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    const stored = f.row("b-shop")?.githubWebhookSecret ?? "";
    expect(stored).not.toContain(secret);
    expect(f.secrets.open(stored, `github-webhook-secret:${f.row("b-shop")?.uuid}`)).toBe(secret);
    expect(JSON.stringify(f.db.select().from(auditEvents).all())).not.toContain(secret);
    expect(f.log.text()).not.toContain(secret);
    // Re-linking the same repository (another branch) keeps the secret and the link's state.
    expect(linkGithubCommand(f.deps, { app: "b-shop", repo: EXAMPLE_REPO, branch: "main" }).webhookSecret).toBe(
      undefined,
    );
  });

  it("apps create --github makes the same pending link, its secret printed once by the CLI", async () => {
    const created = createAppCommand(f.deps, {
      slug: "made",
      gitUrl: `https://github.com/${EXAMPLE_REPO}.git`,
      domain: "made.example.test",
      githubRepo: EXAMPLE_REPO,
      branch: "master",
    });
    expect(created.githubLinkStatus).toBe("pending");
    const secret = created.webhookSecret ?? "";
    expect(formatCreatedApp(created)).toContain(`webhook secret (shown once): ${secret}\n`);
    expect((await f.ping("nope", EXAMPLE_REPO, EXAMPLE_REPO_ID)).status).toBe(401);
    expect((await f.ping(secret, EXAMPLE_REPO, EXAMPLE_REPO_ID)).status).toBe(200);
    expect(f.row("made")?.githubLinkStatus).toBe("active");
  });

  it("rotation invalidates the old secret at once; the new one verifies", async () => {
    const old = f.linked("b-shop", "tenant-b", EXAMPLE_REPO);
    await f.ping(old, EXAMPLE_REPO, EXAMPLE_REPO_ID);
    const { webhookSecret: fresh, status } = rotateWebhookSecretCommand(f.deps, { app: "b-shop" });
    expect(status).toBe("active");
    expect(fresh).not.toBe(old);
    expect((await f.send(old, "push", examplePush())).status).toBe(401);
    expect(f.deliveries()).toHaveLength(0);
    expect((await f.send(fresh, "push", examplePush())).status).toBe(202);
    expect(f.audits("app.rotate-webhook-secret")).toHaveLength(1);
  });

  it("re-linking to another repository starts over: pending, new secret, the old repository's secret is void", async () => {
    const old = f.linked("b-shop", "tenant-b", EXAMPLE_REPO);
    await f.ping(old, EXAMPLE_REPO, EXAMPLE_REPO_ID);
    const moved = linkGithubCommand(f.deps, { app: "b-shop", repo: A_REPO });
    expect(moved.status).toBe("pending");
    expect(f.row("b-shop")).toMatchObject({ githubRepoId: null, githubLinkStatus: "pending" });
    expect((await f.send(old, "push", examplePush())).status).toBe(401);
  });
});

describe("links made before per-link secrets (legacy)", () => {
  it("keep verifying with the global secret until a per-link secret is rotated in", async () => {
    const legacy = setup({ globalSecret: GLOBAL });
    try {
      createAppCommand(legacy.deps, {
        slug: "old",
        gitUrl: `https://github.com/${EXAMPLE_REPO}.git`,
        domain: "old.example.test",
        branch: "master",
      });
      // What the migration does to a deployed database's linked apps.
      legacy.db
        .update(apps)
        .set({ githubRepo: EXAMPLE_REPO, githubLinkStatus: "active", githubLegacySecret: true })
        .where(eq(apps.slug, "old"))
        .run();
      expect((await legacy.send(GLOBAL, "push", examplePush())).status).toBe(202);
      expect(legacy.row("old")?.githubRepoId).toBe(EXAMPLE_REPO_ID); // bound on the first verified delivery

      const { webhookSecret } = rotateWebhookSecretCommand(legacy.deps, { app: "old" });
      expect((await legacy.send(GLOBAL, "push", examplePush())).status).toBe(401);
      expect((await legacy.send(webhookSecret, "push", examplePush())).status).toBe(202);
    } finally {
      legacy.cleanup();
    }
  });

  it("the global secret verifies nothing for a link that has its own secret (outside App mode)", async () => {
    const g = setup({ globalSecret: GLOBAL });
    try {
      const secret = g.linked("b-shop", "tenant-b", EXAMPLE_REPO);
      await g.ping(secret, EXAMPLE_REPO, EXAMPLE_REPO_ID);
      const withInstallation = { ...examplePush(), installation: { id: 1 } };
      expect((await g.send(GLOBAL, "push", withInstallation)).status).toBe(401);
      expect(g.deliveries()).toHaveLength(0);
    } finally {
      g.cleanup();
    }
  });
});

describe("GitHub App mode", () => {
  let app: ReturnType<typeof setup>;
  beforeEach(() => {
    app = setup({ appMode: true, globalSecret: GLOBAL });
  });
  afterEach(() => app.cleanup());

  const fromInstallation = (id: number) => ({ ...examplePush(), installation: { id } });

  it("the installation covering the repository activates a pending link and is recorded", async () => {
    app.linked("b-shop", "tenant-b", EXAMPLE_REPO);
    const res = await app.send(GLOBAL, "push", fromInstallation(1));
    expect(res.status).toBe(200);
    expect(app.row("b-shop")).toMatchObject({
      githubLinkStatus: "active",
      githubRepoId: EXAMPLE_REPO_ID,
      githubInstallationId: 1,
    });
    expect(app.deliveries()).toHaveLength(0);
    expect((await app.send(GLOBAL, "push", fromInstallation(1))).status).toBe(202);
  });

  it("a delivery with another installation.id than the link's → refused and audited, nothing recorded", async () => {
    const b = app.linked("b-shop", "tenant-b", EXAMPLE_REPO);
    await app.send(GLOBAL, "push", fromInstallation(1));
    const res = await app.send(GLOBAL, "push", fromInstallation(2));
    expect(res.status).toBe(403);
    expect(app.deliveries()).toHaveLength(0);
    expect(app.queue.jobs.size).toBe(0);
    expect(app.audits("github.delivery")[0]?.details).toMatchObject({
      reason: "installation differs from the linked one",
      installationId: 2,
    });
    // The App's secret without an installation in the body proves nothing; the link's own secret still works.
    const bare = examplePush();
    delete bare.installation;
    expect((await app.send(GLOBAL, "push", bare)).status).toBe(401);
    expect((await app.send(b, "push", bare)).status).toBe(202);
  });
});

describe("head check: a replayed or stale push does not deploy", () => {
  function pushWorld(github: FakeGithub | undefined) {
    const secret = f.linked("b-shop", "tenant-b", EXAMPLE_REPO);
    return {
      secret,
      deps: { db: f.db, queue: f.queue, log: f.log.logger, github },
      async deliver(after: string) {
        const payload = { ...examplePush(), after };
        const res = await f.send(secret, "push", payload);
        expect(res.status).toBe(202);
        return ((await res.json()) as { delivery: string }).delivery;
      },
    };
  }
  const CURRENT = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
  const headCheck = (uuid: string) =>
    f.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.uuid, uuid)).get()?.headCheck;

  it("ignores a push whose `after` is no longer the head of its ref (audited) and deploys a current one", async () => {
    const github = new FakeGithub();
    github.heads.set(`${EXAMPLE_REPO} refs/heads/master`, CURRENT);
    const w = pushWorld(github);
    await f.ping(w.secret, EXAMPLE_REPO, EXAMPLE_REPO_ID);

    const stale = await w.deliver("a".repeat(40));
    const ignored = await processPushDelivery(w.deps, stale);
    expect(ignored).toMatchObject({ kind: "ignored", reason: expect.stringContaining("stale push") });
    expect(headCheck(stale)).toBe("stale");
    expect(f.db.select().from(deployments).all()).toHaveLength(0);
    const [audit] = f.audits("deploy");
    expect(audit).toMatchObject({ outcome: "denied", actorLabel: "github" });
    expect(audit?.details).toMatchObject({ commit: "a".repeat(40) });

    const current = await w.deliver(CURRENT);
    expect(await processPushDelivery(w.deps, current)).toMatchObject({ kind: "processed" });
    expect(headCheck(current)).toBe("current");
    expect(
      f.db
        .select()
        .from(deployments)
        .all()
        .map((d) => d.commitSha),
    ).toEqual([CURRENT]);
  });

  it("a ref that no longer exists is stale too", async () => {
    const w = pushWorld(new FakeGithub());
    await f.ping(w.secret, EXAMPLE_REPO, EXAMPLE_REPO_ID);
    const uuid = await w.deliver(CURRENT);
    expect(await processPushDelivery(w.deps, uuid)).toMatchObject({ kind: "ignored" });
    expect(f.db.select().from(deployments).all()).toHaveLength(0);
  });

  it("GitHub unreachable: the job fails (and is retried) instead of deploying unchecked", async () => {
    const github = new FakeGithub();
    github.down = true;
    const w = pushWorld(github);
    await f.ping(w.secret, EXAMPLE_REPO, EXAMPLE_REPO_ID);
    const uuid = await w.deliver(CURRENT);
    await expect(processPushDelivery(w.deps, uuid)).rejects.toThrow("503");
    expect(f.db.select().from(deployments).all()).toHaveLength(0);
  });

  it("without API credentials the push deploys and the delivery records that the head was not checked", async () => {
    const w = pushWorld(undefined);
    await f.ping(w.secret, EXAMPLE_REPO, EXAMPLE_REPO_ID);
    const uuid = await w.deliver("a".repeat(40));
    expect(await processPushDelivery(w.deps, uuid)).toMatchObject({ kind: "processed" });
    expect(headCheck(uuid)).toBe("not-checked");
  });
});
