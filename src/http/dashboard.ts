import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import { type DecideOutcome, decideCommand } from "../../commands/approvals.ts";
import type { ChatOpsDeps } from "../../commands/deps.ts";
import { statusCommand } from "../../commands/status.ts";
import type { DashboardConfig } from "../config.ts";
import { getApproval, listPendingApprovals } from "../domain/approvals.ts";
import { recordAudit } from "../domain/audit.ts";
import {
  dashboardApps,
  dashboardDeployment,
  deploymentsOfApp,
  displayNames,
  recentDeployments,
  tenantAuditEvents,
} from "../domain/dashboard.ts";
import { DomainError } from "../domain/errors.ts";
import { releaseCommands } from "../domain/formation.ts";
import { type Actor, findSlackUserRow, type Role, roleAtLeast, rolesOf } from "../domain/users.ts";
import type { Logger } from "../log.ts";
import { QueueDelayedError } from "../pipeline/bounded-queue.ts";
import type { AppEnv } from "./context.ts";
import { LIVE_JS, STYLE_CSS } from "./dashboard-assets.ts";
import type { Html } from "./dashboard-html.ts";
import type { DashboardLive } from "./dashboard-live.ts";
import { CookieSealer, csrfMatches, LOGIN_TTL_S, SESSION_TTL_S, type Session } from "./dashboard-session.ts";
import * as views from "./dashboard-views.ts";
import { type OidcSettings, SignInError, SlackOidc } from "./oidc.ts";

export interface DashboardDeps {
  config: DashboardConfig;
  /** What an approval click needs (the same deps as the Slack buttons'). */
  chatops: ChatOpsDeps;
  live: DashboardLive;
  /** Tests answer the issuer's endpoints in-process. */
  fetch?: OidcSettings["fetch"];
  /** After a decision from the dashboard: bot.ts updates the request's Slack message, as a click there would. */
  onDecided?: ((outcome: DecideOutcome, log: Logger) => Promise<void>) | undefined;
}

export interface DashEnv {
  Variables: AppEnv["Variables"] & { who: SignedIn };
}

interface SignedIn {
  session: Session;
  actor: Actor;
  roles: Map<string, Role>;
  viewer: views.Viewer;
}

const BASE = views.BASE;
const CALLBACK_PATH = `${BASE}/auth/callback`;
const uuidSchema = z.uuid();
const decisionSchema = z.object({
  csrf: z.string().max(200),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  decision: z.enum(["approved", "denied"]),
});

/**
 * A read-only view of the platform for people who hold a role in Slack (docs/dashboard.md): apps, deployments
 * with live stage progress, a deployment's log, pending approvals (the only write: Approve/Deny, through
 * commands/approvals.ts like the Slack buttons) and the audit log. Routes only read the database and render.
 */
export function dashboardRoutes(deps: DashboardDeps): Hono<DashEnv> {
  const { config, chatops, live } = deps;
  const db = chatops.db;
  const secure = config.publicUrl.startsWith("https://");
  const origin = new URL(config.publicUrl).origin;
  // `__Host-`: the browser then only accepts the cookie over https, for this host, on every path.
  const cookieName = (name: string) => (secure ? `__Host-tussilago-${name}` : `tussilago-${name}`);
  const SESSION = cookieName("session");
  const LOGIN = cookieName("login");
  const sealer = new CookieSealer(config.cookieSecret, chatops.now);
  const oidc = new SlackOidc({
    issuer: config.issuer,
    clientId: config.clientId,
    clientSecret: config.clientSecret,
    redirectUri: `${config.publicUrl}${CALLBACK_PATH}`,
    fetch: deps.fetch,
  });
  const cookieOptions = (maxAge: number) => ({ httpOnly: true, secure, sameSite: "Lax", path: "/", maxAge }) as const;

  const app = new Hono<DashEnv>();
  const html = (c: Context, page: Html, status: 200 | 400 | 401 | 403 | 404 | 409 | 422 = 200) =>
    c.html(page.value, status);

  app.use(async (c, next) => {
    await next();
    c.header(
      "Content-Security-Policy",
      "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    c.header("X-Frame-Options", "DENY");
    c.header("X-Content-Type-Options", "nosniff");
    // same-origin: the callback URL's code never leaves in a Referer, and form POSTs still carry their Origin.
    c.header("Referrer-Policy", "same-origin");
    c.header("Cache-Control", "no-store");
  });

  app.get("/static/style.css", (c) => c.body(STYLE_CSS, 200, { "Content-Type": "text/css; charset=utf-8" }));
  app.get("/static/live.js", (c) => c.body(LIVE_JS, 200, { "Content-Type": "text/javascript; charset=utf-8" }));

  app.get("/login", (c) => html(c, views.signInPage()));

  app.get("/auth/start", async (c) => {
    let begun: Awaited<ReturnType<SlackOidc["begin"]>>;
    try {
      begun = await oidc.begin();
    } catch (err) {
      c.get("log").warn({ err }, "dashboard: OpenID discovery failed");
      return html(c, views.signInPage("Slack could not be reached; try again in a minute."), 409);
    }
    setCookie(c, LOGIN, await sealer.sealLogin(begun.transaction), cookieOptions(LOGIN_TTL_S));
    return c.redirect(begun.url.href, 302);
  });

  app.get("/auth/callback", async (c) => {
    const log = c.get("log");
    const transaction = await sealer.openLogin(getCookie(c, LOGIN));
    deleteCookie(c, LOGIN, { path: "/", secure });
    if (!transaction) {
      log.info("dashboard sign-in refused: no or expired sign-in cookie");
      return html(c, views.signInPage("The sign-in expired or was started in another browser; try again."), 400);
    }
    let who: Awaited<ReturnType<SlackOidc["complete"]>>;
    try {
      who = await oidc.complete(new URL(c.req.url).searchParams, transaction);
    } catch (err) {
      if (!(err instanceof SignInError)) throw err;
      log.warn({ reason: err.reason }, "dashboard sign-in refused");
      return html(c, views.signInPage("Sign-in failed; try again."), 401);
    }
    const user = findSlackUserRow(db, who.teamId, who.userId);
    const actor = user ? { id: user.id, uuid: user.uuid, label: `<@${who.userId}>` } : undefined;
    if (!actor || rolesOf(db, actor).size === 0) {
      recordAudit(db, {
        action: "dashboard.sign_in",
        outcome: "denied",
        actor,
        actorLabel: actor ? actor.label : "dashboard",
        details: { slackTeam: who.teamId, slackUser: who.userId, reason: actor ? "no role" : "unknown user" },
        correlationId: c.get("correlationId"),
      });
      log.info({ slackUser: who.userId }, "dashboard sign-in refused: no role");
      return html(c, views.notAllowedPage({ name: who.name, userId: who.userId }), 403);
    }
    recordAudit(db, {
      action: "dashboard.sign_in",
      outcome: "succeeded",
      actor,
      correlationId: c.get("correlationId"),
    });
    setCookie(c, SESSION, await sealer.sealSession(who), cookieOptions(SESSION_TTL_S));
    return c.redirect(BASE, 303);
  });

  // Everything below needs a session of a user the bot knows and who holds a role somewhere.
  app.use(async (c, next) => {
    const session = await sealer.openSession(getCookie(c, SESSION));
    if (!session) {
      if (c.req.method === "GET" && c.req.path !== `${BASE}/events`) return c.redirect(`${BASE}/login`, 302);
      return html(c, views.signInPage("Your session ended; sign in again."), 401);
    }
    const user = findSlackUserRow(db, session.teamId, session.userId);
    const actor = user ? { id: user.id, uuid: user.uuid, label: `<@${session.userId}>` } : undefined;
    const roles = actor ? rolesOf(db, actor) : new Map<string, Role>();
    if (!actor || roles.size === 0) return html(c, views.notAllowedPage(session), 403);
    c.set("who", { session, actor, roles, viewer: { name: session.name, csrf: session.csrf } });
    return next();
  });

  // POSTs: the session's synchronizer token, and the browser's Origin when it sends one (every current browser does).
  const guardPost = async (c: Context<DashEnv>, form: Record<string, unknown>): Promise<boolean> => {
    const sentOrigin = c.req.header("origin");
    return csrfMatches(c.get("who").session, form.csrf) && (sentOrigin === undefined || sentOrigin === origin);
  };

  app.post("/auth/logout", bodyLimit({ maxSize: 8 * 1024 }), async (c) => {
    if (!(await guardPost(c, await c.req.parseBody()))) return html(c, views.errorPage("Refused", "Bad form."), 403);
    deleteCookie(c, SESSION, { path: "/", secure });
    return c.redirect(`${BASE}/login`, 303);
  });

  const tenants = (c: Context<DashEnv>) => [...c.get("who").roles.keys()];

  app.get("/", (c) => html(c, views.appsPage(dashboardApps(db, tenants(c)), c.get("who").viewer)));

  app.get("/apps/:slug", (c) => {
    const { roles, viewer } = c.get("who");
    let status: ReturnType<typeof statusCommand>;
    try {
      status = statusCommand({ db }, { app: c.req.param("slug"), deployments: 0 });
    } catch (err) {
      if (err instanceof DomainError && err.status === 404) return notFound(c);
      throw err;
    }
    // Someone without a role in the app's tenant learns nothing, not even that it exists.
    if (!roles.has(status.app.tenantSlug)) return notFound(c);
    const page = views.appPage(
      {
        app: status.app,
        release: status.currentRelease,
        processes: status.currentRelease
          ? releaseCommands(status.currentRelease).map((p) => ({
              ...p,
              wanted: status.processes.find((w) => w.type === p.type)?.wanted ?? 0,
            }))
          : [],
        incident: status.incident,
        deployments: deploymentsOfApp(db, status.app.uuid, 20),
      },
      viewer,
    );
    return html(c, page);
  });

  app.get("/deployments", (c) =>
    html(c, views.deploymentsPage(recentDeployments(db, tenants(c), 50), c.get("who").viewer)),
  );

  app.get("/deployments/:uuid", (c) => {
    const uuid = c.req.param("uuid");
    if (!uuidSchema.safeParse(uuid).success) return notFound(c);
    let d: ReturnType<typeof dashboardDeployment>;
    try {
      d = dashboardDeployment(db, uuid);
    } catch (err) {
      if (err instanceof DomainError && err.status === 404) return notFound(c);
      throw err;
    }
    if (!c.get("who").roles.has(d.tenantSlug)) return notFound(c);
    return html(c, views.deploymentPage(d, live.logOf(uuid), c.get("who").viewer));
  });

  app.get("/events", (c) => {
    const { session, actor } = c.get("who");
    let visibleAt = 0;
    let visible = new Set<string>();
    // Roles are read again every 15 s, so a removed role also stops the stream's updates.
    const allowed = (tenant: string) => {
      if (chatops.now() - visibleAt > 15_000) {
        visible = new Set(rolesOf(db, actor).keys());
        visibleAt = chatops.now();
      }
      return visible.has(tenant);
    };
    c.header("X-Accel-Buffering", "no");
    return streamSSE(c, async (stream) => {
      await new Promise<void>((resolve) => {
        let ended = false;
        const end = () => {
          if (ended) return;
          ended = true;
          clearInterval(ping);
          clearTimeout(expiry);
          remove();
          resolve();
        };
        const send = (event: string, data: string) => {
          stream.writeSSE({ event, data }).catch(end);
        };
        const remove = live.add({ visible: allowed, send, close: end });
        const ping = setInterval(() => send("ping", ""), 20_000);
        const expiry = setTimeout(end, Math.max(0, session.expiresAt * 1000 - chatops.now()));
        stream.onAbort(end);
        send("ready", "");
      });
    });
  });

  const approvalsView = async (
    c: Context<DashEnv>,
    notice?: { ok: boolean; text: string },
    status?: 200 | 403 | 404 | 409 | 422,
  ) => {
    const { actor, roles, viewer } = c.get("who");
    const pending = listPendingApprovals(db, [...roles.keys()], chatops.now());
    const names = displayNames(
      db,
      pending.map((a) => a.requester.uuid),
    );
    const items = pending.map((approval) => {
      const role = roles.get(approval.tenantSlug);
      const self = approval.requester.uuid === actor.uuid;
      const approver = roleAtLeast(role, "approver");
      return {
        approval,
        requester: `@${names.get(approval.requester.uuid) ?? "unknown"}`,
        rights: {
          approve: approver && !self,
          // The requester may deny, i.e. withdraw, their own request (src/domain/approvals.ts).
          deny: approver || self,
          ...(self ? { why: "you cannot approve your own request" } : {}),
        },
      };
    });
    return html(c, views.approvalsPage(items, viewer, notice), status ?? 200);
  };

  app.get("/approvals", (c) => approvalsView(c));

  app.post("/approvals/:uuid", bodyLimit({ maxSize: 8 * 1024 }), async (c) => {
    const form = await c.req.parseBody();
    if (!(await guardPost(c, form))) return html(c, views.errorPage("Refused", "Bad form; reload the page."), 403);
    const uuid = c.req.param("uuid");
    const parsed = decisionSchema.safeParse(form);
    if (!uuidSchema.safeParse(uuid).success || !parsed.success)
      return approvalsView(c, { ok: false, text: "Malformed request." }, 422);
    const { actor, roles } = c.get("who");
    const log = c.get("log");
    try {
      // A request of a tenant the user has no role in is answered as unknown.
      if (!roles.has(getApproval(db, uuid).tenantSlug)) return notFound(c);
      const outcome = await decideCommand(chatops, {
        uuid,
        hash: parsed.data.hash,
        decision: parsed.data.decision,
        actor,
        correlationId: c.get("correlationId"),
      });
      log.info({ approvalId: uuid, outcome: outcome.kind }, "dashboard approval decision");
      await deps.onDecided?.(outcome, log).catch((err: unknown) => log.warn({ err }, "after-decision hook failed"));
      return approvalsView(c, {
        ok: outcome.kind === "approved" || outcome.kind === "denied",
        text: outcomeText(outcome),
      });
    } catch (err) {
      if (err instanceof QueueDelayedError) {
        const text = "Approved and recorded; the job queue is delayed, so it runs when the queue is back.";
        return approvalsView(c, { ok: true, text });
      }
      if (!(err instanceof DomainError)) throw err;
      log.info({ approvalId: uuid, code: err.code }, "dashboard approval refused");
      if (err.status === 404) return notFound(c);
      return approvalsView(c, { ok: false, text: `Not done: ${err.message}` }, err.status === 400 ? 422 : err.status);
    }
  });

  app.get("/audit", (c) => {
    const { roles, viewer } = c.get("who");
    // As `/tussilago audit`: tenant admins only.
    const adminOf = [...roles].filter(([, role]) => role === "admin").map(([tenant]) => tenant);
    return html(c, views.auditPage(tenantAuditEvents(db, adminOf, 200), adminOf, viewer));
  });

  function notFound(c: Context<DashEnv>) {
    return html(c, views.errorPage("Not found", "Nothing here, or nothing you may see.", c.get("who").viewer), 404);
  }

  return app;
}

function outcomeText(outcome: DecideOutcome): string {
  switch (outcome.kind) {
    case "approved":
      return outcome.effect.kind === "deployment"
        ? `Approved; deployment ${outcome.effect.deployment.uuid} is queued.`
        : outcome.effect.kind === "queued"
          ? "Approved; the work is queued."
          : "Approved; the action has been applied.";
    case "denied":
      return "Denied.";
    case "expired":
      return "This request has expired; ask again.";
    case "unchanged":
      return `Already ${outcome.approval.status}.`;
  }
}
