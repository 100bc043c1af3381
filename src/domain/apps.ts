import { randomUUID } from "node:crypto";
import { and, asc, eq, isNotNull, isNull, or } from "drizzle-orm";
import { z } from "zod";
import type { DbOrTx } from "../db/client.ts";
import { apps, tenants } from "../db/schema.ts";
import { conflictError, invalidError, notFoundError } from "./errors.ts";
import { domainSchema, gitUrlSchema, refSchema, slugSchema } from "./validation.ts";

export type AppRow = typeof apps.$inferSelect;
export type TenantRow = typeof tenants.$inferSelect;

/** An app as the rest of the code sees it: with its tenant's public id and slug, never integer keys. */
export interface AppView {
  uuid: string;
  slug: string;
  tenantUuid: string;
  tenantSlug: string;
  gitUrl: string;
  githubRepo: string | null;
  /** Pending until the repository proved control (src/domain/github-links.ts); only an active link is trusted. */
  githubLinkStatus: AppRow["githubLinkStatus"];
  /** How the link was proved; the bot's API credentials serve only `challenge-file` links. */
  githubLinkProof: AppRow["githubLinkProof"];
  branch: string;
  domain: string;
  environment: AppRow["environment"];
  memoryMb: number;
  cpus: string;
  pidsLimit: number;
  healthPath: string;
  allowEgress: boolean;
  gitSubmodules: boolean;
  gitLfs: boolean;
  /** Stored approval policy (src/domain/approval-policy.ts); null → the environment's default. */
  approvalPolicy: string[] | null;
  /** Containers per process type (`tussilago scale`); a type not named runs one. Null → one of each. */
  formation: Record<string, number> | null;
  createdAt: Date;
}

export const newAppSchema = z.object({
  slug: slugSchema,
  tenant: slugSchema.default("default"),
  gitUrl: gitUrlSchema,
  branch: refSchema.default("main"),
  domain: domainSchema,
  githubRepo: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/, "must be owner/name")
    .optional(),
  environment: z.enum(["production", "staging", "development"]).default("production"),
  memoryMb: z.number().int().min(64).max(8192).default(256),
  cpus: z
    .string()
    .regex(/^(0\.[1-9]|[1-8](\.\d)?)$/, "must be between 0.1 and 8")
    .default("0.5"),
  healthPath: z
    .string()
    .regex(/^\/[A-Za-z0-9._~/-]{0,200}$/, "must be an absolute URL path")
    .default("/"),
  allowEgress: z.boolean().default(false),
  gitSubmodules: z.boolean().default(false),
  gitLfs: z.boolean().default(false),
});
export type NewApp = z.input<typeof newAppSchema>;

const selection = {
  uuid: apps.uuid,
  slug: apps.slug,
  tenantUuid: tenants.uuid,
  tenantSlug: tenants.slug,
  gitUrl: apps.gitUrl,
  githubRepo: apps.githubRepo,
  githubLinkStatus: apps.githubLinkStatus,
  githubLinkProof: apps.githubLinkProof,
  branch: apps.branch,
  domain: apps.domain,
  environment: apps.environment,
  memoryMb: apps.memoryMb,
  cpus: apps.cpus,
  pidsLimit: apps.pidsLimit,
  healthPath: apps.healthPath,
  allowEgress: apps.allowEgress,
  gitSubmodules: apps.gitSubmodules,
  gitLfs: apps.gitLfs,
  approvalPolicy: apps.approvalPolicy,
  formation: apps.formation,
  createdAt: apps.createdAt,
};

export function toLabel(app: Pick<AppView, "slug" | "tenantSlug">): string {
  return `${app.tenantSlug}/${app.slug}`;
}

export function ensureTenant(db: DbOrTx, slug: string): TenantRow {
  const parsed = slugSchema.parse(slug);
  db.insert(tenants).values({ uuid: randomUUID(), slug: parsed, name: parsed }).onConflictDoNothing().run();
  const row = db.select().from(tenants).where(eq(tenants.slug, parsed)).get();
  if (!row) throw new Error("tenant vanished after insert");
  return row;
}

export function createApp(db: DbOrTx, input: NewApp): AppView {
  const parsed = newAppSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalidError(`${issue?.path.join(".") ?? "app"} ${issue?.message ?? "is invalid"}`);
  }
  const data = parsed.data;
  return db.transaction((tx) => {
    const tenant = ensureTenant(tx, data.tenant);
    // Slugs and domains stay reserved after a destroy (unique indexes), so a new app can never inherit an old
    // app's containers, images or routes by name.
    const clash = tx
      .select({ slug: apps.slug, domain: apps.domain })
      .from(apps)
      .where(or(eq(apps.slug, data.slug), eq(apps.domain, data.domain)))
      .get();
    if (clash)
      throw conflictError(
        clash.slug === data.slug ? `app ${data.slug} already exists` : `domain ${data.domain} is taken`,
      );
    tx.insert(apps)
      .values({
        uuid: randomUUID(),
        tenantId: tenant.id,
        slug: data.slug,
        gitUrl: data.gitUrl,
        githubRepo: data.githubRepo ?? null,
        // A link is unproven until its repository answers (src/domain/github-links.ts).
        githubLinkStatus: data.githubRepo === undefined ? null : "pending",
        branch: data.branch,
        domain: data.domain,
        environment: data.environment,
        memoryMb: data.memoryMb,
        cpus: data.cpus,
        healthPath: data.healthPath,
        allowEgress: data.allowEgress,
        gitSubmodules: data.gitSubmodules,
        gitLfs: data.gitLfs,
      })
      .run();
    const created = getAppBySlug(tx, data.slug);
    return created;
  });
}

export function findAppBySlug(db: DbOrTx, slug: string): AppView | undefined {
  return db
    .select(selection)
    .from(apps)
    .innerJoin(tenants, eq(tenants.id, apps.tenantId))
    .where(and(eq(apps.slug, slug), isNull(apps.destroyedAt)))
    .get();
}

export function getAppBySlug(db: DbOrTx, slug: string): AppView {
  const app = findAppBySlug(db, slug);
  if (!app) throw notFoundError(`app ${slug}`);
  return app;
}

export function getAppByUuid(db: DbOrTx, uuid: string): AppView {
  const app = db
    .select(selection)
    .from(apps)
    .innerJoin(tenants, eq(tenants.id, apps.tenantId))
    .where(eq(apps.uuid, uuid))
    .get();
  if (!app) throw notFoundError("app");
  return app;
}

/** All live apps with their tenant, in one query (no N+1), oldest first. */
export function listApps(db: DbOrTx): AppView[] {
  return db
    .select(selection)
    .from(apps)
    .innerJoin(tenants, eq(tenants.id, apps.tenantId))
    .where(isNull(apps.destroyedAt))
    .orderBy(asc(apps.createdAt), asc(apps.id))
    .all();
}

/** UUIDs of destroyed apps: what is left of them on the host (images, caches) is no longer needed. */
export function destroyedAppUuids(db: DbOrTx): Set<string> {
  return new Set(
    db
      .select({ uuid: apps.uuid })
      .from(apps)
      .where(isNotNull(apps.destroyedAt))
      .all()
      .map((r) => r.uuid),
  );
}

/** UUIDs of tenants with at least one live app (per-tenant build caches of the others may go). */
export function tenantsWithLiveApps(db: DbOrTx): Set<string> {
  return new Set(
    db
      .selectDistinct({ uuid: tenants.uuid })
      .from(apps)
      .innerJoin(tenants, eq(tenants.id, apps.tenantId))
      .where(isNull(apps.destroyedAt))
      .all()
      .map((r) => r.uuid),
  );
}

/** Internal key for joins inside the domain layer; never leaves it. */
export function appRowId(db: DbOrTx, uuid: string): number {
  const row = db.select({ id: apps.id }).from(apps).where(eq(apps.uuid, uuid)).get();
  if (!row) throw notFoundError("app");
  return row.id;
}

/** Whether an app ever had this slug, destroyed ones included (their history stays readable). */
export function appSlugEverUsed(db: DbOrTx, slug: string): boolean {
  return db.select({ slug: apps.slug }).from(apps).where(eq(apps.slug, slug)).get() !== undefined;
}

/** Marks a live app destroyed; its slug and domain stay reserved. A destroyed app is left as it is. */
export function markAppDestroyed(db: DbOrTx, uuid: string): void {
  db.update(apps)
    .set({ destroyedAt: new Date() })
    .where(and(eq(apps.uuid, uuid), isNull(apps.destroyedAt)))
    .run();
}

/** The app's linked Slack channel, or null when it has none (or the app is unknown). */
export function appSlackChannel(db: DbOrTx, uuid: string): string | null {
  return db.select({ channel: apps.slackChannelId }).from(apps).where(eq(apps.uuid, uuid)).get()?.channel ?? null;
}

/** Where a notice about the app goes: its linked channel and repository, in one query. */
export function appNoticeTarget(
  db: DbOrTx,
  uuid: string,
): { channel: string | null; githubRepo: string | null } | undefined {
  return db
    .select({ channel: apps.slackChannelId, githubRepo: apps.githubRepo })
    .from(apps)
    .where(eq(apps.uuid, uuid))
    .get();
}

/** Sets (or clears, with null) the channel the app's deploy threads go to. */
export function setAppSlackChannel(db: DbOrTx, uuid: string, channel: string | null): void {
  db.update(apps).set({ slackChannelId: channel }).where(eq(apps.uuid, uuid)).run();
}

/** Stores the app's formation (containers per process type); the caller validated it (src/domain/formation.ts). */
export function setAppFormation(db: DbOrTx, uuid: string, formation: Record<string, number>): void {
  db.update(apps).set({ formation }).where(eq(apps.uuid, uuid)).run();
}
