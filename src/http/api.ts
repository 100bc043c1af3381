import type { Context } from "hono";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import { listAppsCommand } from "../../commands/apps.ts";
import { auditCommand } from "../../commands/audit.ts";
import { parseAuditWindow } from "../../commands/audit-window.ts";
import { type CancelResult, cancelCommand } from "../../commands/cancel.ts";
import type { DeployResult } from "../../commands/deploy.ts";
import {
  operatorEnvList,
  operatorEnvSet,
  operatorEnvUnset,
  operatorRestart,
  restartTarget,
} from "../../commands/env-operator.ts";
import { logsCommand } from "../../commands/logs.ts";
import { operatorCreateApp, operatorDeploy, operatorRollback } from "../../commands/operator.ts";
import { releasesCommand } from "../../commands/releases.ts";
import { operatorScale, scaleStatus, showFormation } from "../../commands/scale.ts";
import { statusCommand } from "../../commands/status.ts";
import type { Db } from "../db/client.ts";
import { type ApiPrincipal, verifyApiToken } from "../domain/api-tokens.ts";
import { recordAudit } from "../domain/audit.ts";
import type { SecretBox } from "../domain/crypto.ts";
import { getDeployment } from "../domain/deployments.ts";
import { DomainError } from "../domain/errors.ts";
import type { TenantQuota } from "../domain/tenant-quota.ts";
import { type Role, roleAtLeast } from "../domain/users.ts";
import { slugSchema, uuidSchema } from "../domain/validation.ts";
import type { ContainerEngine } from "../infra/podman.ts";
import type { Logger } from "../log.ts";
import { QueueDelayedError } from "../pipeline/bounded-queue.ts";
import type { JobQueue } from "../pipeline/queues.ts";

export { API_BASE } from "./api-auth.ts";

import { type ApiEnv, AuthFailureLimiter, apiErrorBody, tokenAuth } from "./api-auth.ts";
import { badRequest, forbidden, HttpError } from "./errors.ts";

export interface ApiDeps {
  db: Db;
  /** Bounded (src/pipeline/bounded-queue.ts): a request never waits long on Redis. */
  queue: JobQueue;
  log: Logger;
  secrets: SecretBox;
  /** Reads container logs for `GET …/logs`. */
  engine: ContainerEngine;
  /** TUSSILAGO_GIT_ALLOW_FILE_URLS, as the pipeline reads it. */
  allowFileUrls: boolean;
  limiter?: AuthFailureLimiter | undefined;
  /** Count failed authentications per X-Forwarded-For client (set when a trusted proxy terminates TLS in front). */
  trustForwarded?: boolean | undefined;
  /** The tenant-wide cap `scale` checks (TUSSILAGO_TENANT_MAX_*); unset → none. */
  tenantQuota?: TenantQuota | undefined;
  /** Token → operator; default: the api_tokens table. */
  verify?: ((token: string) => ApiPrincipal | undefined) | undefined;
}

const MAX_BODY_BYTES = 1024 * 1024;

const createAppBody = z.strictObject({
  slug: z.string(),
  gitUrl: z.string(),
  domain: z.string(),
  branch: z.string().optional(),
  tenant: z.string().optional(),
  githubRepo: z.string().optional(),
  memoryMb: z.number().int().optional(),
  cpus: z.string().optional(),
  healthPath: z.string().optional(),
  allowEgress: z.boolean().default(false),
  gitSubmodules: z.boolean().default(false),
  gitLfs: z.boolean().default(false),
});
// The ref is judged by deployCommand (a branch, a tag or a full commit sha).
const deployBody = z.strictObject({ ref: z.string().max(300).optional() });
const rollbackBody = z.strictObject({
  release: z.union([z.string().regex(/^v?\d{1,9}$/), uuidSchema]).optional(),
  withRelease: z.boolean().default(false),
});
const envSetBody = z.strictObject({
  vars: z
    .array(z.strictObject({ key: z.string().max(200), value: z.string(), source: z.string().max(200).optional() }))
    .min(1)
    .max(1_000),
  restart: z.boolean().default(false),
});
const envUnsetBody = z.strictObject({
  keys: z.array(z.string().max(200)).min(1).max(1_000),
  restart: z.boolean().default(false),
});
// Each `TYPE=COUNT` is judged by parseScaleArgs (src/domain/formation.ts), as on the command line.
const scaleBody = z.strictObject({ counts: z.array(z.string().max(64)).min(1).max(32) });
const logsQuery = z.object({
  lines: z.coerce.number().int().min(1).max(5_000).default(100),
  process: z.string().max(30).optional(),
  replica: z.coerce.number().int().min(1).max(16).optional(),
});
const auditQuery = z.object({
  app: slugSchema.optional(),
  since: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(1_000).default(50),
});

type Ctx = Context<ApiEnv>;

async function body<T>(c: Ctx, schema: z.ZodType<T>): Promise<T> {
  let raw: unknown;
  try {
    const text = await c.req.text();
    raw = text === "" ? {} : JSON.parse(text);
  } catch {
    throw badRequest("the body must be JSON");
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw badRequest(`${issue?.path.join(".") || "body"}: ${issue?.message ?? "is invalid"}`);
  }
  return parsed.data;
}

function query<T>(c: Ctx, schema: z.ZodType<T>): T {
  const parsed = schema.safeParse(c.req.query());
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw badRequest(`${issue?.path.join(".") || "query"}: ${issue?.message ?? "is invalid"}`);
  }
  return parsed.data;
}

function slug(c: Ctx): string {
  const parsed = slugSchema.safeParse(c.req.param("app"));
  if (!parsed.success) throw badRequest("app: not a valid app name");
  return parsed.data;
}

/** The deployment fields the remote CLI follows and the dashboard shows, plus what it superseded. */
const deployAnswer = (result: DeployResult) => ({ deployment: result.deployment, superseded: result.superseded });
const cancelAnswer = (result: CancelResult) => ({ app: result.app, outcomes: result.outcomes });

/**
 * The operator HTTP API (docs/api.md): the CLI's commands for an operator on another host, and the JSON the dashboard
 * reads. Every route authenticates a token (src/http/api-auth.ts), checks the token's role, and calls the same
 * command functions the local CLI calls (commands/operator.ts, env-operator.ts, …): nothing runs inline that the
 * CLI would not run (deploys are recorded and enqueued, the pipeline does the work).
 */
export function apiRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const api = new Hono<ApiEnv>();
  const verify = deps.verify ?? ((token: string) => verifyApiToken(deps.db, token));
  api.use(
    tokenAuth({
      verify,
      limiter: deps.limiter ?? new AuthFailureLimiter(),
      trustForwarded: deps.trustForwarded === true,
    }),
  );
  api.use(
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) => c.json(apiErrorBody(c, "payload too large", "payload_too_large"), 413),
    }),
  );

  /** 403 unless the token's role is at least `needed`; the refusal is audited like a Slack one. */
  const need = (c: Ctx, needed: Role, action: string) => {
    const principal = c.get("principal");
    if (roleAtLeast(principal.role, needed)) return principal;
    recordAudit(deps.db, {
      action,
      outcome: "denied",
      actorLabel: principal.label,
      details: { needed, had: principal.role, via: "api" },
      correlationId: c.get("correlationId"),
    });
    throw forbidden(`token ${principal.name} has the ${principal.role} role; ${action} needs ${needed}`);
  };
  const who = (c: Ctx, principal: ApiPrincipal) => ({
    actorLabel: principal.label,
    correlationId: c.get("correlationId"),
  });
  const commandDeps = (c: Ctx) => ({ db: deps.db, queue: deps.queue, log: c.get("log") });

  api.get("/me", (c) => {
    const { name, role, tokenUuid } = c.get("principal");
    return c.json({ name, role, token: tokenUuid });
  });

  api.get("/apps", (c) => {
    need(c, "viewer", "apps.list");
    return c.json({ apps: listAppsCommand({ db: deps.db }) });
  });

  api.post("/apps", async (c) => {
    const principal = need(c, "admin", "apps.create");
    const input = await body(c, createAppBody);
    const app = operatorCreateApp(
      {
        db: deps.db,
        log: c.get("log"),
        secrets: input.githubRepo === undefined ? undefined : deps.secrets,
        allowFileUrls: deps.allowFileUrls,
      },
      input,
      who(c, principal),
    );
    return c.json({ app }, 201);
  });

  api.get("/apps/:app", (c) => {
    need(c, "viewer", "status");
    return c.json(statusCommand({ db: deps.db }, { app: slug(c) }));
  });

  api.get("/apps/:app/releases", (c) => {
    need(c, "viewer", "releases");
    return c.json(releasesCommand({ db: deps.db }, { app: slug(c) }));
  });

  api.get("/apps/:app/logs", async (c) => {
    need(c, "viewer", "logs");
    const q = query(c, logsQuery);
    const logs = await logsCommand(
      { db: deps.db, engine: deps.engine },
      { app: slug(c), lines: q.lines, process: q.process, replica: q.replica },
    );
    return c.json({
      app: logs.app.slug,
      release: `v${logs.release.version}`,
      releaseUuid: logs.release.uuid,
      process: logs.process,
      replica: logs.replica,
      log: logs.text,
    });
  });

  api.post("/apps/:app/deploy", async (c) => {
    const principal = need(c, "deployer", "deploy");
    const { ref } = await body(c, deployBody);
    const result = await operatorDeploy(commandDeps(c), { app: slug(c), ref, ...who(c, principal) });
    return c.json(deployAnswer(result), 202);
  });

  api.post("/apps/:app/rollback", async (c) => {
    const principal = need(c, "deployer", "rollback");
    const input = await body(c, rollbackBody);
    const result = await operatorRollback(commandDeps(c), { app: slug(c), ...input, ...who(c, principal) });
    return c.json(deployAnswer(result), 202);
  });

  const cancel = async (c: Ctx, target: string) => {
    const principal = need(c, "deployer", "cancel");
    const result = await cancelCommand(commandDeps(c), { target, by: principal.label, ...who(c, principal) });
    return c.json(cancelAnswer(result));
  };
  api.post("/apps/:app/cancel", (c) => cancel(c, slug(c)));
  api.post("/deployments/:uuid/cancel", (c) => {
    const uuid = uuidSchema.safeParse(c.req.param("uuid"));
    if (!uuid.success) throw badRequest("uuid: not a deployment UUID");
    return cancel(c, uuid.data);
  });

  api.get("/deployments/:uuid", (c) => {
    need(c, "viewer", "status");
    const uuid = uuidSchema.safeParse(c.req.param("uuid"));
    if (!uuid.success) throw badRequest("uuid: not a deployment UUID");
    return c.json({ deployment: getDeployment(deps.db, uuid.data) });
  });

  api.get("/apps/:app/scale", (c) => {
    need(c, "viewer", "status");
    return c.json(showFormation({ db: deps.db }, { app: slug(c) }));
  });

  api.post("/apps/:app/scale", async (c) => {
    const principal = need(c, "deployer", "scale");
    const { counts } = await body(c, scaleBody);
    const scaleDeps = { ...commandDeps(c), tenantQuota: deps.tenantQuota, secrets: deps.secrets };
    const result = await operatorScale(scaleDeps, { app: slug(c), args: counts, ...who(c, principal) });
    return c.json(result, 202);
  });

  api.get("/apps/:app/scale/:request", (c) => {
    need(c, "viewer", "status");
    const request = uuidSchema.safeParse(c.req.param("request"));
    if (!request.success) throw badRequest("request: not a scale request UUID");
    return c.json(scaleStatus({ db: deps.db }, { app: slug(c), request: request.data }));
  });

  api.get("/apps/:app/env", (c) => {
    need(c, "viewer", "env.list");
    const { app, vars } = operatorEnvList({ db: deps.db }, { app: slug(c) });
    return c.json({ app: app.slug, vars });
  });

  api.post("/apps/:app/env", async (c) => {
    const principal = need(c, "deployer", "env.set");
    const input = await body(c, envSetBody);
    const app = slug(c);
    // A change whose restart cannot happen (no release yet) is refused before anything is stored.
    if (input.restart) restartTarget({ db: deps.db }, app);
    const vars = input.vars.map((v, i) => ({ key: v.key, value: v.value, source: v.source ?? `vars[${i}]` }));
    const result = operatorEnvSet(
      { db: deps.db, secrets: deps.secrets, log: c.get("log") },
      { app, vars, actorLabel: principal.label },
    );
    const restart = input.restart
      ? deployAnswer(await operatorRestart(commandDeps(c), { app, actorLabel: principal.label }))
      : null;
    return c.json({ app: result.app.slug, keys: result.keys, gatedInSlack: result.gatedInSlack, restart });
  });

  api.post("/apps/:app/env/unset", async (c) => {
    const principal = need(c, "deployer", "env.unset");
    const input = await body(c, envUnsetBody);
    const app = slug(c);
    if (input.restart) restartTarget({ db: deps.db }, app);
    const result = operatorEnvUnset(
      { db: deps.db, log: c.get("log") },
      { app, keys: input.keys, actorLabel: principal.label },
    );
    const restart = input.restart
      ? deployAnswer(await operatorRestart(commandDeps(c), { app, actorLabel: principal.label }))
      : null;
    return c.json({
      app: result.app.slug,
      keys: result.keys,
      missing: result.missing,
      gatedInSlack: result.gatedInSlack,
      restart,
    });
  });

  api.get("/audit", (c) => {
    need(c, "admin", "audit");
    const input = query(c, auditQuery);
    const sinceMs = input.since === undefined ? undefined : parseAuditWindow(input.since);
    if (input.since !== undefined && sinceMs === undefined) throw badRequest("since: use e.g. 30m, 1h or 7d");
    const since = sinceMs === undefined ? undefined : new Date(Date.now() - sinceMs);
    return c.json({ events: auditCommand({ db: deps.db }, { app: input.app, since, limit: input.limit }) });
  });

  api.notFound((c) => c.json(apiErrorBody(c, "not found", "not_found"), 404));
  api.onError(mapApiError);
  return api;
}

/** Domain refusals keep their status and message; a delayed queue says the request is recorded; the rest as usual. */
export function mapApiError(err: Error, c: Context<ApiEnv>): Response {
  if (err instanceof DomainError || err instanceof HttpError) {
    c.get("log").info({ status: err.status, code: err.code }, err.message);
    return c.json(apiErrorBody(c, err.message, err.code), err.status);
  }
  if (err instanceof QueueDelayedError) {
    c.get("log").warn({ err }, "operator API: queue delayed");
    const message = "the job queue is delayed: your request is recorded and will run when the queue is back";
    return c.json(apiErrorBody(c, message, err.code), 503);
  }
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    c.get("log").info({ status }, "request rejected");
    return c.json(apiErrorBody(c, "request rejected", `http_${status}`), status);
  }
  // No stack traces, paths or SQL leave the bot: the caller gets the correlation id, the log the details.
  c.get("log").error({ err }, "operator API: unhandled error");
  return c.json(apiErrorBody(c, "internal error", "internal"), 500);
}
