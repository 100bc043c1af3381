import { afterEach, describe, expect, it } from "vitest";
import { getApproval, requestApproval } from "../../src/domain/approvals.ts";
import { ensureTenant, setAppFormation } from "../../src/domain/apps.ts";
import { recordAudit } from "../../src/domain/audit.ts";
import { claimDeployment, recordStage, requestDeployment, setDeploymentSource } from "../../src/domain/deployments.ts";
import { recordRelease } from "../../src/domain/releases.ts";
import { grantRole } from "../../src/domain/users.ts";
import { csrfOf, type DashboardWorld, dashboardWorld, get, post, signIn, slackUser } from "../helpers/dashboard.ts";

let w: DashboardWorld;
afterEach(() => {
  w?.live.close();
  w?.cleanup();
});

async function session(userId: string): Promise<string> {
  const { session } = await signIn(w, slackUser(userId));
  if (!session) throw new Error(`${userId} could not sign in`);
  return session;
}

/** A pending request by UREQ (deployer) to deploy `main` to shop, and the form fields of its buttons. */
function pendingDeploy() {
  const app = w.app("shop");
  const requester = w.user("UREQ", "deployer");
  const { approval } = requestApproval(w.db, {
    app,
    action: { kind: "deploy", app: app.uuid, ref: "main" },
    requester,
    now: w.clock.now,
  });
  return { app, approval, fields: { hash: approval.actionHash, decision: "approved" } };
}

describe("dashboard approvals: the Slack buttons' rules", () => {
  it("an approver's click approves and starts the deployment; the requester's own click is refused", async () => {
    w = dashboardWorld();
    const { approval, fields } = pendingDeploy();
    w.user("UAPP", "approver");

    const asRequester = await session("UREQ");
    const page = await get(w, "/dashboard/approvals", asRequester);
    const html = await page.text();
    expect(html).toContain("asks to\ndeploy main to shop");
    // Greyed out for the requester, with the reason; Deny (withdraw) stays available.
    expect(html).toMatch(
      /<button type="submit" class="approved" disabled title="you cannot approve your own request">/,
    );
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? "";
    const refused = await post(w, `/dashboard/approvals/${approval.uuid}`, asRequester, { ...fields, csrf });
    expect(refused.status).toBe(403);
    expect(await refused.text()).toContain("Not done: you cannot approve your own request");
    expect(getApproval(w.db, approval.uuid).status).toBe("pending");

    const asApprover = await session("UAPP");
    const token = await csrfOf(await get(w, "/dashboard/approvals", asApprover));
    const ok = await post(w, `/dashboard/approvals/${approval.uuid}`, asApprover, { ...fields, csrf: token });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toMatch(/Approved; deployment [0-9a-f-]{36} is queued\./);
    expect(getApproval(w.db, approval.uuid).status).toBe("approved");
    expect([...w.queue.jobs.values()].map((j) => j.queue)).toEqual(["deploy"]);
    expect(w.decided).toEqual(["approved"]);
  });

  it("refuses a decision without the session's CSRF token or from another origin", async () => {
    w = dashboardWorld();
    const { approval, fields } = pendingDeploy();
    w.user("UAPP", "approver");
    const s = await session("UAPP");
    const csrf = await csrfOf(await get(w, "/dashboard/approvals", s));
    expect((await post(w, `/dashboard/approvals/${approval.uuid}`, s, fields)).status).toBe(403);
    expect((await post(w, `/dashboard/approvals/${approval.uuid}`, s, { ...fields, csrf: `${csrf}x` })).status).toBe(
      403,
    );
    const crossSite = await post(
      w,
      `/dashboard/approvals/${approval.uuid}`,
      s,
      { ...fields, csrf },
      {
        origin: "https://evil.example.com",
      },
    );
    expect(crossSite.status).toBe(403);
    // Another user's token does not fit this session either.
    w.user("UOTHER", "approver");
    const other = await csrfOf(await get(w, "/dashboard/approvals", await session("UOTHER")));
    expect((await post(w, `/dashboard/approvals/${approval.uuid}`, s, { ...fields, csrf: other })).status).toBe(403);
    expect(getApproval(w.db, approval.uuid).status).toBe("pending");
    expect(w.queue.jobs.size).toBe(0);
  });

  it("shows a viewer no buttons and refuses their forged click; another tenant's user cannot even see it", async () => {
    w = dashboardWorld();
    const { approval, fields } = pendingDeploy();
    w.user("UVIEW", "viewer");
    const s = await session("UVIEW");
    const page = await get(w, "/dashboard/approvals", s);
    const html = await page.text();
    expect(html).toContain("deploy main to shop");
    expect(html).not.toContain('<button type="submit" class="approved"');
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? "";
    const refused = await post(w, `/dashboard/approvals/${approval.uuid}`, s, { ...fields, csrf });
    expect(refused.status).toBe(403);
    expect(await refused.text()).toContain("you need the approver role in acme");

    const other = ensureTenant(w.db, "globex");
    const outsider = w.user("UOUT");
    grantRole(w.db, outsider, other.id, "admin");
    const so = await session("UOUT");
    const theirs = await (await get(w, "/dashboard/approvals", so)).text();
    expect(theirs).not.toContain("shop");
    const token = /name="csrf" value="([^"]+)"/.exec(theirs)?.[1] ?? "";
    expect((await post(w, `/dashboard/approvals/${approval.uuid}`, so, { ...fields, csrf: token })).status).toBe(404);
    expect(getApproval(w.db, approval.uuid).status).toBe("pending");
  });
});

describe("dashboard pages", () => {
  it("escapes tenant-controlled text: commit messages, authors, failure output", async () => {
    w = dashboardWorld();
    const app = w.app("shop");
    w.user("UADA", "viewer");
    const { deployment } = requestDeployment(w.db, { appUuid: app.uuid, trigger: "push", ref: "main" });
    setDeploymentSource(w.db, deployment.uuid, {
      commitSha: "a".repeat(40),
      commitMessage: `<script>alert("x")</script><img src=x onerror=alert(1)>`,
      author: `"><svg onload=alert(2)>`,
    });
    const s = await session("UADA");
    for (const path of [
      "/dashboard/deployments",
      `/dashboard/deployments/${deployment.uuid}`,
      "/dashboard/apps/shop",
    ]) {
      const html = await (await get(w, path, s)).text();
      expect(html).not.toContain("<script>alert");
      expect(html).not.toContain("<img src=x");
      expect(html).not.toContain("<svg");
    }
    const detail = await (await get(w, `/dashboard/deployments/${deployment.uuid}`, s)).text();
    expect(detail).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
    const res = await get(w, "/dashboard/deployments", s);
    expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
  });

  it("shows nothing of another tenant: its apps and deployments answer 404 as if they did not exist", async () => {
    w = dashboardWorld();
    const app = w.app("shop");
    const { deployment } = requestDeployment(w.db, { appUuid: app.uuid, trigger: "cli", ref: "main" });
    const outsider = w.user("UOUT");
    grantRole(w.db, outsider, ensureTenant(w.db, "globex").id, "admin");
    const s = await session("UOUT");
    expect(await (await get(w, "/dashboard", s)).text()).not.toContain("shop");
    expect(await (await get(w, "/dashboard/deployments", s)).text()).not.toContain(deployment.uuid);
    expect((await get(w, "/dashboard/apps/shop", s)).status).toBe(404);
    expect((await get(w, `/dashboard/deployments/${deployment.uuid}`, s)).status).toBe(404);
    expect((await get(w, "/dashboard/deployments/not-a-uuid", s)).status).toBe(404);
  });

  it("shows every process type of the current release with the containers its formation asks for", async () => {
    w = dashboardWorld();
    const app = w.app("shop");
    const { deployment } = requestDeployment(w.db, { appUuid: app.uuid, trigger: "cli", ref: "main" });
    recordRelease(w.db, {
      deploymentUuid: deployment.uuid,
      image: "localhost/tsl-shop:1",
      commitSha: null,
      startCommand: "gunicorn shop.wsgi",
      processes: { worker: "celery -A shop worker", beat: "celery -A shop beat" },
    });
    setAppFormation(w.db, app.uuid, { web: 2, worker: 3 });
    w.user("UVIEW", "viewer");
    const s = await session("UVIEW");
    const list = await (await get(w, "/dashboard", s)).text();
    expect(list).toContain("<code>web ×2</code> <code>beat ×1</code> <code>worker ×3</code>");
    const page = await (await get(w, "/dashboard/apps/shop", s)).text();
    expect(page).toContain("<tr><td>worker</td><td>3</td><td><code>celery -A shop worker</code></td></tr>");
    expect(page).toContain("<tr><td>web</td><td>2</td><td><code>gunicorn shop.wsgi</code></td></tr>");
  });

  it("shows the audit log to tenant admins only", async () => {
    w = dashboardWorld();
    const shop = w.app("shop");
    w.user("UDEP", "deployer");
    w.user("UADM", "admin");
    recordAudit(w.db, { action: "env.set", outcome: "succeeded", actorLabel: "cli", appUuid: shop.uuid });
    ensureTenant(w.db, "globex");
    recordAudit(w.db, { action: "policy.set", outcome: "succeeded", actorLabel: "cli", tenantSlug: "globex" });
    const deployer = await (await get(w, "/dashboard/audit", await session("UDEP"))).text();
    expect(deployer).toContain("you are admin of no tenant");
    const admin = await (await get(w, "/dashboard/audit", await session("UADM"))).text();
    expect(admin).not.toContain("you are admin of no tenant");
    expect(admin).toContain("env.set");
    expect(admin).not.toContain("policy.set");
  });

  it("loads the deployment list in the same number of queries for 2 deployments as for 30", async () => {
    let queries = 0;
    w = dashboardWorld({ onQuery: () => queries++ });
    const apps = [w.app("shop"), w.app("blog")];
    w.user("UADA", "viewer");
    const s = await session("UADA");
    const count = async (path: string) => {
      queries = 0;
      expect((await get(w, path, s)).status).toBe(200);
      return queries;
    };
    for (const app of apps) requestDeployment(w.db, { appUuid: app.uuid, trigger: "cli", ref: "main" });
    const few = { list: await count("/dashboard/deployments"), apps: await count("/dashboard") };
    for (let i = 0; i < 14; i++) {
      for (const app of apps) requestDeployment(w.db, { appUuid: app.uuid, trigger: "cli", ref: `r${i}` });
    }
    expect({ list: await count("/dashboard/deployments"), apps: await count("/dashboard") }).toEqual(few);
  });

  it("streams a changed deployment's row to a signed-in page (Server-Sent Events)", async () => {
    w = dashboardWorld();
    const app = w.app("shop");
    w.user("UADA", "viewer");
    const s = await session("UADA");
    const res = await get(w, "/dashboard/events", s);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body?.getReader();
    if (!reader) throw new Error("no body");
    const decoder = new TextDecoder();
    let text = "";
    const until = async (needle: string) => {
      while (!text.includes(needle)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${needle}`);
        text += decoder.decode(value);
      }
    };
    await until("event: ready");
    const { deployment } = requestDeployment(w.db, { appUuid: app.uuid, trigger: "cli", ref: "main" });
    claimDeployment(w.db, deployment.uuid);
    recordStage(w.db, deployment.uuid, "source", { status: "running", startedAt: Date.now() });
    w.events.emit({
      type: "stage",
      deploymentUuid: deployment.uuid,
      appUuid: app.uuid,
      appSlug: "shop",
      stage: "source",
      status: "started",
      at: Date.now(),
    });
    await until(`d-${deployment.uuid}`);
    expect(text).toContain("event: deployment");
    expect(text).toContain('data-stage=\\"source\\" data-status=\\"running\\"');
    await reader.cancel();
  });
});
