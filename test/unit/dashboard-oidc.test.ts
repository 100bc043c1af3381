import { afterEach, describe, expect, it } from "vitest";
import { listAuditEvents } from "../../src/domain/audit.ts";
import { CookieSealer } from "../../src/http/dashboard-session.ts";
import { type DashboardWorld, dashboardWorld, get, signIn, slackUser } from "../helpers/dashboard.ts";

// Sign in with Slack: the callback accepts exactly one well-formed, fresh ID token for this client from this issuer,
// for the sign-in this browser started, and only for a user the bot knows with a role. Everything else is refused
// and sets no session cookie.
let w: DashboardWorld;
afterEach(() => w?.cleanup());

function world(): DashboardWorld {
  w = dashboardWorld();
  w.app("shop");
  w.user("UADA", "deployer");
  return w;
}

describe("dashboard sign-in (OpenID Connect callback)", () => {
  it("signs a known user with a role in, with PKCE, and the session then shows their apps", async () => {
    world();
    const { response, session } = await signIn(w, slackUser("UADA", "Ada"));
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/dashboard");
    expect(session).toBeDefined();
    expect(w.issuer.tokenRequests).toEqual([{ pkceOk: true }]);
    const cookie = response.headers.getSetCookie().find((c) => c.startsWith("tussilago-session="));
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Lax/);
    const page = await get(w, "/dashboard", session);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("shop");
    expect(listAuditEvents(w.db, { limit: 5 }).map((e) => `${e.action} ${e.outcome}`)).toContain(
      "dashboard.sign_in succeeded",
    );
  });

  it("refuses a callback whose state is not the one this browser's sign-in started with", async () => {
    world();
    const { response, session } = await signIn(w, slackUser("UADA"), {
      editCallback: (url) => url.searchParams.set("state", "forged-state"),
    });
    expect(response.status).toBe(401);
    expect(session).toBeUndefined();
  });

  it("refuses a callback without the sign-in cookie (login CSRF: a code planted in someone else's browser)", async () => {
    world();
    const { response, session } = await signIn(w, slackUser("UADA"), { dropLoginCookie: true });
    expect(response.status).toBe(400);
    expect(session).toBeUndefined();
  });

  it("refuses an ID token with another nonce", async () => {
    world();
    w.issuer.tamper = { nonce: "replayed-nonce" };
    const { response, session } = await signIn(w, slackUser("UADA"));
    expect(response.status).toBe(401);
    expect(session).toBeUndefined();
  });

  it("refuses an expired ID token", async () => {
    world();
    w.issuer.tamper = { expIn: -300 };
    const { response, session } = await signIn(w, slackUser("UADA"));
    expect(response.status).toBe(401);
    expect(session).toBeUndefined();
  });

  it("refuses an ID token issued to another client (wrong audience)", async () => {
    world();
    w.issuer.tamper = { aud: "another-client" };
    const { response, session } = await signIn(w, slackUser("UADA"));
    expect(response.status).toBe(401);
    expect(session).toBeUndefined();
  });

  it("refuses an ID token from another issuer", async () => {
    world();
    w.issuer.tamper = { iss: "https://evil.example.com" };
    const { response, session } = await signIn(w, slackUser("UADA"));
    expect(response.status).toBe(401);
    expect(session).toBeUndefined();
  });

  it("refuses an ID token signed with a key the issuer does not publish", async () => {
    world();
    w.issuer.tamper = { foreignKey: true };
    const { response, session } = await signIn(w, slackUser("UADA"));
    expect(response.status).toBe(401);
    expect(session).toBeUndefined();
  });

  it("refuses a Slack user the bot does not know, and one without any role: no session, a clear page", async () => {
    world();
    const unknown = await signIn(w, slackUser("USTRANGER", "Mallory"));
    expect(unknown.response.status).toBe(403);
    expect(unknown.session).toBeUndefined();
    expect(await unknown.response.text()).toContain("has no role on this bot");
    w.user("UNOROLE");
    const noRole = await signIn(w, slackUser("UNOROLE"));
    expect(noRole.response.status).toBe(403);
    expect(noRole.session).toBeUndefined();
    const denied = listAuditEvents(w.db, { limit: 10 }).filter((e) => e.action === "dashboard.sign_in");
    expect(denied.map((e) => e.outcome)).toEqual(["denied", "denied"]);
  });

  it("refuses a sign-in the user cancelled at Slack", async () => {
    world();
    const { response, session } = await signIn(w, undefined);
    expect(response.status).toBe(401);
    expect(session).toBeUndefined();
  });
});

describe("dashboard sessions", () => {
  it("sends a request without a session, or with a cookie sealed by another secret, to the sign-in page", async () => {
    world();
    const none = await get(w, "/dashboard/deployments", undefined);
    expect(none.status).toBe(302);
    expect(none.headers.get("location")).toBe("/dashboard/login");
    const forged = await new CookieSealer("another-secret-that-is-long-enough-0123456789").sealSession({
      teamId: "T0TEAM",
      userId: "UADA",
      name: "ada",
    });
    const res = await get(w, "/dashboard/deployments", forged);
    expect(res.status).toBe(302);
    const sse = await get(w, "/dashboard/events", undefined);
    expect(sse.status).toBe(401);
  });

  it("ends access as soon as the user's last role is removed, whatever the cookie says", async () => {
    world();
    const { session } = await signIn(w, slackUser("UADA"));
    expect((await get(w, "/dashboard", session)).status).toBe(200);
    w.db.$client.prepare("delete from memberships").run();
    const res = await get(w, "/dashboard", session);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("has no role on this bot");
  });
});
