import type { AppSummary } from "../../commands/apps.ts";
import type { CancelResult } from "../../commands/cancel.ts";
import type { DeployResult } from "../../commands/deploy.ts";
import type { AppReleases } from "../../commands/releases.ts";
import { type AppStatus, describeProcesses, type ProcessStates } from "../../commands/status.ts";
import type { AppView } from "../domain/apps.ts";
import type { DeploymentView } from "../domain/deployments.ts";
import { webhookSecretLines } from "./admin-format.ts";
import { escapeTerminal, table } from "./output.ts";

/** Human output of the read commands. Only slugs, vN and UUIDs identify things; never internal row ids. */

const short = (sha: string | null) => (sha ? sha.slice(0, 12) : "-");
const when = (d: Date | null) => (d ? d.toISOString().replace(/\.\d{3}Z$/, "Z") : "-");
/** Commit messages are tenant text: first line only, escaped, bounded. */
const subject = (message: string | null) => {
  const first = escapeTerminal((message ?? "").split("\n")[0] ?? "");
  return first.length > 60 ? `${first.slice(0, 59)}…` : first;
};

export function formatAppList(apps: readonly AppSummary[]): string {
  if (apps.length === 0)
    return "no apps yet; create one with: tussilago apps create <slug> --git <url> --domain <host>\n";
  const rows = apps.map((a) => [
    a.slug,
    a.tenant,
    a.domain,
    a.branch,
    a.currentRelease ? `v${a.currentRelease.version}` : "-",
    a.lastDeployment?.status ?? "-",
  ]);
  return `${table([["APP", "TENANT", "DOMAIN", "BRANCH", "RELEASE", "LAST DEPLOY"], ...rows])}\n`;
}

export function formatCreatedApp(app: AppView & { webhookSecret?: string; challenge?: string }): string {
  const line = `created app ${app.slug} (tenant ${app.tenantSlug}, ${app.domain}, branch ${app.branch}) ${app.uuid}\n`;
  if (app.githubRepo === null || app.webhookSecret === undefined || app.challenge === undefined) return line;
  return line + webhookSecretLines(app.githubRepo, app.webhookSecret, "pending", app.challenge);
}

function deploymentRows(deployments: readonly DeploymentView[]): string[][] {
  return deployments.map((d) => [
    d.uuid,
    d.status,
    d.trigger,
    escapeTerminal(d.ref),
    short(d.commitSha),
    when(d.createdAt),
    subject(d.commitMessage),
  ]);
}

export function formatStatus(s: AppStatus, states?: ProcessStates): string {
  const { app } = s;
  const release = s.currentRelease
    ? `v${s.currentRelease.version}  ${s.currentRelease.uuid}  commit ${short(s.currentRelease.commitSha)}  ${when(s.currentRelease.createdAt)}`
    : "none yet";
  const building = s.deployments[0]?.status === "running" ? s.deployments[0].pythonVersion : null;
  const python = [
    s.currentRelease?.pythonVersion ? `${s.currentRelease.pythonVersion} (release v${s.currentRelease.version})` : "",
    building ? `${building} (deployment in progress)` : "",
  ]
    .filter((p) => p !== "")
    .join(", ");
  const head = table([
    ["app", `${app.slug} (tenant ${app.tenantSlug})`],
    ["uuid", app.uuid],
    ["domain", app.domain],
    ["git", `${app.gitUrl} (branch ${app.branch})`],
    ["limits", `${app.memoryMb} MB, ${app.cpus} CPU, egress ${app.allowEgress ? "allowed" : "blocked"}`],
    ["release", release],
    ...(python !== "" ? [["python", python]] : []),
    ...(s.processes.length > 0 ? [["processes", describeProcesses(s, states)]] : []),
    ...(s.incident
      ? [
          [
            "DOWN",
            `${s.incident.kind.replace("_", " ")} since ${when(s.incident.createdAt)}: ${escapeTerminal(s.incident.reason)}`,
          ],
        ]
      : []),
  ]);
  if (s.deployments.length === 0) return `${head}\n\nno deployments yet\n`;
  const deployments = table([
    ["DEPLOYMENT", "STATUS", "TRIGGER", "REF", "COMMIT", "CREATED", "MESSAGE"],
    ...deploymentRows(s.deployments),
  ]);
  const failed =
    s.deployments[0]?.status === "failed"
      ? `\nlast failure: ${escapeTerminal(s.deployments[0].failureReason ?? "")}`
      : "";
  return `${head}\n\n${deployments}${failed}\n`;
}

export function formatReleases(r: AppReleases): string {
  if (r.releases.length === 0) return `${r.app.slug} has no releases yet\n`;
  const rows = r.releases.map((rel, i) => [
    `v${rel.version}`,
    rel.uuid,
    short(rel.commitSha),
    when(rel.createdAt),
    i === 0 ? "current" : rel.prunedAt ? "pruned" : "kept",
  ]);
  return `${table([["RELEASE", "UUID", "COMMIT", "CREATED", "STATE"], ...rows])}\n`;
}

export function formatEnqueued(result: DeployResult, slug: string): string {
  const d = result.deployment;
  const lines = [
    `deployment ${d.uuid} queued for ${slug} (${d.trigger === "rollback" ? "rollback to " : "ref "}${escapeTerminal(d.ref)})`,
  ];
  for (const uuid of result.superseded) lines.push(`superseded queued deployment ${uuid}`);
  return `${lines.join("\n")}\n`;
}

export function formatLogs(text: string): string {
  const escaped = escapeTerminal(text);
  return escaped === "" || escaped.endsWith("\n") ? escaped : `${escaped}\n`;
}

export function formatCancel(result: CancelResult): string {
  const slug = result.app.slug;
  if (result.outcomes.length === 0) return `${slug} has no queued or running deployment to cancel\n`;
  const lines = result.outcomes.map(({ kind, deployment: d }) =>
    kind === "cancelled"
      ? `deployment ${d.uuid} of ${slug} cancelled (it had not started)`
      : kind === "requested"
        ? `deployment ${d.uuid} of ${slug} is running: asked to stop`
        : `deployment ${d.uuid} of ${slug} had already finished (${d.status})`,
  );
  return `${lines.join("\n")}\n`;
}
