import { auditCommand, summariseDetails } from "../commands/audit.ts";
import { parseAuditWindow } from "../commands/audit-window.ts";
import type { Db } from "../src/db/client.ts";
import { getAppBySlug } from "../src/domain/apps.ts";
import { type AuditView, recordAudit } from "../src/domain/audit.ts";
import { notFoundError } from "../src/domain/errors.ts";
import { type Actor, authorize, roleIn } from "../src/domain/users.ts";
import { slugSchema } from "../src/domain/validation.ts";
import { escapeSlack } from "../src/infra/slack-api.ts";

/** `/tussilago audit <app> [--since 1h]`: the app's audit log, newest first, for admins of its tenant. */
export type AuditSubcommand = { kind: "audit"; app: string; sinceMs: number | undefined };

/** Events fetched for one answer; the text budget below usually ends the list first. */
export const SLACK_AUDIT_EVENTS = 25;
/** Slack cuts or refuses long messages (a section block holds 3,000 characters); stay below with the footer. */
const TEXT_BUDGET = 2_800;
const MENTION = /^<@[UW][A-Z0-9]{2,31}>$/;

/** `args` are the words after `audit`; undefined means malformed (the caller answers with the usage line). */
export function parseAuditArgs(args: readonly string[]): AuditSubcommand | undefined {
  const [app, flag, value, ...rest] = args;
  if (rest.length > 0 || !slugSchema.safeParse(app).success) return undefined;
  if (flag === undefined) return { kind: "audit", app: app as string, sinceMs: undefined };
  // Desktop clients may turn a typed "--" into a dash.
  const sinceMs = /^(--|—|–)since$/.test(flag) && value !== undefined ? parseAuditWindow(value) : undefined;
  return sinceMs === undefined ? undefined : { kind: "audit", app: app as string, sinceMs };
}

/** Built by ensureSlackUser from checked ids, a stored mention renders as the user; any other label is escaped. */
function line(e: AuditView): string {
  const who = MENTION.test(e.actorLabel) ? e.actorLabel : escapeSlack(e.actorLabel);
  const details = summariseDetails(e.details, 60);
  const time = e.at.toISOString().replace(/\.\d{3}Z$/, "Z");
  return `• ${time} ${who} \`${escapeSlack(e.action)}\` ${e.outcome}${details === "" ? "" : ` · ${escapeSlack(details)}`}`;
}

/**
 * Admins of the app's tenant only. Someone with no role there learns nothing, not even that the app exists (the
 * same answer as an unknown app); a refusal is audited either way.
 */
export function runAuditSubcommand(
  deps: { db: Db; now: () => number },
  cmd: AuditSubcommand,
  input: { actor: Actor; correlationId: string },
): { text: string } {
  const app = getAppBySlug(deps.db, cmd.app);
  const base = { action: "audit.read", actor: input.actor, appUuid: app.uuid, correlationId: input.correlationId };
  if (roleIn(deps.db, input.actor, app.tenantSlug) === undefined) {
    recordAudit(deps.db, { ...base, outcome: "denied", details: { needed: "admin", had: "none" } });
    throw notFoundError(`app ${cmd.app}`);
  }
  authorize(deps.db, {
    actor: input.actor,
    correlationId: input.correlationId,
    app,
    needed: "admin",
    action: "audit.read",
  });
  const since = cmd.sinceMs === undefined ? undefined : new Date(deps.now() - cmd.sinceMs);
  const events = auditCommand(deps, { app: app.slug, since, limit: SLACK_AUDIT_EVENTS });
  recordAudit(deps.db, {
    ...base,
    outcome: "allowed",
    details: cmd.sinceMs === undefined ? {} : { since: `${cmd.sinceMs / 1000}s` },
  });
  const window = since === undefined ? "" : ` since ${since.toISOString().replace(/\.\d{3}Z$/, "Z")}`;
  if (events.length === 0) return { text: `No audit events for *${app.slug}*${window}.` };
  const lines: string[] = [];
  let used = 0;
  for (const e of events) {
    const next = line(e);
    if (used + next.length + 1 > TEXT_BUDGET) break;
    lines.push(next);
    used += next.length + 1;
  }
  const more =
    lines.length < events.length || events.length === SLACK_AUDIT_EVENTS
      ? `\nShowing the newest ${lines.length}; for more: \`tussilago audit --app ${app.slug}${cmd.sinceMs === undefined ? "" : " --since …"}\``
      : "";
  return { text: `Audit log of *${app.slug}*${window}, newest first:\n${lines.join("\n")}${more}` };
}
