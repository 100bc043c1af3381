import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createAppCommand, linkGithubCommand } from "../../commands/apps.ts";
import { proveGithubLink } from "../../commands/github-link-proof.ts";
import { formatGithubLink } from "../../src/cli/admin-format.ts";
import { apps, auditEvents } from "../../src/db/schema.ts";
import { getAppBySlug } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { requestDeployment } from "../../src/domain/deployments.ts";
import { createApp } from "../../src/http/app.ts";
import { githubRoute } from "../../src/http/github-route.ts";
import { githubGitCredentials } from "../../src/infra/github-credentials.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import type { JobPayloads } from "../../src/pipeline/queues.ts";
import { attachGithubStatusReporter } from "../../src/reporters/github-status.ts";
import { FakeGithub } from "../helpers/fake-github.ts";
import { FakeJobQueue } from "../helpers/fake-queue.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { deliveryStatuses, examplePing, examplePush, githubRequest, TEST_SECRET_KEY } from "../helpers/github.ts";
import { FLASK_FILES, pipelineFixture, SHA } from "../helpers/pipeline.ts";

/**
 * docs/security.md, *Tenant admin*: a tenant admin holds their own link's webhook secret, so a signed ping proves
 * nothing about the repository it names. With API credentials, a link turns active only once the repository holds
 * the link's challenge (or, in App mode, also the App's installation covers it), read back through the API.
 */

const GLOBAL = "the operator's App webhook secret";
const VICTIM = "victim/private";
const VICTIM_ID = 777;
const OWN = "tenant-a/site";
const OWN_ID = 4242;
const PROOF_FILE = ".tussilago/link";

function setup(options: { appMode?: boolean } = {}) {
  const p = pipelineFixture();
  const queue = new FakeJobQueue();
  const log = memoryLogger();
  const secrets = new SecretBox(TEST_SECRET_KEY);
  const github = new FakeGithub();
  github.repos.set(VICTIM, { id: VICTIM_ID, files: new Map() });
  github.repos.set(OWN, { id: OWN_ID, files: new Map() });
  const appMode = options.appMode ?? false;
  const http = (proofOfControl: boolean) =>
    createApp({
      logger: log.logger,
      readiness: [],
      githubRoutes: githubRoute({
        globalSecret: appMode ? GLOBAL : undefined,
        appMode,
        proofOfControl,
        secrets,
        maxBodyBytes: 1024 * 1024,
        db: p.db,
        queue,
        onRecorded: () => {},
      }),
    });
  const withCredentials = http(true);
  /** The same bot before GITHUB_TOKEN or an App was configured. */
  const withoutCredentials = http(false);
  const deps = { db: p.db, log: log.logger, secrets };
  const proofDeps = { db: p.db, log: log.logger, secrets, github, appMode };
  /** The fixture's app, pointed at `repo` on github.com and linked as its tenant admin would. */
  const link = (repo: string) => {
    const gitUrl = `https://github.com/${repo}.git`;
    p.db.update(apps).set({ gitUrl }).where(eq(apps.slug, "shop")).run();
    p.git.repos.set(gitUrl, { files: FLASK_FILES, commitSha: SHA, message: "m", author: "a" });
    return linkGithubCommand(deps, { app: "shop", repo });
  };
  const send = (secret: string, event: string, payload: unknown, bot = withCredentials) =>
    bot.request(
      "/webhooks/github",
      githubRequest(secret, event, JSON.stringify(payload), { deliveryId: randomUUID() }),
    );
  const ping = (secret: string, repo: string, repoId: number, bot = withCredentials) =>
    send(secret, "ping", examplePing(repo, repoId), bot);
  /** Runs the proof jobs the route queued, as the worker would, and forgets them. */
  const runProofs = async () => {
    const results = [];
    for (const [id, job] of [...queue.jobs]) {
      if (job.queue !== "github-link") continue;
      results.push(await proveGithubLink(proofDeps, job.data as JobPayloads["github-link"]));
      queue.jobs.delete(id);
    }
    return results;
  };
  const row = () => {
    const r = p.db.select().from(apps).where(eq(apps.slug, "shop")).get();
    if (!r) throw new Error("no app");
    return r;
  };
  const audits = (action: string) => p.db.select().from(auditEvents).where(eq(auditEvents.action, action)).all();
  return {
    ...p,
    queue,
    log,
    secrets,
    github,
    linkDeps: deps,
    link,
    send,
    ping,
    runProofs,
    row,
    audits,
    withoutCredentials,
  };
}

let f: ReturnType<typeof setup>;
beforeEach(() => {
  f = setup();
});
afterEach(() => f.cleanup());

describe("with API credentials, a signed ping is not proof of control", () => {
  it("tenant A links a victim's unlinked private repository and signs the ping itself → stays pending, no git token, nothing written, audited", async () => {
    const { webhookSecret, challenge } = f.link(VICTIM);
    expect(challenge).toMatch(/^[0-9a-f]{40}$/);

    // The attack: the admin holds the link's secret and the victim's repository name and id are public.
    const res = await f.ping(webhookSecret as string, VICTIM, VICTIM_ID);
    expect(res.status).toBe(202);
    expect(f.row()).toMatchObject({ githubLinkStatus: "pending", githubRepoId: null });
    const [result] = await f.runProofs();
    expect(result).toMatchObject({ kind: "denied" });
    expect(f.row()).toMatchObject({ githubLinkStatus: "pending", githubRepoId: null });
    expect(f.audits("app.github-link-activated")).toHaveLength(0);
    const [denied] = f.audits("app.github-link-proof");
    expect(denied).toMatchObject({ outcome: "denied", actorLabel: "github", appId: f.row().id });
    expect(denied?.details).toMatchObject({
      repo: VICTIM,
      repositoryId: VICTIM_ID,
      reason: expect.stringContaining(PROOF_FILE),
    });

    // No credentials for the fetch, and a command deploy writes nothing to the victim's repository.
    expect(await githubGitCredentials(f.github, getAppBySlug(f.db, "shop"))).toBeUndefined();
    const reporter = attachGithubStatusReporter(f.deps.events, { db: f.db, github: f.github, log: f.log.logger });
    const { deployment } = requestDeployment(f.db, {
      appUuid: f.app.uuid,
      trigger: "command",
      ref: "main",
      commitSha: SHA,
    });
    f.deps.gitCredentials = (app) => githubGitCredentials(f.github, app);
    expect(await runDeployment(f.deps, deployment.uuid, { finalAttempt: false })).toBe("succeeded");
    await reporter.idle();
    reporter.detach();
    expect(f.git.calls.at(-1)?.credentials).toBeUndefined();
    expect(f.github.calls).toEqual([]);
    // The proof was read as a yes/no: the file's content is neither logged nor audited.
    expect(f.github.reads).toContain(`file ${VICTIM} ${PROOF_FILE}`);
  });

  it("once the challenge is committed to the repository, the next signed ping activates the link", async () => {
    const { webhookSecret, challenge } = f.link(VICTIM);
    await f.ping(webhookSecret as string, VICTIM, VICTIM_ID);
    await f.runProofs();
    expect(f.row().githubLinkStatus).toBe("pending");

    f.github.repos.get(VICTIM)?.files.set(PROOF_FILE, `# proves this repository's link\ntussilago-link ${challenge}\n`);
    expect((await f.ping(webhookSecret as string, VICTIM, VICTIM_ID)).status).toBe(202);
    expect(await f.runProofs()).toEqual([expect.objectContaining({ kind: "activated" })]);
    expect(f.row()).toMatchObject({
      githubLinkStatus: "active",
      githubRepoId: VICTIM_ID,
      githubLinkProof: "challenge-file",
    });
    expect(f.audits("app.github-link-activated")[0]?.details).toMatchObject({ proof: "challenge-file" });
    expect(await githubGitCredentials(f.github, getAppBySlug(f.db, "shop"))).toEqual({
      username: "x-access-token",
      password: f.github.token,
    });
    // A push now deploys; it does not queue another proof.
    expect(
      (
        await f.send(webhookSecret as string, "push", {
          ...examplePush(),
          // The app's own branch: a push of a branch it does not follow is recorded ignored, with no job at all.
          ref: `refs/heads/${f.row().branch}`,
          repository: { ...(examplePush().repository as object), id: VICTIM_ID, full_name: VICTIM },
        })
      ).status,
    ).toBe(202);
    // Recorded for the outbox relay (src/pipeline/delivery-relay.ts), which enqueues the push; no proof job.
    expect(deliveryStatuses(f.db)).toEqual(["received"]);
    expect([...f.queue.jobs.values()].map((j) => j.queue)).toEqual([]);
  });

  it("a pending link's first push is checked the same way: no activation, no delivery, no job but the proof", async () => {
    const { webhookSecret } = f.link(VICTIM);
    const push = {
      ...examplePush(),
      repository: { ...(examplePush().repository as object), id: VICTIM_ID, full_name: VICTIM },
    };
    expect((await f.send(webhookSecret as string, "push", push)).status).toBe(202);
    expect([...f.queue.jobs.values()].map((j) => j.queue)).toEqual(["github-link"]);
    await f.runProofs();
    expect(f.row().githubLinkStatus).toBe("pending");
  });

  it("neither the webhook secret nor another link's challenge in the file proves anything", async () => {
    const { webhookSecret, challenge } = f.link(VICTIM);
    const files = f.github.repos.get(VICTIM)?.files as Map<string, string>;
    for (const content of [
      `tussilago-link ${webhookSecret}`,
      `tussilago-link ${"0".repeat(40)}`,
      challenge as string,
    ]) {
      files.set(PROOF_FILE, content);
      await f.ping(webhookSecret as string, VICTIM, VICTIM_ID);
      expect(await f.runProofs()).toEqual([expect.objectContaining({ kind: "denied" })]);
    }
    files.delete(PROOF_FILE);
    files.set(".tussilago/other", `tussilago-link ${challenge}`);
    await f.ping(webhookSecret as string, VICTIM, VICTIM_ID);
    expect(await f.runProofs()).toEqual([expect.objectContaining({ kind: "denied" })]);
    expect(f.row().githubLinkStatus).toBe("pending");
  });

  it("a ping naming the victim's repository id under the attacker's own repository name → the id at GitHub differs, stays pending", async () => {
    const { webhookSecret, challenge } = f.link(OWN);
    f.github.repos.get(OWN)?.files.set(PROOF_FILE, `tussilago-link ${challenge}`);
    // Bound to the victim's id, a later signed "rename" to the victim's name would follow it.
    expect((await f.ping(webhookSecret as string, OWN, VICTIM_ID)).status).toBe(202);
    const [result] = await f.runProofs();
    expect(result).toMatchObject({ kind: "denied", reason: expect.stringContaining("repository id") });
    expect(f.row()).toMatchObject({ githubLinkStatus: "pending", githubRepoId: null });
  });

  it("a forged rename: an active link's push naming its own id under the victim's name is not applied", async () => {
    const { webhookSecret, challenge } = f.link(OWN);
    f.github.repos.get(OWN)?.files.set(PROOF_FILE, `tussilago-link ${challenge}`);
    await f.ping(webhookSecret as string, OWN, OWN_ID);
    await f.runProofs();
    expect(f.row()).toMatchObject({ githubLinkStatus: "active", githubRepoId: OWN_ID });

    const renamed = {
      ...examplePush(),
      repository: { ...(examplePush().repository as object), id: OWN_ID, full_name: VICTIM },
    };
    await f.send(webhookSecret as string, "push", renamed);
    expect(f.row().githubRepo).toBe(OWN);
    const [result] = await f.runProofs();
    expect(result).toMatchObject({ kind: "denied" });
    expect(f.row().githubRepo).toBe(OWN);
    expect(f.audits("app.github-repo-renamed")).toHaveLength(0);

    // A genuine rename (GitHub shows the same id under the new name) is followed.
    f.github.repos.set("tenant-a/new-site", { id: OWN_ID, files: new Map() });
    f.github.repos.delete(OWN);
    const genuine = { ...renamed, repository: { ...renamed.repository, full_name: "tenant-a/new-site" } };
    await f.send(webhookSecret as string, "push", genuine);
    expect(await f.runProofs()).toEqual([expect.objectContaining({ kind: "renamed" })]);
    expect(f.row().githubRepo).toBe("tenant-a/new-site");
  });

  it("a link activated by a signature alone (before credentials were configured) gets no token and no status until its challenge is read", async () => {
    const { webhookSecret, challenge } = f.link(VICTIM);
    const secret = webhookSecret as string;
    expect((await f.ping(secret, VICTIM, VICTIM_ID, f.withoutCredentials)).status).toBe(200);
    expect(f.row()).toMatchObject({ githubLinkStatus: "active", githubLinkProof: "signature" });

    // Credentials configured now: the old activation is not trusted with them.
    expect(await githubGitCredentials(f.github, getAppBySlug(f.db, "shop"))).toBeUndefined();
    const reporter = attachGithubStatusReporter(f.deps.events, { db: f.db, github: f.github, log: f.log.logger });
    const { deployment } = requestDeployment(f.db, {
      appUuid: f.app.uuid,
      trigger: "command",
      ref: "main",
      commitSha: SHA,
    });
    expect(await runDeployment(f.deps, deployment.uuid, { finalAttempt: false })).toBe("succeeded");
    await reporter.idle();
    reporter.detach();
    expect(f.github.calls).toEqual([]);

    // Its pushes still deploy (as a public repository) and each queues the proof, denied without the file.
    const push = {
      ...examplePush(),
      ref: `refs/heads/${f.row().branch}`,
      repository: { ...(examplePush().repository as object), id: VICTIM_ID, full_name: VICTIM },
    };
    expect((await f.send(secret, "push", push)).status).toBe(202);
    expect([...f.queue.jobs.values()].map((j) => j.queue)).toEqual(["github-link"]);
    expect(deliveryStatuses(f.db)).toEqual(["received"]);
    expect(await f.runProofs()).toEqual([expect.objectContaining({ kind: "denied" })]);
    expect(f.row()).toMatchObject({ githubLinkStatus: "active", githubLinkProof: "signature" });

    f.github.repos.get(VICTIM)?.files.set(PROOF_FILE, `tussilago-link ${challenge}`);
    await f.send(secret, "push", push);
    expect(await f.runProofs()).toEqual([expect.objectContaining({ kind: "activated" })]);
    expect(f.row()).toMatchObject({ githubLinkStatus: "active", githubLinkProof: "challenge-file" });
    expect(f.audits("app.github-link-proved")).toHaveLength(1);
    expect(await githubGitCredentials(f.github, getAppBySlug(f.db, "shop"))).toBeDefined();
  });

  it("another tenant's link activated by a signature alone does not keep the repository's controller out", async () => {
    const squatter = f.link(VICTIM); // tenant of the fixture's app, before credentials were configured
    await f.ping(squatter.webhookSecret as string, VICTIM, VICTIM_ID, f.withoutCredentials);
    expect(f.row()).toMatchObject({
      githubLinkStatus: "active",
      githubRepoId: VICTIM_ID,
      githubLinkProof: "signature",
    });

    createAppCommand(f.linkDeps, {
      slug: "own",
      tenant: "victim-tenant",
      gitUrl: `https://github.com/${VICTIM}.git`,
      domain: "own.example.test",
      branch: "main",
    });
    const owner = linkGithubCommand(f.linkDeps, { app: "own", repo: VICTIM });
    f.github.repos.get(VICTIM)?.files.set(PROOF_FILE, `tussilago-link ${owner.challenge}`);
    expect((await f.ping(owner.webhookSecret as string, VICTIM, VICTIM_ID)).status).toBe(202);
    expect(await f.runProofs()).toEqual([expect.objectContaining({ kind: "activated" })]);
    const own = f.db.select().from(apps).where(eq(apps.slug, "own")).get();
    expect(own).toMatchObject({ githubLinkStatus: "active", githubLinkProof: "challenge-file" });
    // The squatter's link never gets the bot's credentials.
    expect(await githubGitCredentials(f.github, getAppBySlug(f.db, "shop"))).toBeUndefined();
  });

  it("GitHub unreachable: the proof job fails (and is retried), the link stays pending", async () => {
    const { webhookSecret } = f.link(VICTIM);
    await f.ping(webhookSecret as string, VICTIM, VICTIM_ID);
    f.github.down = true;
    await expect(f.runProofs()).rejects.toThrow("503");
    expect(f.row().githubLinkStatus).toBe("pending");
  });

  it("the CLI prints the challenge and the file to commit with the secret, once", () => {
    const link = f.link(VICTIM);
    const text = formatGithubLink(link);
    expect(text).toContain(`${PROOF_FILE}`);
    expect(text).toContain(`tussilago-link ${link.challenge}`);
    expect(link.challenge).not.toContain(link.webhookSecret as string);
    expect(f.log.text()).not.toContain(link.challenge as string);
  });
});

describe("GitHub App mode", () => {
  let g: ReturnType<typeof setup>;
  beforeEach(() => {
    g = setup({ appMode: true });
  });
  afterEach(() => g.cleanup());
  const fromInstallation = (id: number) => ({
    ...examplePush(),
    repository: { ...(examplePush().repository as object), id: VICTIM_ID, full_name: VICTIM },
    installation: { id },
  });

  it("an installation that does not cover the repository → stays pending, even with the challenge committed", async () => {
    const { challenge } = g.link(VICTIM);
    g.github.repos.get(VICTIM)?.files.set(PROOF_FILE, `tussilago-link ${challenge}`);
    expect((await g.send(GLOBAL, "push", fromInstallation(1))).status).toBe(202);
    const [result] = await g.runProofs();
    expect(result).toMatchObject({ kind: "denied", reason: expect.stringContaining("installation") });
    expect(g.row()).toMatchObject({ githubLinkStatus: "pending", githubInstallationId: null });

    // Covered by another installation than the delivery's: still pending.
    (g.github.repos.get(VICTIM) as { installationId?: number }).installationId = 2;
    await g.send(GLOBAL, "push", fromInstallation(1));
    expect(await g.runProofs()).toEqual([expect.objectContaining({ kind: "denied" })]);
    expect(g.row().githubLinkStatus).toBe("pending");
  });

  it("the installation covers the repository but the challenge is missing → stays pending; with both it activates", async () => {
    const { challenge } = g.link(VICTIM);
    (g.github.repos.get(VICTIM) as { installationId?: number }).installationId = 1;
    await g.send(GLOBAL, "push", fromInstallation(1));
    expect(await g.runProofs()).toEqual([expect.objectContaining({ kind: "denied" })]);
    expect(g.row().githubLinkStatus).toBe("pending");

    g.github.repos.get(VICTIM)?.files.set(PROOF_FILE, `tussilago-link ${challenge}`);
    await g.send(GLOBAL, "push", fromInstallation(1));
    expect(await g.runProofs()).toEqual([expect.objectContaining({ kind: "activated" })]);
    expect(g.row()).toMatchObject({ githubLinkStatus: "active", githubRepoId: VICTIM_ID, githubInstallationId: 1 });
  });
});
