import { randomBytes, randomUUID } from "node:crypto";
import { and, asc, eq, inArray, isNull } from "drizzle-orm";
import type { Config } from "../config.ts";
import type { Db, DbOrTx } from "../db/client.ts";
import { appEnvVars, apps, auditEvents, tenants } from "../db/schema.ts";
import type { AppRedisServers } from "../infra/app-redis.ts";
import { DEFAULT_EVICTION_POLICY, type EvictionPolicy, isEvictionPolicy } from "../infra/app-redis-args.ts";
import type { StorePublicAddresses } from "../infra/app-services.ts";
import type { PostgresAdmin, RoleLimits } from "../infra/postgres-admin.ts";
import type { RedisAcl } from "../infra/redis-acl.ts";
import type { Logger } from "../log.ts";
import type { SecretBox } from "./crypto.ts";
import { openEnvValue, sealEnvValue, upsertSealedEnvVar } from "./env-vars.ts";
import { conflictError, DomainError, notFoundError } from "./errors.ts";

/**
 * Per-app PostgreSQL database + role, and per-app Redis: a private redis-server in a sandboxed container (the
 * default, src/infra/app-redis.ts) or an ACL user on a shared server. Names derive from the app UUID, so no extra
 * state is needed to find them again; generated credentials live only in the app's sealed env vars (DATABASE_URL,
 * REDIS_URL, REDIS_KEY_PREFIX), which the app receives on its next deploy. Every step against a server is
 * idempotent and audited, so a job that dies half-way just runs again.
 */

export const TENANT_STORE_KINDS = ["postgres", "redis"] as const;
export type TenantStoreKind = (typeof TENANT_STORE_KINDS)[number];

export const ENV_KEYS: Record<TenantStoreKind, readonly string[]> = {
  postgres: ["DATABASE_URL"],
  redis: ["REDIS_URL", "REDIS_KEY_PREFIX"],
};

export interface TenantStoreSettings {
  /** Host/port written into DATABASE_URL: PgBouncer's when it fronts the cluster. */
  postgres: { publicHost: string; publicPort: number; limits: RoleLimits } | undefined;
  /** The tenant Redis as apps reach it, without credentials (`redis://host:port` or `rediss://…`). */
  redis: { publicUrl: string } | undefined;
}

/**
 * Where apps reach their stores, from the bot's configuration: the hosts/ports written into DATABASE_URL and
 * REDIS_URL, and so the exact pairs the sandbox firewall lets apps open (src/infra/app-services.ts). The bot and
 * `tussilago run` must agree on them, so both take them from here.
 */
export function storePublicAddresses(ts: Config["tenantStores"]): StorePublicAddresses {
  const pgAdminUrl = ts.pgAdminUrl ? new URL(ts.pgAdminUrl) : undefined;
  return {
    postgres: pgAdminUrl
      ? {
          publicHost: ts.pgPublicHost ?? pgAdminUrl.hostname,
          publicPort: ts.pgPublicPort ?? Number(pgAdminUrl.port || 5432),
        }
      : undefined,
    redis: ts.redisUrl
      ? { publicUrl: tenantRedisPublicUrl(ts.redisUrl, ts.redisPublicHost, ts.redisPublicPort) }
      : undefined,
  };
}

/** The tenant Redis as apps reach it: the admin URL without credentials, with the public host/port if given. */
export function tenantRedisPublicUrl(adminUrl: string, host?: string, port?: number): string {
  const url = new URL(adminUrl);
  url.username = "";
  url.password = "";
  if (host !== undefined) url.hostname = host;
  if (port !== undefined) url.port = String(port);
  return url.toString();
}

export const DEFAULT_ROLE_LIMITS: RoleLimits = {
  connectionLimit: 10,
  statementTimeoutMs: 30_000,
  idleInTransactionTimeoutMs: 60_000,
};

export interface TenantStoreDeps {
  db: Db;
  secrets: SecretBox;
  log: Logger;
  postgres: PostgresAdmin | undefined;
  redisAcl: RedisAcl | undefined;
  /**
   * Private Redis servers (one sandboxed container per app). When set, new Redis stores are private ones; apps
   * whose REDIS_URL names a shared-server ACL user keep that until dropped.
   */
  appRedis?: AppRedisServers | undefined;
  settings: TenantStoreSettings;
  generatePassword?: () => string;
}

/** The app's own env var that picks its private Redis' `maxmemory-policy` (docs/tenant-databases.md). */
export const REDIS_POLICY_KEY = "REDIS_MAXMEMORY_POLICY";

/** What `show` returns: never the password. */
export interface TenantStoreInfo {
  kind: TenantStoreKind;
  provisioned: boolean;
  /** The connection URL with the password removed. */
  url: string | null;
  user: string;
  database?: string;
  keyPrefix?: string;
  updatedAt: Date | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function tenantStoreNames(appUuid: string): { pg: string; redisUser: string; redisPrefix: string } {
  if (!UUID.test(appUuid)) throw new Error("app UUID expected");
  return { pg: `app_${appUuid.replaceAll("-", "")}`, redisUser: `app-${appUuid}`, redisPrefix: `app:${appUuid}` };
}

/** 32 random bytes, base64url: URL-safe as-is, so it needs no escaping inside DATABASE_URL/REDIS_URL. */
export function generatePassword(): string {
  return randomBytes(32).toString("base64url");
}

interface Ctx {
  deps: TenantStoreDeps;
  app: { id: number; tenantId: number; uuid: string };
  kind: TenantStoreKind;
  actor: string;
  correlationId: string | undefined;
}

export interface ActionOptions {
  /** "system" for the worker, "cli", or a Slack user label. */
  actor?: string;
  correlationId?: string;
}

function loadApp(db: DbOrTx, appUuid: string, allowDestroyed: boolean): Ctx["app"] {
  const row = db
    .select({ id: apps.id, tenantId: apps.tenantId, uuid: apps.uuid, destroyedAt: apps.destroyedAt })
    .from(apps)
    .where(eq(apps.uuid, appUuid))
    .get();
  if (!row || (row.destroyedAt !== null && !allowDestroyed)) throw notFoundError("app");
  return { id: row.id, tenantId: row.tenantId, uuid: row.uuid };
}

function auditTenantStore(ctx: Ctx, step: string, outcome: "succeeded" | "failed", details = {}): void {
  ctx.deps.db
    .insert(auditEvents)
    .values({
      uuid: randomUUID(),
      tenantId: ctx.app.tenantId,
      appId: ctx.app.id,
      actorLabel: ctx.actor,
      action: `tenant-store.${ctx.kind}.${step}`,
      outcome,
      details: { kind: ctx.kind, ...details },
      correlationId: ctx.correlationId ?? null,
    })
    .run();
}

/** Runs one server step, auditing its outcome; the error text (may hold SQL) goes to the log, not the audit row. */
async function step<T>(ctx: Ctx, name: string, fn: () => Promise<T>): Promise<T> {
  try {
    const result = await fn();
    auditTenantStore(ctx, name, "succeeded");
    return result;
  } catch (err) {
    const code = typeof err === "object" && err !== null && "code" in err ? String(err.code) : undefined;
    auditTenantStore(ctx, name, "failed", { error: err instanceof Error ? err.name : "unknown", code });
    ctx.deps.log.warn({ appId: ctx.app.uuid, kind: ctx.kind, step: name, err }, "tenant store step failed");
    throw err;
  }
}

function readEnv(db: DbOrTx, appId: number, keys: readonly string[]) {
  return db
    .select({ key: appEnvVars.key, value: appEnvVars.valueEncrypted, updatedAt: appEnvVars.updatedAt })
    .from(appEnvVars)
    .where(and(eq(appEnvVars.appId, appId), inArray(appEnvVars.key, [...keys])))
    .all();
}

/** The stored URL, opened as the env file of a run opens it (env-vars.ts). */
function storedUrl(ctx: Ctx): URL | undefined {
  const key = ENV_KEYS[ctx.kind][0] as string;
  const row = readEnv(ctx.deps.db, ctx.app.id, [key])[0];
  return row ? new URL(openEnvValue(ctx.deps.secrets, { appUuid: ctx.app.uuid, key, sealed: row.value })) : undefined;
}

function writeEnv(ctx: Ctx, values: Record<string, string>): void {
  const { db, secrets } = ctx.deps;
  db.transaction((tx) => {
    for (const [key, value] of Object.entries(values)) {
      upsertSealedEnvVar(tx, ctx.app.id, key, sealEnvValue(secrets, { appUuid: ctx.app.uuid, key, value }));
    }
  });
  auditTenantStore(ctx, "env-written", "succeeded", { keys: Object.keys(values) });
}

function envValues(ctx: Ctx, password: string): Record<string, string> {
  const names = tenantStoreNames(ctx.app.uuid);
  if (ctx.kind === "postgres") {
    const pg = requirePostgres(ctx.deps).settings;
    const url = `postgres://${names.pg}:${password}@${pg.publicHost}:${pg.publicPort}/${names.pg}`;
    return { DATABASE_URL: url };
  }
  const url = new URL(requireRedis(ctx.deps).settings.publicUrl);
  url.username = names.redisUser;
  url.password = password;
  return { REDIS_URL: url.toString(), REDIS_KEY_PREFIX: `${names.redisPrefix}:` };
}

function requirePostgres(deps: TenantStoreDeps) {
  if (!deps.postgres || !deps.settings.postgres)
    throw new DomainError(409, "not_configured", "PostgreSQL provisioning is not configured on this bot");
  return { admin: deps.postgres, settings: deps.settings.postgres };
}

function requireRedis(deps: TenantStoreDeps) {
  if (!deps.redisAcl || !deps.settings.redis)
    throw new DomainError(409, "not_configured", "Redis provisioning is not configured on this bot");
  return { acl: deps.redisAcl, settings: deps.settings.redis };
}

function requireAppRedis(deps: TenantStoreDeps): AppRedisServers {
  if (!deps.appRedis) throw new DomainError(409, "not_configured", "private Redis servers are not configured here");
  return deps.appRedis;
}

/**
 * Which Redis an app's store is: "shared" when its REDIS_URL names an ACL user (`app-<uuid>`), "private" when it
 * names none (the private server's `default` user); with nothing stored yet, what this bot provisions.
 */
function redisMode(ctx: Ctx): "private" | "shared" {
  const url = storedUrl(ctx);
  if (url) return url.username === "" ? "private" : "shared";
  return ctx.deps.appRedis ? "private" : "shared";
}

export function assertConfigured(
  deps: Pick<TenantStoreDeps, "postgres" | "redisAcl" | "settings" | "appRedis">,
  kind: TenantStoreKind,
) {
  if (kind === "postgres") requirePostgres(deps as TenantStoreDeps);
  else if (!deps.appRedis) requireRedis(deps as TenantStoreDeps);
}

interface AppSize {
  tenantUuid: string;
  memoryMb: number;
  cpus: number;
}

function appSize(db: DbOrTx, appId: number): AppSize {
  const row = db
    .select({ tenantUuid: tenants.uuid, memoryMb: apps.memoryMb, cpus: apps.cpus })
    .from(apps)
    .innerJoin(tenants, eq(tenants.id, apps.tenantId))
    .where(eq(apps.id, appId))
    .get();
  if (!row) throw notFoundError("app");
  return { tenantUuid: row.tenantUuid, memoryMb: row.memoryMb, cpus: Number(row.cpus) };
}

/** The app's `REDIS_MAXMEMORY_POLICY` when it is a valid policy, else the broker-safe default (noeviction). */
function redisPolicy(deps: Pick<TenantStoreDeps, "db" | "secrets" | "log">, app: Ctx["app"]): EvictionPolicy {
  const row = readEnv(deps.db, app.id, [REDIS_POLICY_KEY])[0];
  if (!row) return DEFAULT_EVICTION_POLICY;
  const value = openEnvValue(deps.secrets, { appUuid: app.uuid, key: REDIS_POLICY_KEY, sealed: row.value }).trim();
  if (isEvictionPolicy(value)) return value;
  deps.log.warn({ appId: app.uuid, key: REDIS_POLICY_KEY }, "not a maxmemory-policy; using noeviction");
  return DEFAULT_EVICTION_POLICY;
}

/** Creates or repairs the app's private server with this password; returns the values its env vars get. */
async function ensurePrivateRedis(ctx: Ctx, password: string, knownAddress?: string): Promise<Record<string, string>> {
  const servers = requireAppRedis(ctx.deps);
  const size = appSize(ctx.deps.db, ctx.app.id);
  const endpoint = await step(ctx, "ensure-server", () =>
    servers.ensure({
      appUuid: ctx.app.uuid,
      tenantUuid: size.tenantUuid,
      password,
      appMemoryMb: size.memoryMb,
      appCpus: size.cpus,
      policy: redisPolicy(ctx.deps, ctx.app),
      knownAddress,
    }),
  );
  return privateRedisEnv(ctx.app.uuid, password, endpoint.host, endpoint.port);
}

function privateRedisEnv(appUuid: string, password: string, host: string, port: number): Record<string, string> {
  // No user name: the private server's `default` user, which every Redis client understands.
  const url = `redis://:${password}@${host}:${port}/0`;
  // The prefix still comes along: settings written for the shared server (Celery's global_keyprefix) keep working.
  return { REDIS_URL: url, REDIS_KEY_PREFIX: `${tenantStoreNames(appUuid).redisPrefix}:` };
}

function context(
  deps: TenantStoreDeps,
  appUuid: string,
  kind: TenantStoreKind,
  opts: ActionOptions,
  allowDestroyed = false,
): Ctx {
  return {
    deps,
    app: loadApp(deps.db, appUuid, allowDestroyed),
    kind,
    actor: opts.actor ?? "system",
    correlationId: opts.correlationId,
  };
}

/**
 * Creates (or finishes creating) the app's store. A password already stored is reused, so running this again —
 * after a crash between any two steps — converges on one role, one database and one working DATABASE_URL.
 */
export async function provisionTenantStore(
  deps: TenantStoreDeps,
  appUuid: string,
  kind: TenantStoreKind,
  opts: ActionOptions = {},
): Promise<void> {
  const ctx = context(deps, appUuid, kind, opts);
  const names = tenantStoreNames(appUuid);
  const password = storedUrl(ctx)?.password || (deps.generatePassword ?? generatePassword)();
  if (kind === "postgres") {
    const { admin, settings } = requirePostgres(deps);
    await step(ctx, "ensure-role", () => admin.ensureRole(names.pg, password, settings.limits));
    await step(ctx, "ensure-database", () => admin.ensureDatabase(names.pg, names.pg));
  } else if (redisMode(ctx) === "private") {
    writeEnv(ctx, await ensurePrivateRedis(ctx, password, storedUrl(ctx)?.hostname));
    deps.log.info({ appId: appUuid, kind, mode: "private" }, "tenant store provisioned");
    return;
  } else {
    const { acl } = requireRedis(deps);
    await step(ctx, "ensure-user", () => acl.ensureUser(names.redisUser, password, names.redisPrefix));
  }
  writeEnv(ctx, envValues(ctx, password));
  deps.log.info({ appId: appUuid, kind }, "tenant store provisioned");
}

/**
 * New password on the server first, then in the sealed env var: if the second step fails, a retry rotates again
 * and stores that. Returns the new URL for a one-time reveal; callers that do not reveal drop it.
 */
export async function rotateTenantStore(
  deps: TenantStoreDeps,
  appUuid: string,
  kind: TenantStoreKind,
  opts: ActionOptions = {},
): Promise<{ url: string }> {
  const ctx = context(deps, appUuid, kind, opts);
  const stored = storedUrl(ctx);
  if (!stored) throw conflictError(`no ${kind} store is provisioned for this app`);
  const names = tenantStoreNames(appUuid);
  const password = (deps.generatePassword ?? generatePassword)();
  if (kind === "redis" && redisMode(ctx) === "private") {
    // The server restarts with the new password (its data stays on the volume); the app's running containers
    // lose their connections and need the new URL: restart or deploy the app right after.
    const values = await ensurePrivateRedis(ctx, password, stored.hostname);
    writeEnv(ctx, values);
    deps.log.info({ appId: appUuid, kind, mode: "private" }, "tenant store credentials rotated");
    return { url: values.REDIS_URL as string };
  }
  if (kind === "postgres") {
    const { admin } = requirePostgres(deps);
    await step(ctx, "rotate-password", () => admin.rotatePassword(names.pg, password));
  } else {
    const { acl } = requireRedis(deps);
    await step(ctx, "rotate-password", () => acl.rotatePassword(names.redisUser, password));
  }
  const values = envValues(ctx, password);
  writeEnv(ctx, values);
  deps.log.info({ appId: appUuid, kind }, "tenant store credentials rotated");
  return { url: (values.DATABASE_URL ?? values.REDIS_URL) as string };
}

/** Drops the server objects, then the env vars; also for destroyed apps, so their data can be cleaned up. */
export async function dropTenantStore(
  deps: TenantStoreDeps,
  appUuid: string,
  kind: TenantStoreKind,
  opts: ActionOptions = {},
): Promise<void> {
  const ctx = context(deps, appUuid, kind, opts, true);
  const names = tenantStoreNames(appUuid);
  if (kind === "postgres") {
    const { admin } = requirePostgres(deps);
    await step(ctx, "drop-database", () => admin.dropDatabase(names.pg));
    await step(ctx, "drop-role", () => admin.dropRole(names.pg));
  } else if (redisMode(ctx) === "private") {
    const servers = requireAppRedis(deps);
    await step(ctx, "remove-server", () => servers.remove(appUuid));
  } else {
    const { acl } = requireRedis(deps);
    await step(ctx, "delete-user", () => acl.deleteUser(names.redisUser));
  }
  deps.db
    .delete(appEnvVars)
    .where(and(eq(appEnvVars.appId, ctx.app.id), inArray(appEnvVars.key, [...ENV_KEYS[kind]])))
    .run();
  auditTenantStore(ctx, "env-removed", "succeeded", { keys: ENV_KEYS[kind] });
  deps.log.info({ appId: appUuid, kind }, "tenant store dropped");
}

/** Audits a request made through a command (who asked for what), before the job does the work. */
export function auditTenantStoreRequest(
  db: DbOrTx,
  appUuid: string,
  kind: TenantStoreKind,
  request: "create" | "rotate" | "drop" | "reveal",
  opts: ActionOptions & { outcome?: "allowed" | "denied" },
): void {
  const app = loadApp(db, appUuid, true);
  db.insert(auditEvents)
    .values({
      uuid: randomUUID(),
      tenantId: app.tenantId,
      appId: app.id,
      actorLabel: opts.actor ?? "cli",
      action: `tenant-store.${kind}.${request}-requested`,
      outcome: opts.outcome ?? "allowed",
      details: { kind },
      correlationId: opts.correlationId ?? null,
    })
    .run();
}

/** Connection info from the sealed env vars (SQLite only: no server round trip), without the password. */
export function showTenantStores(deps: Pick<TenantStoreDeps, "db" | "secrets">, appUuid: string): TenantStoreInfo[] {
  const app = loadApp(deps.db, appUuid, false);
  const names = tenantStoreNames(appUuid);
  const rows = readEnv(deps.db, app.id, ["DATABASE_URL", "REDIS_URL"]);
  return TENANT_STORE_KINDS.map((kind) => {
    const key = ENV_KEYS[kind][0] as string;
    const row = rows.find((r) => r.key === key);
    let url: string | null = null;
    if (row) {
      const parsed = new URL(openEnvValue(deps.secrets, { appUuid, key, sealed: row.value }));
      parsed.password = "";
      url = parsed.toString();
    }
    const base = { kind, provisioned: row !== undefined, url, updatedAt: row?.updatedAt ?? null };
    return kind === "postgres"
      ? { ...base, user: names.pg, database: names.pg }
      : {
          ...base,
          user: url !== null && new URL(url).username === "" ? "default" : names.redisUser,
          keyPrefix: `${names.redisPrefix}:`,
        };
  });
}

/** A live app's private Redis as its sealed REDIS_URL describes it (the password never leaves this process). */
export interface PrivateRedisWanted {
  appUuid: string;
  password: string;
  host: string;
}

/** Live apps whose REDIS_URL names a private server (no ACL user): the servers reconcile keeps running. */
export function privateRedisApps(deps: Pick<TenantStoreDeps, "db" | "secrets">): PrivateRedisWanted[] {
  const rows = deps.db
    .select({ uuid: apps.uuid, value: appEnvVars.valueEncrypted })
    .from(appEnvVars)
    .innerJoin(apps, eq(apps.id, appEnvVars.appId))
    .where(and(eq(appEnvVars.key, "REDIS_URL"), isNull(apps.destroyedAt)))
    .orderBy(asc(apps.id))
    .all();
  return rows.flatMap((r) => {
    const url = new URL(openEnvValue(deps.secrets, { appUuid: r.uuid, key: "REDIS_URL", sealed: r.value }));
    return url.username === ""
      ? [{ appUuid: r.uuid, password: decodeURIComponent(url.password), host: url.hostname }]
      : [];
  });
}

/**
 * Brings an app's private Redis back (reconcile: a dead or missing container, a lost network or volume) with the
 * password it already has; if the server had to move to another address, REDIS_URL is rewritten (the app gets it
 * on its next deploy or restart). Returns what ensure did.
 */
export async function repairPrivateRedis(
  deps: TenantStoreDeps,
  wanted: PrivateRedisWanted,
): Promise<"none" | "started" | "created"> {
  const ctx = context(deps, wanted.appUuid, "redis", { actor: "system" });
  const servers = requireAppRedis(deps);
  const size = appSize(deps.db, ctx.app.id);
  const endpoint = await servers.ensure({
    appUuid: wanted.appUuid,
    tenantUuid: size.tenantUuid,
    password: wanted.password,
    appMemoryMb: size.memoryMb,
    appCpus: size.cpus,
    policy: redisPolicy(deps, ctx.app),
    knownAddress: wanted.host,
  });
  if (endpoint.action !== "none") auditTenantStore(ctx, `server-${endpoint.action}`, "succeeded");
  if (endpoint.host !== wanted.host) {
    writeEnv(ctx, privateRedisEnv(wanted.appUuid, wanted.password, endpoint.host, endpoint.port));
    deps.log.warn({ appId: wanted.appUuid }, "app redis moved to a new address; REDIS_URL rewritten");
  }
  return endpoint.action;
}

/** Whether an app of this database is live (not destroyed): reconcile removes private servers of the others. */
export function isLiveApp(db: DbOrTx, appUuid: string): boolean {
  const row = db.select({ destroyedAt: apps.destroyedAt }).from(apps).where(eq(apps.uuid, appUuid)).get();
  return row !== undefined && row.destroyedAt === null;
}
