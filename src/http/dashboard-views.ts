import { type ApprovalAction, type ApprovalView, describeApprovalAction } from "../domain/approvals.ts";
import type { AuditView } from "../domain/audit.ts";
import type { DashboardApp, DashboardDeployment } from "../domain/dashboard.ts";
import type { IncidentView } from "../domain/incidents.ts";
import { STAGES } from "../pipeline/events.ts";
import { type Html, h } from "./dashboard-html.ts";

/**
 * The dashboard's pages, rendered on the server. Every value goes through `h`, which escapes it: app names, refs,
 * commit messages, build output and audit details are tenant-controlled. No script but /dashboard/live.js (the
 * Content-Security-Policy allows nothing else), no external assets.
 */

export const BASE = "/dashboard";

export interface Viewer {
  name: string;
  csrf: string;
}

const NAV = [
  ["apps", `${BASE}`, "Apps"],
  ["deployments", `${BASE}/deployments`, "Deployments"],
  ["approvals", `${BASE}/approvals`, "Approvals"],
  ["audit", `${BASE}/audit`, "Audit log"],
] as const;
export type Section = (typeof NAV)[number][0];

export function layout(title: string, body: Html, opts: { viewer?: Viewer; section?: Section; live?: boolean } = {}) {
  const viewer = opts.viewer;
  return h`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Tussilago</title><link rel="stylesheet" href="${BASE}/static/style.css">
${opts.live ? h`<script src="${BASE}/static/live.js" defer></script>` : ""}</head>
<body><header><strong>Tussilago</strong>
${
  viewer
    ? h`<nav>${NAV.map(([key, href, label]) => h`<a href="${href}"${key === opts.section ? h` aria-current="page"` : ""}>${label}</a>`)}</nav>
<form method="post" action="${BASE}/auth/logout" class="who"><span>${viewer.name}</span>
<input type="hidden" name="csrf" value="${viewer.csrf}"><button type="submit">Sign out</button></form>`
    : ""
}</header>
<main>${body}</main></body></html>`;
}

export function signInPage(notice?: string): Html {
  return layout(
    "Sign in",
    h`<h1>Sign in</h1>${notice ? h`<p class="notice">${notice}</p>` : ""}
<p>The dashboard shows the apps and deployments of the tenants you hold a role in, as in Slack.</p>
<p><a class="button" id="sign-in" href="${BASE}/auth/start">Sign in with Slack</a></p>`,
  );
}

/** Signed in with Slack, but the bot does not know this user, or they hold no role anywhere. */
export function notAllowedPage(who: { name: string; userId: string }): Html {
  return layout(
    "Not allowed",
    h`<h1>Not allowed</h1>
<p id="not-allowed">${who.name} (${who.userId}) has no role on this bot, so there is nothing to show.</p>
<p>Ask an admin to grant you one: <code>tussilago users grant &lt;tenant&gt; ${who.userId} viewer</code>.</p>`,
  );
}

export function errorPage(title: string, message: string, viewer?: Viewer): Html {
  return layout(title, h`<h1>${title}</h1><p class="notice">${message}</p>`, viewer ? { viewer } : {});
}

// Pieces.

const time = (d: Date | null) =>
  d ? h`<time datetime="${d.toISOString()}">${d.toISOString().slice(0, 19).replace("T", " ")}</time>` : "";

function badge(status: string): Html {
  return h`<span class="badge ${status}">${status}</span>`;
}

function firstLine(text: string | null, max = 72): string {
  const line = (text ?? "").split("\n")[0] ?? "";
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

function stages(d: DashboardDeployment): Html {
  return h`<ol class="stages">${STAGES.map((s) => {
    const status = d.stageTimings[s]?.status ?? "pending";
    return h`<li class="stage ${status}" data-stage="${s}" data-status="${status}" title="${s}: ${status}">${s}</li>`;
  })}</ol>`;
}

function duration(d: DashboardDeployment): string {
  if (!d.startedAt) return "";
  const end = d.finishedAt ?? new Date();
  return `${Math.max(0, Math.round((end.getTime() - d.startedAt.getTime()) / 1000))} s`;
}

/** One row of a deployment list; also sent over Server-Sent Events to replace itself in open pages. */
export function deploymentRow(d: DashboardDeployment): Html {
  const commit = d.commitSha ? d.commitSha.slice(0, 12) : d.ref;
  return h`<tr id="d-${d.uuid}" data-app="${d.appSlug}" data-status="${d.status}">
<td><a href="${BASE}/apps/${d.appSlug}">${d.appSlug}</a></td><td>${badge(d.status)}</td><td>${stages(d)}</td>
<td><a href="${BASE}/deployments/${d.uuid}"><code>${commit}</code></a> <span class="msg">${firstLine(d.commitMessage)}</span></td>
<td>${d.trigger}</td><td>${time(d.createdAt)}</td><td>${duration(d)}</td></tr>`;
}

export function deploymentTable(rows: DashboardDeployment[], app?: string): Html {
  return h`<table class="deployments"><thead><tr><th>App</th><th>Status</th><th>Stages</th><th>Commit</th>
<th>Trigger</th><th>Created</th><th>Took</th></tr></thead>
<tbody id="deployments"${app ? h` data-app="${app}"` : ""}>${rows.map(deploymentRow)}</tbody></table>
${rows.length === 0 ? h`<p class="empty">No deployments yet.</p>` : ""}`;
}

export interface LogLine {
  at: number;
  text: string;
}

/** The deployment page's body below the title; sent over Server-Sent Events as well, so it updates in place. */
export function deploymentDetail(d: DashboardDeployment, log: readonly LogLine[]): Html {
  return h`<section id="detail-${d.uuid}" data-status="${d.status}">
<dl><dt>App</dt><dd><a href="${BASE}/apps/${d.appSlug}">${d.appSlug}</a> (${d.tenantSlug})</dd>
<dt>Status</dt><dd>${badge(d.status)}</dd><dt>Ref</dt><dd><code>${d.ref}</code></dd>
<dt>Commit</dt><dd><code>${d.commitSha ?? "not fetched yet"}</code>${d.author ? h` by ${d.author}` : ""}</dd>
<dt>Trigger</dt><dd>${d.trigger}</dd><dt>Python</dt><dd>${d.pythonVersion ?? ""}</dd>
<dt>Created</dt><dd>${time(d.createdAt)}</dd><dt>Finished</dt><dd>${time(d.finishedAt)}</dd></dl>
${d.commitMessage ? h`<h2>Commit message</h2><pre class="commit">${d.commitMessage}</pre>` : ""}
<h2>Stages</h2>
<table class="stage-table"><thead><tr><th>Stage</th><th>Status</th><th>Started</th><th>Took</th></tr></thead><tbody>
${STAGES.map((s) => {
  const t = d.stageTimings[s];
  const took = t?.finishedAt !== undefined ? `${((t.finishedAt - t.startedAt) / 1000).toFixed(1)} s` : "";
  return h`<tr data-stage="${s}"><td>${s}</td><td>${badge(t?.status ?? "pending")}</td>
<td>${t ? time(new Date(t.startedAt)) : ""}</td><td>${took}</td></tr>`;
})}</tbody></table>
${d.failureReason ? h`<h2>Failure</h2><pre class="failure">${d.failureReason}</pre>` : ""}
<h2>Log</h2>
${
  log.length === 0
    ? h`<p class="empty">No events seen by this bot process (the stage table above is from the database).</p>`
    : h`<pre class="log">${log.map((l) => `${new Date(l.at).toISOString().slice(11, 19)}  ${l.text}\n`)}</pre>`
}</section>`;
}

export function deploymentPage(d: DashboardDeployment, log: readonly LogLine[], viewer: Viewer): Html {
  return layout(`${d.appSlug} deployment`, h`<h1>Deployment of ${d.appSlug}</h1>${deploymentDetail(d, log)}`, {
    viewer,
    section: "deployments",
    live: true,
  });
}

export function appsPage(apps: DashboardApp[], viewer: Viewer): Html {
  const body = h`<h1>Apps</h1><table class="apps"><thead><tr><th>App</th><th>Tenant</th><th>Environment</th>
<th>Release</th><th>Processes</th><th>Latest deployment</th></tr></thead><tbody>
${apps.map(
  (a) => h`<tr id="app-${a.slug}"><td><a href="${BASE}/apps/${a.slug}">${a.slug}</a><br><small>${a.domain}</small></td>
<td>${a.tenantSlug}</td><td>${a.environment}</td>
<td>${a.release ? h`v${a.release.version} <code>${a.release.commitSha?.slice(0, 12) ?? ""}</code>` : "none yet"}</td>
<td>${a.release ? a.release.processes.map((p) => h`<code>${p.type} ×${String(p.wanted)}</code> `) : ""}</td>
<td>${a.latest ? h`<a href="${BASE}/deployments/${a.latest.uuid}">${badge(a.latest.status)}</a> ${time(a.latest.createdAt)}` : ""}</td></tr>`,
)}</tbody></table>${apps.length === 0 ? h`<p class="empty">No apps in your tenants.</p>` : ""}`;
  return layout("Apps", body, { viewer, section: "apps" });
}

export interface AppPageData {
  app: { slug: string; tenantSlug: string; domain: string; environment: string; branch: string; gitUrl: string };
  release: {
    version: number;
    commitSha: string | null;
    startCommand: string;
    pythonVersion: string | null;
    createdAt: Date;
  } | null;
  /** The release's process types with their commands and the containers the formation asks for, web first. */
  processes: Array<{ type: string; command: string; wanted: number }>;
  incident: IncidentView | null;
  deployments: DashboardDeployment[];
}

export function appPage(data: AppPageData, viewer: Viewer): Html {
  const { app, release, incident } = data;
  const body = h`<h1>${app.slug}</h1>
<dl><dt>Tenant</dt><dd>${app.tenantSlug}</dd><dt>Domain</dt><dd>${app.domain}</dd>
<dt>Environment</dt><dd>${app.environment}</dd><dt>Repository</dt><dd><code>${app.gitUrl}</code> (${app.branch})</dd>
<dt>Current release</dt><dd>${release ? h`v${release.version} <code>${release.commitSha ?? ""}</code> (Python ${release.pythonVersion ?? "?"}), ${time(release.createdAt)}` : "none yet"}</dd></dl>
${incident ? h`<p class="notice incident">Not serving: ${incident.reason}</p>` : ""}
<h2>Processes</h2>
${release ? h`<table><thead><tr><th>Type</th><th>Containers</th><th>Command</th></tr></thead><tbody>${data.processes.map((p) => h`<tr><td>${p.type}</td><td>${String(p.wanted)}</td><td><code>${p.command}</code></td></tr>`)}</tbody></table>` : h`<p class="empty">Nothing released yet.</p>`}
<h2>Deployments</h2>${deploymentTable(data.deployments, app.slug)}`;
  return layout(app.slug, body, { viewer, section: "apps", live: true });
}

export function deploymentsPage(rows: DashboardDeployment[], viewer: Viewer): Html {
  return layout("Deployments", h`<h1>Deployments</h1>${deploymentTable(rows)}`, {
    viewer,
    section: "deployments",
    live: true,
  });
}

/** Plain text: `h` escapes it where it is shown. */
export function describeApproval(action: ApprovalAction, app: string): string {
  return describeApprovalAction(action, app, (v) => v);
}

/** What the viewer may do with one request: the same rules as the Slack buttons (src/domain/approvals.ts). */
export interface ApprovalRights {
  approve: boolean;
  deny: boolean;
  /** Why Approve is greyed out, when it is. */
  why?: string;
}

export function approvalsPage(
  items: { approval: ApprovalView; requester: string; rights: ApprovalRights }[],
  viewer: Viewer,
  notice?: { ok: boolean; text: string },
): Html {
  const body = h`<h1>Pending approvals</h1>
${notice ? h`<p class="notice ${notice.ok ? "ok" : "refused"}" id="notice">${notice.text}</p>` : ""}
${items.length === 0 ? h`<p class="empty">Nothing is waiting for an approval.</p>` : ""}
${items.map(({ approval: a, requester, rights }) => {
  const form = (decision: "approved" | "denied", label: string, enabled: boolean, title?: string) =>
    h`<form method="post" action="${BASE}/approvals/${a.uuid}"><input type="hidden" name="csrf" value="${viewer.csrf}">
<input type="hidden" name="hash" value="${a.actionHash}"><input type="hidden" name="decision" value="${decision}">
<button type="submit" class="${decision}"${enabled ? "" : h` disabled`}${title ? h` title="${title}"` : ""}>${label}</button></form>`;
  return h`<article class="approval" id="approval-${a.uuid}"><p><strong>${requester}</strong> asks to
${describeApproval(a.action, a.appSlug ?? "a destroyed app")} <small>(${a.tenantSlug})</small></p>
<p><small>Requested ${time(a.createdAt)}, expires ${time(a.expiresAt)} · action ${a.actionHash.slice(0, 12)}</small></p>
${rights.approve || rights.deny || rights.why ? h`<div class="actions">${form("approved", "Approve", rights.approve, rights.why)}${rights.deny ? form("denied", "Deny", true) : ""}</div>` : ""}
</article>`;
})}`;
  return layout("Approvals", body, { viewer, section: "approvals" });
}

function detailsText(details: Record<string, unknown>): string {
  const text = Object.entries(details)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

export function auditPage(events: AuditView[], adminOf: readonly string[], viewer: Viewer): Html {
  const body =
    adminOf.length === 0
      ? h`<h1>Audit log</h1><p class="notice">The audit log is shown to tenant admins; you are admin of no tenant.</p>`
      : h`<h1>Audit log</h1><p>Tenants: ${adminOf.join(", ")}. Newest first.</p>
<table class="audit"><thead><tr><th>When</th><th>Who</th><th>Action</th><th>Outcome</th><th>App</th><th>Details</th></tr></thead><tbody>
${events.map(
  (
    e,
  ) => h`<tr><td>${time(e.at)}</td><td>${e.actorUser ? `@${e.actorUser.name}` : e.actorLabel}</td><td><code>${e.action}</code></td>
<td>${badge(e.outcome)}</td><td>${e.app ?? ""}</td><td><small>${detailsText(e.details)}</small></td></tr>`,
)}</tbody></table>`;
  return layout("Audit log", body, { viewer, section: "audit" });
}
