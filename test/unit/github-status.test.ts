import { eq } from "drizzle-orm";
import { MockAgent } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { apps, deployments } from "../../src/db/schema.ts";
import { getDeployment, requestDeployment } from "../../src/domain/deployments.ts";
import { ApiAvailability } from "../../src/infra/api-availability.ts";
import { GithubRestClient } from "../../src/infra/github-api.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { attachGithubStatusReporter, type GithubStatusReporter } from "../../src/reporters/github-status.ts";
import { FakeGithub } from "../helpers/fake-github.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { type PipelineFixture, pipelineFixture, SHA } from "../helpers/pipeline.ts";

let f: PipelineFixture;
let github: FakeGithub;
let log: ReturnType<typeof memoryLogger>;
let reporter: GithubStatusReporter;

beforeEach(() => {
  f = pipelineFixture();
  f.db
    .update(apps)
    .set({ githubRepo: "acme/shop", githubLinkStatus: "active", githubLinkProof: "challenge-file" })
    .where(eq(apps.uuid, f.app.uuid))
    .run();
  github = new FakeGithub();
  log = memoryLogger();
  reporter = attachGithubStatusReporter(f.deps.events, { db: f.db, github, log: log.logger });
});
afterEach(() => {
  reporter.detach();
  f.cleanup();
});

const pushDeployment = () =>
  requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "push", ref: "main", commitSha: SHA }).deployment.uuid;

const summary = () =>
  github.calls.map((c) =>
    c.kind === "commit-status"
      ? `status ${c.status.state}`
      : c.kind === "deployment"
        ? "deployment"
        : `deployment-status ${c.status.state}`,
  );

describe("GitHub status reporter", () => {
  it("reports pending → success on the commit and in_progress → success on a GitHub Deployment", async () => {
    const id = pushDeployment();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    await reporter.idle();

    expect(summary()).toEqual([
      "status pending",
      "deployment",
      "deployment-status in_progress",
      "status success",
      "deployment-status success",
    ]);
    const [pending, created, , success, finalStatus] = github.calls;
    expect(pending).toMatchObject({ repo: "acme/shop", sha: SHA, status: { context: "tussilago/shop" } });
    expect(created).toMatchObject({
      kind: "deployment",
      input: { ref: SHA, environment: "production", auto_merge: false, required_contexts: [] },
    });
    expect(success).toMatchObject({
      status: { state: "success", context: "tussilago/shop", target_url: "http://shop.example.test" },
    });
    const ghId = created?.kind === "deployment" ? created.id : "";
    expect(finalStatus).toMatchObject({
      deploymentId: ghId,
      status: { state: "success", environment_url: "http://shop.example.test" },
    });
    const row = f.db.select().from(deployments).where(eq(deployments.uuid, id)).get();
    expect(row?.githubDeploymentId).toBe(ghId);
  });

  it("reports a command deployment once its commit is known (after the source stage)", async () => {
    const id = requestDeployment(f.db, { appUuid: f.app.uuid, trigger: "command", ref: "main" }).deployment.uuid;
    await runDeployment(f.deps, id, { finalAttempt: false });
    await reporter.idle();
    expect(summary()).toEqual([
      "status pending",
      "deployment",
      "deployment-status in_progress",
      "status success",
      "deployment-status success",
    ]);
    expect(github.calls.every((c) => c.kind !== "commit-status" || c.sha === SHA)).toBe(true);
  });

  it("reports pending → failure with the reason cut to 140 characters", async () => {
    f.probe.answers = [503];
    const id = pushDeployment();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("failed");
    await reporter.idle();
    expect(summary()).toEqual([
      "status pending",
      "deployment",
      "deployment-status in_progress",
      "status failure",
      "deployment-status failure",
    ]);
    const failure = github.calls[3];
    const description = failure?.kind === "commit-status" ? (failure.status.description ?? "") : "";
    expect(description).toContain("health check");
    expect(description.length).toBeLessThanOrEqual(140);
    expect(failure).toMatchObject({ kind: "commit-status", status: { state: "failure" } });
    expect(failure?.kind === "commit-status" ? failure.status.target_url : "missing").toBeUndefined();
  });

  it("reports nothing for apps not linked to a GitHub repository", async () => {
    f.db.update(apps).set({ githubRepo: null }).where(eq(apps.uuid, f.app.uuid)).run();
    await runDeployment(f.deps, pushDeployment(), { finalAttempt: false });
    await reporter.idle();
    expect(github.calls).toEqual([]);
  });

  it("never fails a deployment when GitHub is down", async () => {
    github.down = true;
    const id = pushDeployment();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    await reporter.idle();
    expect(getDeployment(f.db, id).status).toBe("succeeded");
    expect(log.lines().filter((l) => String(l.msg).includes("not sent")).length).toBeGreaterThan(0);
  });

  it("GitHub down during the deployment: every report is kept and sent once it is back, in order, each once", async () => {
    reporter.detach();
    const availability = new ApiAvailability({ name: "github", log: log.logger });
    const delays: number[] = [];
    reporter = attachGithubStatusReporter(f.deps.events, {
      db: f.db,
      github,
      log: log.logger,
      availability,
      // Each wait between tries is a turn of the event loop: the reports keep trying until the test brings GitHub back.
      sleep: async (ms) => {
        delays.push(ms);
        await new Promise((resolve) => setImmediate(resolve));
      },
    });
    github.down = true;
    const id = pushDeployment();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    expect(availability.detail()).toMatch(/^github: unreachable since \S+Z, retrying$/);
    expect(github.calls).toEqual([]);
    github.down = false;
    await reporter.idle();

    expect(summary()).toEqual([
      "status pending",
      "deployment",
      "deployment-status in_progress",
      "status success",
      "deployment-status success",
    ]);
    expect(availability.state).toBe("up");
    expect(Math.max(...delays)).toBeLessThanOrEqual(30_000);
    const msgs = log.lines().map((l) => String(l.msg));
    expect(msgs.filter((m) => m === "github API unreachable; retrying in the background")).toHaveLength(1);
    expect(msgs.filter((m) => m === "github API reachable again")).toHaveLength(1);
    expect(msgs.some((m) => m.includes("not sent"))).toBe(false);
  });

  it("a report kept for GitHub is given up after catchUpForMs, and detach() ends the waiting at once", async () => {
    reporter.detach();
    let now = 0;
    reporter = attachGithubStatusReporter(f.deps.events, {
      db: f.db,
      github,
      log: log.logger,
      availability: new ApiAvailability({ name: "github", log: log.logger }),
      catchUpForMs: 60_000,
      now: () => now,
      sleep: async (ms) => {
        now += ms;
        await new Promise((resolve) => setImmediate(resolve));
      },
    });
    github.down = true;
    const id = pushDeployment();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    await reporter.idle();
    expect(github.calls).toEqual([]);
    expect(log.lines().filter((l) => String(l.msg).includes("not sent")).length).toBeGreaterThan(0);

    // With the real sleep, detach() (shutdown) wakes the waiting reports: idle() settles without GitHub.
    reporter = attachGithubStatusReporter(f.deps.events, {
      db: f.db,
      github,
      log: log.logger,
      availability: new ApiAvailability({ name: "github", log: log.logger }),
    });
    const second = pushDeployment();
    expect(await runDeployment(f.deps, second, { finalAttempt: false })).toBe("succeeded");
    reporter.detach();
    await reporter.idle();
    expect(github.calls).toEqual([]);
  });

  it("never makes a deployment wait for a hanging GitHub", async () => {
    let release: () => void = () => {};
    github.gate = new Promise((resolve) => {
      release = resolve;
    });
    const id = pushDeployment();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    expect(github.calls).toEqual([]);
    release();
    await reporter.idle();
    expect(summary().at(-1)).toBe("deployment-status success");
  });

  it("gives up after bounded retries when the real client only gets 503s", async () => {
    reporter.detach();
    const agent = new MockAgent();
    agent.disableNetConnect();
    agent.get("https://api.github.com").intercept({ method: "POST", path: /.*/ }).reply(503, "unavailable").persist();
    let sleeps = 0;
    const client = new GithubRestClient({
      apiUrl: "https://api.github.com",
      auth: { kind: "token", token: "t" },
      log: log.logger,
      dispatcher: agent,
      sleep: async () => {
        sleeps++;
      },
      maxAttempts: 3,
    });
    reporter = attachGithubStatusReporter(f.deps.events, { db: f.db, github: client, log: log.logger });
    const id = pushDeployment();
    expect(await runDeployment(f.deps, id, { finalAttempt: false })).toBe("succeeded");
    await reporter.idle();
    // pending status + deployment, then success status + deployment again (no id stored): 4 calls × 2 retries.
    expect(sleeps).toBe(8);
    expect(getDeployment(f.db, id).status).toBe("succeeded");
    await agent.close();
  });
});
