import { mkdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { getRequestListener } from "@hono/node-server";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getApproval, requestApproval } from "../../src/domain/approvals.ts";
import type { AppView } from "../../src/domain/apps.ts";
import {
  claimDeployment,
  finishDeployment,
  recordStage,
  requestDeployment,
  setDeploymentSource,
} from "../../src/domain/deployments.ts";
import { recordRelease } from "../../src/domain/releases.ts";
import type { StageName } from "../../src/pipeline/events.ts";
import { type DashboardWorld, dashboardWorld, slackUser } from "../helpers/dashboard.ts";
import { FakeSlackOidc } from "../helpers/fake-slack-oidc.ts";
import { tempDir } from "../helpers/fixtures.ts";

// The web dashboard in a real headless Chromium (Debian's package), signed in through a fake Slack OpenID provider
// on a real port. Deployments are driven through the real domain functions and pipeline events (no podman needed):
// the page must show each stage as it happens, without a reload. Screenshots go to docs/img/ when
// TUSSILAGO_DASHBOARD_SCREENSHOTS=1 (docs/dashboard.md), to a temp dir otherwise.
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const shots = process.env.TUSSILAGO_DASHBOARD_SCREENSHOTS === "1" ? undefined : tempDir("tussilago-shots-");
const SHOT_DIR = shots?.path ?? join(process.cwd(), "docs", "img");

let issuer: FakeSlackOidc;
let server: Server;
let w: DashboardWorld;
let browser: Browser;
let shop: AppView;

beforeAll(async () => {
  mkdirSync(SHOT_DIR, { recursive: true });
  issuer = new FakeSlackOidc();
  const issuerUrl = await issuer.listen();
  // The public URL (the OIDC redirect base) must be known before the app is built: listen first, then hand over.
  let handler: ReturnType<typeof getRequestListener> | undefined;
  server = createServer((req, res) => {
    if (handler) handler(req, res);
    else res.writeHead(503).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const publicUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  w = dashboardWorld({ publicUrl, issuerUrl, issuer, inProcess: false });
  handler = getRequestListener(w.http.fetch);

  shop = w.app("shop");
  w.app("blog", "staging");
  released(shop, "3f2a9c1e7b5d4a6f8e0c2b1a9d8e7f6a5b4c3d2e", "Add the order history page");
  w.user("UREQ", "deployer");
  w.user("UAPP", "approver");
  w.user("UADM", "admin");

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Chromium refuses to start its sandbox as root (CI runs as root); the page is our own test server.
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  w?.live.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await issuer?.close();
  w?.cleanup();
  shots?.cleanup();
});

/** A finished deployment and its release, as the pipeline leaves them. */
function released(app: AppView, sha: string, message: string): void {
  const { deployment } = requestDeployment(w.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
  setDeploymentSource(w.db, deployment.uuid, { commitSha: sha, commitMessage: message, author: "ada" });
  claimDeployment(w.db, deployment.uuid);
  const t = Date.now();
  for (const stage of ["source", "build", "release", "run", "health", "route"]) {
    recordStage(w.db, deployment.uuid, stage, { status: "succeeded", startedAt: t, finishedAt: t + 1500 });
  }
  finishDeployment(w.db, deployment.uuid, "succeeded");
  recordRelease(w.db, {
    deploymentUuid: deployment.uuid,
    image: `localhost/shop:${deployment.uuid}`,
    commitSha: sha,
    startCommand: "gunicorn shop.wsgi --bind 0.0.0.0:$PORT",
    pythonVersion: "3.13",
  });
}

async function signedIn(userId: string, name: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  issuer.user = slackUser(userId, name);
  await page.goto(`${w.publicUrl}/dashboard`);
  expect(new URL(page.url()).pathname).toBe("/dashboard/login");
  await page.click("#sign-in");
  await page.waitForURL(`${w.publicUrl}/dashboard`);
  return { context, page };
}

/** What the pipeline does for one stage transition: the database first, then the event. */
function stage(uuid: string, name: StageName, status: "started" | "succeeded", startedAt: number): void {
  const now = Date.now();
  recordStage(w.db, uuid, name, {
    status: status === "started" ? "running" : "succeeded",
    startedAt,
    ...(status === "succeeded" ? { finishedAt: now } : {}),
  });
  w.events.emit({
    type: "stage",
    deploymentUuid: uuid,
    appUuid: shop.uuid,
    appSlug: shop.slug,
    stage: name,
    status,
    at: now,
  });
}

describe("dashboard in a real browser", () => {
  it("refuses a Slack user the bot does not know", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    issuer.user = slackUser("USTRANGER", "Mallory");
    await page.goto(`${w.publicUrl}/dashboard/login`);
    await page.click("#sign-in");
    await page.waitForSelector("#not-allowed");
    expect(await page.textContent("#not-allowed")).toContain("Mallory (USTRANGER) has no role on this bot");
    await page.screenshot({ path: join(SHOT_DIR, "dashboard-not-allowed.png") });
    // No session was set: the dashboard still sends this browser to the sign-in page.
    await page.goto(`${w.publicUrl}/dashboard/deployments`);
    expect(new URL(page.url()).pathname).toBe("/dashboard/login");
    await context.close();
  });

  it("shows a new deployment and each of its stages live, without a reload", async () => {
    const { context, page } = await signedIn("UAPP", "Grace");
    await page.screenshot({ path: join(SHOT_DIR, "dashboard-apps.png") });
    // The apps list shows each process type with its container count; the app's page shows the commands.
    expect(await page.textContent("#app-shop")).toContain("web ×1");

    await page.goto(`${w.publicUrl}/dashboard/deployments`);
    await page.waitForSelector('body[data-live="connected"]');
    await page.evaluate(() => {
      (globalThis as unknown as { marker: string }).marker = "same page";
    });

    // Queued by another process (the CLI writes the row; no event here): the dashboard's poll finds it.
    const { deployment } = requestDeployment(w.db, { appUuid: shop.uuid, trigger: "cli", ref: "main" });
    const row = `#d-${deployment.uuid}`;
    await page.waitForSelector(`${row}[data-status="queued"]`);

    claimDeployment(w.db, deployment.uuid);
    setDeploymentSource(w.db, deployment.uuid, {
      commitSha: "9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c",
      commitMessage: "Checkout: <b>retry</b> card payments once",
      author: "ada",
    });
    const t0 = Date.now();
    w.events.emit({
      type: "deployment",
      deploymentUuid: deployment.uuid,
      appUuid: shop.uuid,
      appSlug: "shop",
      status: "started",
      at: t0,
    });
    await page.waitForSelector(`${row}[data-status="running"]`);
    stage(deployment.uuid, "source", "started", t0);
    await page.waitForSelector(`${row} li[data-stage="source"][data-status="running"]`);
    stage(deployment.uuid, "source", "succeeded", t0);
    stage(deployment.uuid, "build", "started", Date.now());
    await page.waitForSelector(`${row} li[data-stage="build"][data-status="running"]`);
    expect(await page.textContent(`${row} li[data-stage="source"]`)).toBe("source");
    expect(await page.getAttribute(`${row} li[data-stage="source"]`, "data-status")).toBe("succeeded");
    // The commit message is shown as text, not markup.
    expect(await page.textContent(`${row} .msg`)).toBe("Checkout: <b>retry</b> card payments once");
    await page.screenshot({ path: join(SHOT_DIR, "dashboard-deployments.png") });

    // The deployment's own page follows it too.
    const detail = await context.newPage();
    await detail.goto(`${w.publicUrl}/dashboard/deployments/${deployment.uuid}`);
    await detail.waitForSelector('body[data-live="connected"]');
    const tb = Date.now();
    stage(deployment.uuid, "build", "succeeded", tb);
    for (const name of ["release", "run", "health", "route"] as const) {
      stage(deployment.uuid, name, "started", Date.now());
      stage(deployment.uuid, name, "succeeded", Date.now());
    }
    finishDeployment(w.db, deployment.uuid, "succeeded");
    w.events.emit({
      type: "deployment",
      deploymentUuid: deployment.uuid,
      appUuid: shop.uuid,
      appSlug: "shop",
      status: "succeeded",
      at: Date.now(),
      durationMs: Date.now() - t0,
      url: "http://shop.example.com",
    });
    await page.waitForSelector(`${row}[data-status="succeeded"]`);
    await detail.waitForSelector(`#detail-${deployment.uuid}[data-status="succeeded"]`);
    expect(await detail.textContent(".log")).toContain("deployment succeeded");
    await detail.screenshot({ path: join(SHOT_DIR, "dashboard-deployment.png"), fullPage: true });
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: string }).marker)).toBe("same page");
    await context.close();
  });

  it("lets an approver approve, and refuses the requester's own click", async () => {
    const requester = w.user("UREQ", "deployer");
    const { approval } = requestApproval(w.db, {
      app: shop,
      action: { kind: "deploy", app: shop.uuid, ref: "release-2031.01" },
      requester,
      now: w.clock.now,
    });
    const card = `#approval-${approval.uuid}`;

    const asRequester = await signedIn("UREQ", "Ada");
    await asRequester.page.goto(`${w.publicUrl}/dashboard/approvals`);
    const approve = asRequester.page.locator(`${card} button.approved`);
    expect(await approve.isDisabled()).toBe(true);
    // Greyed out is only a hint: a forced click must still be refused by the server.
    await approve.evaluate((button) => button.removeAttribute("disabled"));
    await approve.click();
    await asRequester.page.waitForSelector("#notice.refused");
    expect(await asRequester.page.textContent("#notice")).toContain("you cannot approve your own request");
    await asRequester.page.screenshot({ path: join(SHOT_DIR, "dashboard-approval-refused.png") });
    expect(getApproval(w.db, approval.uuid).status).toBe("pending");
    await asRequester.context.close();

    const asApprover = await signedIn("UAPP", "Grace");
    await asApprover.page.goto(`${w.publicUrl}/dashboard/approvals`);
    await asApprover.page.screenshot({ path: join(SHOT_DIR, "dashboard-approvals.png") });
    await asApprover.page.click(`${card} button.approved`);
    await asApprover.page.waitForSelector("#notice.ok");
    expect(await asApprover.page.textContent("#notice")).toMatch(/Approved; deployment [0-9a-f-]{36} is queued\./);
    expect(getApproval(w.db, approval.uuid).status).toBe("approved");
    expect([...w.queue.jobs.values()].some((j) => j.queue === "deploy")).toBe(true);
    await asApprover.context.close();
  });

  it("shows tenant admins the audit log", async () => {
    const { context, page } = await signedIn("UADM", "Linus");
    await page.goto(`${w.publicUrl}/dashboard/audit`);
    const text = (await page.textContent("table.audit")) ?? "";
    expect(text).toContain("approval.approved");
    expect(text).toContain("approval.approve");
    await page.screenshot({ path: join(SHOT_DIR, "dashboard-audit.png") });
    await context.close();
  });
});
