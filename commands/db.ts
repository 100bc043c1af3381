import { z } from "zod";
import type { Db } from "../src/db/client.ts";
import { getAppBySlug } from "../src/domain/apps.ts";
import type { SecretBox } from "../src/domain/crypto.ts";
import { invalidError } from "../src/domain/errors.ts";
import {
  assertConfigured,
  auditTenantStoreRequest,
  rotateTenantStore,
  showTenantStores,
  TENANT_STORE_KINDS,
  type TenantStoreDeps,
  type TenantStoreInfo,
  type TenantStoreKind,
} from "../src/domain/tenant-databases.ts";
import type { Logger } from "../src/log.ts";
import type { ProvisionQueue } from "../src/pipeline/provision-worker.ts";
import type { ProvisionAction } from "../src/pipeline/queues.ts";

/**
 * `db create|show|rotate|drop|reveal` for the CLI and `/tussilago db …`. create/rotate/drop validate, audit and
 * enqueue a provision job (never DDL inline: Slack wants an answer within 3 s); show reads SQLite only.
 */
export interface DbCommandDeps {
  db: Db;
  queue: ProvisionQueue;
  log: Logger;
  /**
   * Which stores this bot can provision (from config), to refuse early where the configuration is at hand (Slack,
   * inside the bot). The CLI cannot see the bot's configuration: it leaves this out and the worker decides.
   */
  stores?: Pick<TenantStoreDeps, "postgres" | "redisAcl" | "appRedis" | "settings"> | undefined;
}

export interface DbCommandInput {
  app: string;
  kind?: string | undefined;
  /** Who asked: "cli" or a Slack user label; goes to the audit log. */
  actor?: string;
  correlationId?: string;
}

const kindSchema = z.enum(TENANT_STORE_KINDS).default("postgres");

function parseKind(raw: string | undefined): TenantStoreKind {
  const parsed = kindSchema.safeParse(raw);
  if (!parsed.success) throw invalidError(`kind must be one of ${TENANT_STORE_KINDS.join(", ")}`);
  return parsed.data;
}

async function request(deps: DbCommandDeps, input: DbCommandInput, action: ProvisionAction) {
  const app = getAppBySlug(deps.db, input.app);
  const kind = parseKind(input.kind);
  if (deps.stores) assertConfigured(deps.stores, kind);
  auditTenantStoreRequest(deps.db, app.uuid, kind, action, {
    actor: input.actor ?? "cli",
    ...(input.correlationId ? { correlationId: input.correlationId } : {}),
  });
  const jobId = await deps.queue.enqueue({ appUuid: app.uuid, action, kind });
  deps.log.info({ appId: app.uuid, tenantId: app.tenantUuid, kind, action }, "provision job enqueued");
  return { app: app.slug, kind, action, jobId };
}

export function createDbCommand(deps: DbCommandDeps, input: DbCommandInput) {
  return request(deps, input, "create");
}

/** The new credentials reach the app on its next deploy; until then it keeps its open connections. */
export function rotateDbCommand(deps: DbCommandDeps, input: DbCommandInput) {
  return request(deps, input, "rotate");
}

/** Destroys the tenant's data: the caller must type the app's slug again (`--confirm <app>`). */
export async function dropDbCommand(deps: DbCommandDeps, input: DbCommandInput & { confirm?: string | undefined }) {
  const app = getAppBySlug(deps.db, input.app);
  if (input.confirm !== app.slug) {
    auditTenantStoreRequest(deps.db, app.uuid, parseKind(input.kind), "drop", {
      actor: input.actor ?? "cli",
      outcome: "denied",
    });
    throw invalidError(`dropping deletes all data: repeat the app name to confirm (--confirm ${app.slug})`);
  }
  return request(deps, input, "drop");
}

export function showDbCommand(deps: { db: Db; secrets: SecretBox }, input: { app: string }): TenantStoreInfo[] {
  const app = getAppBySlug(deps.db, input.app);
  return showTenantStores(deps, app.uuid);
}

/**
 * One-time reveal as "rotate and reveal": the password is never stored anywhere we could show it twice, so we
 * make a new one and hand it to this caller only. Runs the rotation inline, so it is for the CLI (a local
 * operator), not for an HTTP/Slack handler, which should enqueue and deliver the URL by ephemeral message.
 */
export async function revealDbCommand(
  deps: TenantStoreDeps,
  input: DbCommandInput,
): Promise<{ app: string; kind: TenantStoreKind; url: string }> {
  const app = getAppBySlug(deps.db, input.app);
  const kind = parseKind(input.kind);
  const actor = input.actor ?? "cli";
  auditTenantStoreRequest(deps.db, app.uuid, kind, "reveal", { actor });
  const { url } = await rotateTenantStore(deps, app.uuid, kind, { actor });
  return { app: app.slug, kind, url };
}
