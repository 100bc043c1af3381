import type { GithubLink } from "../../commands/apps.ts";
import type { GrantResult, MemberView, RevokeResult } from "../../commands/users.ts";
import { LINK_PROOF_PATH, linkProofLine } from "../domain/github-links.ts";
import type { TenantStoreInfo } from "../domain/tenant-databases.ts";
import { escapeTerminal, table } from "./output.ts";

/** Human output of the operator commands: slugs, Slack ids and UUIDs only, never internal row ids. */

const when = (d: Date | null) => (d ? d.toISOString().replace(/\.\d{3}Z$/, "Z") : "-");
/** Display names come from Slack profiles or the operator: bounded and escaped like other outside text. */
const name = (text: string) => escapeTerminal(text.length > 40 ? `${text.slice(0, 39)}…` : text);

export function formatGrant(g: GrantResult): string {
  const was = g.previous === null ? "" : g.previous === g.role ? " (unchanged)" : ` (was ${g.previous})`;
  return `granted ${g.role} to ${g.user} (${name(g.name)}) in tenant ${g.tenant}${was}\n`;
}

export function formatRevoke(r: RevokeResult): string {
  return `revoked ${r.previous} from ${r.user} (${name(r.name)}) in tenant ${r.tenant}\n`;
}

export function formatMembers(members: readonly MemberView[], tenant: string | undefined): string {
  if (members.length === 0) {
    const where = tenant === undefined ? "" : ` in tenant ${tenant}`;
    return `nobody has a role${where} yet; grant one with: tussilago users grant <TEAM:USER> <role>\n`;
  }
  const rows = members.map((m) => [m.tenant, m.user, name(m.name), m.role, when(m.since)]);
  return `${table([["TENANT", "USER", "NAME", "ROLE", "SINCE"], ...rows])}\n`;
}

export function formatChannel(r: { app: string; channel: string | null; previous: string | null }): string {
  if (r.channel !== null) {
    const was = r.previous !== null && r.previous !== r.channel ? ` (was ${r.previous})` : "";
    return `linked ${r.app} to Slack channel ${r.channel}${was}\n`;
  }
  return r.previous === null
    ? `${r.app} was not linked to a Slack channel\n`
    : `unlinked ${r.app} from Slack channel ${r.previous}\n`;
}

export function formatGithubLink(l: GithubLink): string {
  const tags = l.tagPattern === null ? "tag pushes are ignored" : `tags matching ${l.tagPattern} deploy too`;
  const state = l.status === "pending" ? " once the link is active" : "";
  const head = `linked ${l.app} to GitHub ${l.repo} (${l.status}): pushes to ${l.branch} deploy${state}; ${tags}\n`;
  if (l.webhookSecret === undefined || l.challenge === undefined) return head;
  return head + webhookSecretLines(l.repo, l.webhookSecret, l.status, l.challenge);
}

export function formatWebhookSecret(r: {
  app: string;
  repo: string;
  status: "pending" | "active";
  webhookSecret: string;
  challenge: string;
}) {
  return `new webhook secret for ${r.app} (GitHub ${r.repo}); the old one no longer verifies\n${webhookSecretLines(r.repo, r.webhookSecret, r.status, r.challenge)}`;
}

/** The secret is printed once and stored only sealed: it cannot be shown again, only rotated. */
export function webhookSecretLines(
  repo: string,
  secret: string,
  status: "pending" | "active",
  challenge: string,
): string {
  const activation =
    status === "pending"
      ? "the link stays pending (nothing deploys) until GitHub's ping for this repository arrives signed with it"
      : "update the webhook on GitHub now: deliveries signed with the old secret are refused";
  const proof =
    status === "pending"
      ? `prove control of the repository: commit the file ${LINK_PROOF_PATH} containing the line\n` +
        `  ${linkProofLine(challenge)}\n` +
        "to its default branch; where the bot has GitHub API credentials the link turns active only once that file " +
        "is there when a signed ping or push arrives (redeliver the ping after committing it)\n"
      : "";
  return (
    `webhook secret (shown once): ${secret}\n` +
    `add it at https://github.com/${repo}/settings/hooks (payload URL <bot>/webhooks/github, content type ` +
    `application/json, push events); ${activation}\n${proof}`
  );
}

const FOLLOW_UP: Record<"create" | "rotate" | "drop", string> = {
  create: "the app gets its credentials on its next deploy",
  rotate: "the app gets the new credentials on its next deploy",
  drop: "the data is deleted once the job runs",
};

export function formatProvisionQueued(r: {
  app: string;
  kind: string;
  action: "create" | "rotate" | "drop";
  jobId: string;
}): string {
  return (
    `queued ${r.kind} ${r.action} for ${r.app} (job ${r.jobId})\n` +
    `${FOLLOW_UP[r.action]}; check with: tussilago db show ${r.app}\n`
  );
}

export function formatStores(app: string, stores: readonly TenantStoreInfo[]): string {
  const rows = stores.map((s) => [s.kind, s.provisioned ? "yes" : "no", s.url ?? "-", s.user, when(s.updatedAt)]);
  const head = table([["KIND", "PROVISIONED", "URL (NO PASSWORD)", "USER", "UPDATED"], ...rows]);
  const hint = stores.some((s) => !s.provisioned) ? `\ncreate one with: tussilago db create ${app} [--kind redis]` : "";
  return `${head}${hint}\n`;
}

export function revealWarning(app: string, kind: string): string {
  return (
    `warning: the ${kind} password of ${app} was rotated to show it; it is printed once and cannot be read again. ` +
    `The running app keeps its open connections but cannot open new ones until redeployed: tussilago deploy ${app}\n`
  );
}
