import type { Db } from "../src/db/client.ts";
import { appSlugEverUsed } from "../src/domain/apps.ts";
import { type AuditView, listAuditEvents } from "../src/domain/audit.ts";
import { notFoundError } from "../src/domain/errors.ts";

export interface AuditInput {
  app?: string | undefined;
  /** Only events newer than this. */
  since?: Date | undefined;
  limit: number;
}

/**
 * The audit log, newest first: the CLI (`tussilago audit`) and `/tussilago audit <app>` (admins, handlers/slack-audit.ts).
 * An app that never existed is a 404; a destroyed one still shows its history.
 */
export function auditCommand(deps: { db: Db }, input: AuditInput): AuditView[] {
  if (input.app !== undefined) {
    if (!appSlugEverUsed(deps.db, input.app)) throw notFoundError(`app ${input.app}`);
  }
  return listAuditEvents(deps.db, { appSlug: input.app, since: input.since, limit: input.limit });
}

/** `key=value` pairs of an event's details, bounded; values that are objects are shown as JSON. */
export function summariseDetails(details: Record<string, unknown>, max = 80): string {
  const parts = Object.entries(details).map(([key, value]) => {
    const shown = typeof value === "string" ? value : JSON.stringify(value);
    return `${key}=${shown}`;
  });
  const text = parts.join(" ");
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
