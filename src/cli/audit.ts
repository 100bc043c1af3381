import { auditCommand, summariseDetails } from "../../commands/audit.ts";
import type { Db } from "../db/client.ts";
import type { AuditView } from "../domain/audit.ts";
import { EXIT } from "./exit-codes.ts";
import type { OpsCommand } from "./ops-args.ts";
import { escapeTerminal, type Output, table } from "./output.ts";

const when = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

function actor(e: AuditView): string {
  const u = e.actorUser;
  if (u === null) return e.actorLabel;
  const id = u.teamId !== null && u.userId !== null ? ` (${u.teamId}:${u.userId})` : "";
  return `${u.name.length > 30 ? `${u.name.slice(0, 29)}…` : u.name}${id}`;
}

/** Names come from Slack profiles and details from requests: shown escaped, never able to drive the terminal. */
export function formatAudit(events: readonly AuditView[]): string {
  const rows = events.map((e) =>
    [
      when(e.at),
      actor(e),
      e.action,
      e.outcome,
      e.app ?? (e.tenant === null ? "-" : `tenant:${e.tenant}`),
      summariseDetails(e.details),
    ].map((cell) => escapeTerminal(cell)),
  );
  return `${table([["TIME", "ACTOR", "ACTION", "OUTCOME", "APP", "DETAILS"], ...rows])}\n`;
}

/** One JSON object per line, newest first: `tussilago audit --json | jq …`. */
export function auditJsonLines(events: readonly AuditView[]): string {
  return events
    .map((e) =>
      JSON.stringify({
        uuid: e.uuid,
        at: e.at.toISOString(),
        actor: e.actorLabel,
        slackUser: e.actorUser,
        action: e.action,
        outcome: e.outcome,
        app: e.app,
        tenant: e.tenant,
        details: e.details,
        correlationId: e.correlationId,
      }),
    )
    .map((line) => `${line}\n`)
    .join("");
}

export function executeAudit(
  command: Extract<OpsCommand, { kind: "audit" }>,
  res: { db(): Db },
  output: Output,
  now: () => number = Date.now,
): number {
  const since = command.sinceMs === undefined ? undefined : new Date(now() - command.sinceMs);
  const events = auditCommand({ db: res.db() }, { app: command.app, since, limit: command.limit });
  if (command.json) {
    output.out(auditJsonLines(events));
    return EXIT.ok;
  }
  if (events.length === 0) {
    const scope = [command.app === undefined ? "" : ` for ${command.app}`, since ? ` since ${when(since)}` : ""];
    output.out(`no audit events${scope.join("")}\n`);
    return EXIT.ok;
  }
  output.out(formatAudit(events));
  if (events.length === command.limit) output.err(`showing the newest ${command.limit}; see more with --limit\n`);
  return EXIT.ok;
}
