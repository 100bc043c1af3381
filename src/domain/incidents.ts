import { randomUUID } from "node:crypto";
import { and, asc, desc, eq, isNull } from "drizzle-orm";
import type { DbOrTx } from "../db/client.ts";
import { appIncidents, apps, type IncidentKind } from "../db/schema.ts";
import { appRowId } from "./apps.ts";

/**
 * Incidents of the data plane: a live app whose current release the bot could not keep serving. At most one is open
 * per app; the first cause names it (a crash loop that then loses its image stays the same incident), and it is
 * reported once (`claimIncidentReport`), whichever pass saw it first.
 */
export interface IncidentView {
  uuid: string;
  appUuid: string;
  appSlug: string;
  kind: IncidentKind;
  reason: string;
  createdAt: Date;
  reportedAt: Date | null;
}

const selection = {
  uuid: appIncidents.uuid,
  appUuid: apps.uuid,
  appSlug: apps.slug,
  kind: appIncidents.kind,
  reason: appIncidents.reason,
  createdAt: appIncidents.createdAt,
  reportedAt: appIncidents.reportedAt,
};

function baseQuery(db: DbOrTx) {
  return db.select(selection).from(appIncidents).innerJoin(apps, eq(apps.id, appIncidents.appId));
}

export function openIncident(db: DbOrTx, appUuid: string): IncidentView | undefined {
  return baseQuery(db)
    .where(and(isNull(appIncidents.resolvedAt), eq(apps.uuid, appUuid)))
    .orderBy(desc(appIncidents.createdAt), desc(appIncidents.id))
    .get();
}

/** Every open incident, oldest first: `/readyz` counts them. */
export function openIncidents(db: DbOrTx): IncidentView[] {
  return baseQuery(db)
    .where(isNull(appIncidents.resolvedAt))
    .orderBy(asc(appIncidents.createdAt), asc(appIncidents.id))
    .all();
}

/** Opens an incident for the app unless one is open already; `opened` says which. */
export function recordIncident(
  db: DbOrTx,
  input: { appUuid: string; kind: IncidentKind; reason: string },
): { incident: IncidentView; opened: boolean } {
  return db.transaction((t) => {
    const existing = openIncident(t, input.appUuid);
    if (existing) return { incident: existing, opened: false };
    const uuid = randomUUID();
    t.insert(appIncidents)
      .values({ uuid, appId: appRowId(t, input.appUuid), kind: input.kind, reason: input.reason.slice(0, 500) })
      .run();
    const incident = openIncident(t, input.appUuid);
    if (!incident) throw new Error("incident vanished right after insert");
    return { incident, opened: true };
  });
}

/** True exactly once per incident: the caller that gets it posts the notice. */
export function claimIncidentReport(db: DbOrTx, incidentUuid: string): boolean {
  const res = db
    .update(appIncidents)
    .set({ reportedAt: new Date() })
    .where(and(eq(appIncidents.uuid, incidentUuid), isNull(appIncidents.reportedAt)))
    .run();
  return res.changes === 1;
}

/** Closes the app's open incident, if any; returns it (closed) so the caller can say the app is back. */
export function resolveIncident(db: DbOrTx, appUuid: string): IncidentView | undefined {
  const open = openIncident(db, appUuid);
  if (!open) return undefined;
  db.update(appIncidents)
    .set({ resolvedAt: new Date() })
    .where(and(eq(appIncidents.uuid, open.uuid), isNull(appIncidents.resolvedAt)))
    .run();
  return open;
}
