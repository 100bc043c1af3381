import { randomUUID } from "node:crypto";
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { processPushDelivery } from "../../commands/push-deploy.ts";
import { webhookDeliveries } from "../../src/db/schema.ts";
import type { AppView } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { type DeploymentView, listDeployments } from "../../src/domain/deployments.ts";
import { createApp } from "../../src/http/app.ts";
import { githubRoute } from "../../src/http/github-route.ts";
import type { CommitStatusInput, DeploymentInput, DeploymentStatusInput } from "../../src/infra/github-api.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import type { DeliveryRelay } from "../../src/pipeline/delivery-relay.ts";
import { abortableSleep } from "../../src/pipeline/deps.ts";
import type { PipelineEvent } from "../../src/pipeline/events.ts";
import { registerPushWorker } from "../../src/pipeline/push-worker.ts";
import { QUEUE_NAMES } from "../../src/pipeline/queues.ts";
import { attachGithubStatusReporter, type GithubStatusReporter } from "../../src/reporters/github-status.ts";
import { BASE_IMAGE, type E2EPipeline, FIXTURES, startE2EPipeline } from "../helpers/e2e-pipeline.ts";
import { FakeGithub } from "../helpers/fake-github.ts";
import { memoryLogger } from "../helpers/fixtures.ts";
import { EXAMPLE_REPO_ID, examplePush, githubRequest, TEST_SECRET_KEY } from "../helpers/github.ts";
import { activateLinkForTest } from "../helpers/github-links.ts";
import { relayFor } from "../helpers/relay.ts";

const secrets = new SecretBox(TEST_SECRET_KEY);

// One push's full life on the real pipeline: a signed webhook for a local bare repository → push worker → deploy
// worker (podman + runsc) → Caddy serves it → the commit status on (a fake) GitHub goes pending → success.
/** The link's own webhook secret (set when the link is activated in beforeAll). */
let SECRET = "";
const APP_URL = "http://pushed.e2e.test";

/** FakeGithub that also notes when each call arrived, for the timeline. */
class TimedGithub extends FakeGithub {
  readonly at: number[] = [];

  override async createCommitStatus(owner: string, repo: string, sha: string, status: CommitStatusInput) {
    await super.createCommitStatus(owner, repo, sha, status);
    this.at.push(Date.now());
  }

  override async createDeployment(owner: string, repo: string, input: DeploymentInput) {
    const created = await super.createDeployment(owner, repo, input);
    this.at.push(Date.now());
    return created;
  }

  override async createDeploymentStatus(owner: string, repo: string, id: string, status: DeploymentStatusInput) {
    await super.createDeploymentStatus(owner, repo, id, status);
    this.at.push(Date.now());
  }
}

let p: E2EPipeline;
let http: ReturnType<typeof createApp>;
let github: TimedGithub;
let reporter: GithubStatusReporter;
let relay: DeliveryRelay;
let app: AppView;
let work: string;
const events: { event: PipelineEvent; at: number }[] = [];

beforeAll(async () => {
  await new ExecaRunner(memoryLogger("silent").logger).run("bash", ["scripts/build-base-image.sh", BASE_IMAGE], {
    timeoutMs: 900_000,
  });
  p = await startE2EPipeline();
  const bare = join(p.workDir, "repos", "pushed.git");
  work = join(p.workDir, "repos", "pushed-work");
  mkdirSync(bare, { recursive: true });
  await p.git(bare, ["init", "-q", "--bare", "-b", "main"]);
  cpSync(join(FIXTURES, "flask-app"), work, { recursive: true });
  await p.git(work, ["init", "-q", "-b", "main"]);
  await p.git(work, ["remote", "add", "origin", `file://${bare}`]);

  github = new TimedGithub();
  // With API credentials the worker checks that `after` is still the branch head (pushRelease records it).
  const pushDeps = { db: p.db, queue: p.queue, log: p.log, github };
  registerPushWorker(p.pool, (deliveryUuid) => processPushDelivery(pushDeps, deliveryUuid));
  relay = relayFor(p.db, p.queue, p.log).relay;
  relay.start();
  reporter = attachGithubStatusReporter(p.events, { db: p.db, github, log: p.log });
  p.events.subscribe((event) => {
    events.push({ event, at: Date.now() });
  });
  http = createApp({
    logger: p.log,
    readiness: [],
    githubRoutes: githubRoute({
      globalSecret: undefined,
      appMode: false,
      secrets,
      maxBodyBytes: 1024 * 1024,
      db: p.db,
      onRecorded: relay.wake.bind(relay),
    }),
  });
  // A full core and a half, as in deploy.test.ts: uv sync under gVisor is slow on a busy 2-core machine.
  app = p.createApp("pushed", `file://${bare}`, { githubRepo: "acme/pushed", branch: "main", cpus: "1.5" });
  SECRET = activateLinkForTest(p.db, secrets, app.uuid, { repo: "acme/pushed", repoId: EXAMPLE_REPO_ID });
}, 900_000);

afterAll(async () => {
  await relay?.stop();
  reporter?.detach();
  await p?.close();
}, 120_000);

/** Commits a RELEASE marker in the work clone and pushes it to the bare repo's `main`; returns the commit. */
async function pushRelease(release: string): Promise<string> {
  writeFileSync(join(work, "RELEASE"), `${release}\n`);
  await p.git(work, ["add", "-A"]);
  await p.git(work, ["commit", "-q", "-m", `release ${release}`]);
  await p.git(work, ["push", "-q", "origin", "main"]);
  const sha = await p.git(work, ["rev-parse", "HEAD"]);
  github.heads.set("acme/pushed refs/heads/main", sha);
  return sha;
}

/** The official example push, pointed at our repo, branch and commit. */
function pushPayload(sha: string, release: string): string {
  const push = examplePush();
  const repository = push.repository as Record<string, unknown>;
  const headCommit = push.head_commit as Record<string, unknown>;
  return JSON.stringify({
    ...push,
    ref: "refs/heads/main",
    after: sha,
    repository: { ...repository, name: "pushed", full_name: "acme/pushed" },
    pusher: { name: "e2e", email: "e2e@example.test" },
    head_commit: {
      ...headCommit,
      id: sha,
      message: `release ${release}`,
      author: { name: "E2E", email: "e2e@example.test", username: "e2e" },
    },
  });
}

async function deliver(body: string, deliveryId: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await http.request("/webhooks/github", githubRequest(SECRET, "push", body, { deliveryId }));
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** The deployment the push worker created for `sha`, once it exists. */
async function deploymentOf(sha: string): Promise<DeploymentView> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const found = listDeployments(p.db, app.uuid).find((d) => d.commitSha === sha);
    if (found) return found;
    await abortableSleep(50);
  }
  throw new Error(`no deployment for ${sha}`);
}

function callsFor(sha: string, githubDeploymentIds: string[]) {
  return github.calls.filter(
    (c) =>
      (c.kind === "commit-status" && c.sha === sha) ||
      (c.kind === "deployment" && c.input.ref === sha) ||
      (c.kind === "deployment-status" && githubDeploymentIds.includes(c.deploymentId)),
  );
}

function printTimeline(t0: number, accepted: number, deployment: DeploymentView, ghDeployments: string[]): void {
  const entries: [number, string][] = [
    [t0, "webhook POST /webhooks/github (signed)"],
    [accepted, "202 accepted"],
    [deployment.createdAt.getTime(), `deployment created (trigger ${deployment.trigger}, ref ${deployment.ref})`],
  ];
  for (const { event, at } of events) {
    if (event.deploymentUuid !== deployment.uuid) continue;
    if (event.type === "deployment") {
      const total = event.durationMs === undefined ? "" : ` after ${event.durationMs} ms`;
      entries.push([at, `deployment ${event.status}${total}`]);
    } else if (event.type === "stage" && event.status !== "started") {
      const took = event.durationMs === undefined ? "" : ` ${event.durationMs} ms`;
      entries.push([at, `stage ${event.stage.padEnd(6)} ${event.status}${took}  ${event.excerpt ?? ""}`]);
    }
  }
  github.calls.forEach((call, i) => {
    const at = github.at[i] ?? 0;
    if (call.kind === "commit-status" && call.sha === deployment.commitSha) {
      const target = call.status.target_url ? ` → ${call.status.target_url}` : "";
      entries.push([at, `GitHub commit status ${call.status.state}${target}`]);
    } else if (call.kind === "deployment" && call.input.ref === deployment.commitSha) {
      entries.push([at, `GitHub deployment created (${call.input.environment})`]);
    } else if (call.kind === "deployment-status" && ghDeployments.includes(call.deploymentId)) {
      entries.push([at, `GitHub deployment status ${call.status.state}`]);
    }
  });
  const lines = entries
    .sort((a, b) => a[0] - b[0])
    .map(([at, text]) => `  +${String(at - t0).padStart(6)} ms  ${text}`);
  const head = `push life of acme/pushed@${deployment.commitSha?.slice(0, 12)} (deployment ${deployment.uuid}):`;
  process.stderr.write(`${head}\n${lines.join("\n")}\n`);
}

describe("GitHub push webhook on podman + runsc + Caddy", () => {
  let firstSha: string;
  let firstBody: string;
  let firstDelivery: string;

  it("a signed push webhook for a local bare repository ends with the app served through Caddy", async () => {
    const sha = await pushRelease("push-v1");
    firstSha = sha;
    firstBody = pushPayload(sha, "push-v1");
    firstDelivery = randomUUID();

    const t0 = Date.now();
    const res = await deliver(firstBody, firstDelivery);
    const accepted = Date.now();
    expect(res.status).toBe(202);
    expect(res.json).toMatchObject({ accepted: true });

    const created = await deploymentOf(sha);
    expect(created).toMatchObject({ trigger: "push", ref: "main", commitSha: sha, commitMessage: "release push-v1" });
    const d = await p.waitFinished(created.uuid);
    expect(d.failureReason).toBeNull();
    expect(d.status).toBe("succeeded");
    const served = await p.get("pushed.e2e.test");
    expect(served.status).toBe(200);
    expect(JSON.parse(served.body)).toEqual({ release: "push-v1" });

    await reporter.idle();
    const ghDeployments = github.calls.flatMap((c) => (c.kind === "deployment" && c.input.ref === sha ? [c.id] : []));
    expect(ghDeployments).toHaveLength(1);
    expect(callsFor(sha, ghDeployments).map(summary)).toEqual([
      "commit-status pending",
      `deployment ${sha}`,
      "deployment-status in_progress",
      `commit-status success ${APP_URL}`,
      `deployment-status success ${APP_URL}`,
    ]);
    printTimeline(t0, accepted, d, ghDeployments);
  });

  it("a second push deploys and serves push-v2; a replay of the first delivery creates nothing", async () => {
    const sha2 = await pushRelease("push-v2");
    const second = await deliver(pushPayload(sha2, "push-v2"), randomUUID());
    expect(second.status).toBe(202);
    // GitHub redelivers the first push (same X-GitHub-Delivery): answered, but no new delivery, job or deployment.
    const replay = await deliver(firstBody, firstDelivery);
    expect(replay.status).toBe(200);
    expect(replay.json).toMatchObject({ duplicate: true });

    const d = await p.waitFinished((await deploymentOf(sha2)).uuid);
    expect(d.failureReason).toBeNull();
    expect(d.status).toBe("succeeded");
    const served = await p.get("pushed.e2e.test");
    expect(served.status).toBe(200);
    expect(JSON.parse(served.body)).toEqual({ release: "push-v2" });

    const deployments = listDeployments(p.db, app.uuid);
    expect(deployments.map((x) => x.commitSha).sort()).toEqual([firstSha, sha2].sort());
    expect(deployments.every((x) => x.trigger === "push" && x.status === "succeeded")).toBe(true);
    const deliveries = p.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.event, "push")).all();
    expect(deliveries).toHaveLength(2);
    const pushJobs = await p.queue.queue(QUEUE_NAMES.githubPush).getJobCounts();
    expect(Object.values(pushJobs).reduce((a, b) => a + b, 0)).toBe(2);

    await reporter.idle();
    const ghDeployments = github.calls.flatMap((c) => (c.kind === "deployment" && c.input.ref === sha2 ? [c.id] : []));
    expect(callsFor(sha2, ghDeployments).map(summary)).toEqual([
      "commit-status pending",
      `deployment ${sha2}`,
      "deployment-status in_progress",
      `commit-status success ${APP_URL}`,
      `deployment-status success ${APP_URL}`,
    ]);
  });
});

function summary(call: FakeGithub["calls"][number]): string {
  if (call.kind === "commit-status") return `commit-status ${call.status.state} ${call.status.target_url ?? ""}`.trim();
  if (call.kind === "deployment") return `deployment ${call.input.ref}`;
  return `deployment-status ${call.status.state} ${call.status.environment_url ?? ""}`.trim();
}
