import { mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Redis } from "ioredis";
import { deployCommand } from "../commands/deploy.ts";
import { type LogsQueue, registerLogsWorker } from "../commands/logs-job.ts";
import { type PushDeployDeps, processPushDelivery } from "../commands/push-deploy.ts";
import type { Config } from "./config.ts";
import { databasePath, openDb, pingDb } from "./db/client.ts";
import { getAppByUuid } from "./domain/apps.ts";
import { SecretBox } from "./domain/crypto.ts";
import { openIncidents } from "./domain/incidents.ts";
import {
  DEFAULT_ROLE_LIMITS,
  type TenantStoreDeps,
  type TenantStoreSettings,
  tenantRedisPublicUrl,
} from "./domain/tenant-databases.ts";
import { createApp } from "./http/app.ts";
import { githubRoute } from "./http/github-route.ts";
import { createSlackApp } from "./http/slack-app.ts";
import { RedisEventDedupe } from "./http/slack-dedupe.ts";
import { appServiceEndpoints, assertNotBotRedis, hostAddresses, storeTargets } from "./infra/app-services.ts";
import { CaddyAdmin } from "./infra/caddy.ts";
import { startEmbeddedCaddy } from "./infra/embedded-caddy.ts";
import { startEmbeddedRedis } from "./infra/embedded-redis.ts";
import { GitCli } from "./infra/git.ts";
import { GithubRestClient } from "./infra/github-api.ts";
import { githubGitCredentials } from "./infra/github-credentials.ts";
import { UndiciProbe } from "./infra/http-probe.ts";
import { PodmanEngine } from "./infra/podman.ts";
import { PgPostgresAdmin } from "./infra/postgres-admin.ts";
import { connectRedis, pingRedis, type RedisTarget } from "./infra/redis.ts";
import { IoRedisAcl } from "./infra/redis-acl.ts";
import { ExecaRunner } from "./infra/runner.ts";
import { UndiciSlackApi } from "./infra/slack-web-api.ts";
import { readSysctl } from "./infra/sysctl.ts";
import { Lifecycle } from "./lifecycle.ts";
import type { Logger } from "./log.ts";
import type { DataPlaneHooks } from "./pipeline/data-plane.ts";
import { registerDeployWorker } from "./pipeline/deploy-worker.ts";
import { abortableSleep, type PipelineDeps } from "./pipeline/deps.ts";
import { PipelineEvents } from "./pipeline/events.ts";
import { registerProvisionWorker } from "./pipeline/provision-worker.ts";
import { registerPushWorker } from "./pipeline/push-worker.ts";
import { BullJobQueue, type JobPayloads, QUEUE_NAMES } from "./pipeline/queues.ts";
import { reconcile } from "./pipeline/reconcile.ts";
import { checkServing } from "./pipeline/serving-check.ts";
import { defaultPipelineSettings } from "./pipeline/settings.ts";
import { DataPlaneWatcher } from "./pipeline/watcher.ts";
import { WorkerPool } from "./pipeline/worker-pool.ts";
import { attachGithubStatusReporter } from "./reporters/github-status.ts";
import { attachLogReporter } from "./reporters/log-reporter.ts";
import { dataPlaneNotifier, lockRefusalNotifier } from "./reporters/slack-notices.ts";
import { attachSlackThreadReporter } from "./reporters/slack-thread.ts";

export interface RunningBot {
  url: string;
  caddyAdmin: string;
  pipeline: PipelineDeps;
  lifecycle: Lifecycle;
  log: Logger;
}

/**
 * Composition root: config → logger → db → redis/caddy (embedded or remote) → queues/workers → HTTP (+ Slack).
 * Every started piece registers its own stop step right away, so a failure half-way still cleans up.
 */
export async function startBot(config: Config, log: Logger): Promise<RunningBot> {
  const lifecycle = new Lifecycle(log);
  try {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    const runner = new ExecaRunner(log.child({ component: "runner" }));

    const db = openDb(databasePath(config.dataDir));
    lifecycle.onStop("database", () => {
      db.$client.close();
    });
    log.info({ dataDir: config.dataDir }, "platform database ready");

    let redisTarget: RedisTarget;
    if (config.redisUrl) {
      redisTarget = { url: config.redisUrl };
    } else {
      const embedded = await startEmbeddedRedis({
        runner,
        dataDir: config.dataDir,
        log: log.child({ component: "redis" }),
      });
      lifecycle.onStop("embedded redis", () => embedded.stop());
      redisTarget = { socketPath: embedded.socketPath };
      log.info("embedded redis-server started");
    }
    const redis = connectRedis(redisTarget);
    lifecycle.onStop("redis connection", async () => {
      await redis.quit().catch(() => redis.disconnect());
    });

    let caddyAdmin: string;
    if (config.caddyAdmin) {
      caddyAdmin = config.caddyAdmin;
    } else {
      const caddy = await startEmbeddedCaddy({
        runner,
        dataDir: config.dataDir,
        log: log.child({ component: "caddy" }),
      });
      lifecycle.onStop("embedded caddy", () => caddy.stop());
      caddyAdmin = caddy.adminSocket;
      log.info("embedded caddy started");
    }

    // Each route switch reloads Caddy; without this setting connections queued on the old listener are reset
    // (measured in test/e2e/caddy.test.ts). scripts/bootstrap.sh sets it; warn where it is off.
    if ((await readSysctl("net.ipv4.tcp_migrate_req")) === "0") {
      log.warn(
        "net.ipv4.tcp_migrate_req is 0: Caddy route switches can reset connections; run sysctl -w net.ipv4.tcp_migrate_req=1",
      );
    }

    const prefix = config.pipeline.queuePrefix;
    const queue = new BullJobQueue(redis, prefix);
    lifecycle.onStop("queues", () => queue.close());

    const proxy = new CaddyAdmin({ endpoint: caddyAdmin, log: log.child({ component: "caddy" }) });
    lifecycle.onStop("caddy client", () => proxy.close());
    const probe = new UndiciProbe();
    lifecycle.onStop("health probe", () => probe.close());
    const secrets = new SecretBox(config.secretKey);
    const events = new PipelineEvents((err) => log.error({ err }, "reporter failed"));
    const slackApi = config.slack
      ? new UndiciSlackApi({
          token: config.slack.botToken,
          apiUrl: config.slack.apiUrl,
          log: log.child({ component: "slack-api" }),
        })
      : undefined;
    if (slackApi) {
      const threads = attachSlackThreadReporter({
        events,
        db,
        slack: slackApi,
        log: log.child({ component: "slack-thread" }),
        servingCheck: (appUuid) =>
          checkServing({ probe, settings: { proxyListen: config.pipeline.proxyListen } }, getAppByUuid(db, appUuid)),
      });
      lifecycle.onStop("slack threads", async () => {
        await threads.idle();
        threads.stop();
      });
    }
    attachLogReporter(events, log.child({ component: "pipeline" }));
    const github = config.github?.auth
      ? new GithubRestClient({
          apiUrl: config.github.apiUrl,
          auth: config.github.auth,
          log: log.child({ component: "github" }),
        })
      : undefined;
    if (github) {
      const reporter = attachGithubStatusReporter(events, {
        db,
        github,
        log: log.child({ component: "github-status" }),
      });
      // Stops after the workers (registered before them): lets the last statuses reach GitHub, bounded.
      lifecycle.onStop("github reporter", async () => {
        reporter.detach();
        await Promise.race([reporter.idle(), new Promise((r) => setTimeout(r, 5_000))]);
      });
    }
    const settings = {
      ...defaultPipelineSettings(config.dataDir),
      baseImage: config.pipeline.baseImage,
      buildCaBundle: config.pipeline.buildCaBundle,
      proxyListen: config.pipeline.proxyListen,
      drainGraceMs: config.pipeline.drainGraceMs,
      keepReleases: config.pipeline.keepReleases,
    };
    // Running apps may open connections to their stores, and to nothing else (never to the bot's own Redis).
    const appServices = await appServiceEndpoints(
      storeTargets(tenantStoreSettings(config.tenantStores)),
      log.child({ component: "app-services" }),
    );
    assertNotBotRedis(appServices, config.redisUrl, hostAddresses());
    const pipeline: PipelineDeps = {
      db,
      engine: new PodmanEngine(runner, log, {
        stateDir: config.dataDir,
        settings: { runscNetwork: config.pipeline.runscNetwork, appServices },
      }),
      proxy,
      git: new GitCli(runner, log.child({ component: "git" }), { allowFileUrls: config.pipeline.gitAllowFileUrls }),
      probe,
      secrets,
      events,
      settings,
      log: log.child({ component: "pipeline" }),
      sleep: abortableSleep,
      now: Date.now,
      gitCredentials: (app) => githubGitCredentials(github, app),
    };

    const workers = new WorkerPool(redis, log.child({ component: "workers" }), prefix);
    lifecycle.onStop("workers", () => workers.close(config.shutdownGraceMs));
    registerDeployWorker(workers, pipeline);
    // Per-link webhook secrets need no global setting: pushes are always accepted from linked repositories.
    const pushDeploy: PushDeployDeps = {
      db,
      queue,
      log: log.child({ component: "push" }),
      github,
      onRefused: slackApi
        ? lockRefusalNotifier({ db, slack: slackApi, log: log.child({ component: "slack-notices" }) })
        : undefined,
    };
    registerPushWorker(workers, (deliveryUuid) => processPushDelivery(pushDeploy, deliveryUuid));
    const tenantStores = startTenantStores(config, { db, secrets: pipeline.secrets, log, lifecycle });
    registerProvisionWorker(workers, tenantStores);
    const provisionQueue = queue.only(QUEUE_NAMES.provision);
    lifecycle.onStop("provision queue", () => provisionQueue.close());
    // `/tussilago logs`: the only producer is the slash command, so the queue and worker exist with Slack only.
    let logsQueue: LogsQueue | undefined;
    if (slackApi) {
      registerLogsWorker(workers, {
        db,
        engine: pipeline.engine,
        slack: slackApi,
        log: log.child({ component: "logs" }),
      });
      const logs = queue.only(QUEUE_NAMES.logs);
      lifecycle.onStop("logs queue", () => logs.close());
      logsQueue = logs;
    }
    // Start-up reconcile in the background: the HTTP edge must come up even while containers are being restored.
    // Reconcile runs as jobs of one queue with concurrency 1, so passes never overlap: once at start-up (in the
    // background: the HTTP edge comes up while containers are restored) and then periodically, which restarts an
    // app whose sandbox died (a tenant's fork or memory bomb takes its own gVisor sandbox down).
    // Exits of app containers restart them within seconds (reconcile is the slower safety net); apps that cannot be
    // brought back are incidents, reported in their channel and counted by /readyz.
    const dataPlaneHooks: DataPlaneHooks = {
      requestRebuild: async (target, commitSha) => {
        await deployCommand(
          { db, queue, log: log.child({ component: "rebuild" }) },
          { app: target.slug, ref: commitSha, commitSha, trigger: "rebuild" },
        );
      },
      ...(slackApi ? dataPlaneNotifier({ db, slack: slackApi, log: log.child({ component: "slack-notices" }) }) : {}),
    };
    const watcher = new DataPlaneWatcher(pipeline, {
      hooks: dataPlaneHooks,
      onStreamGap: () => {
        queue
          .enqueue(QUEUE_NAMES.reconcile, { reason: "event-stream-gap" }, `reconcile-gap-${Date.now()}`)
          .catch((err: unknown) => log.warn({ err }, "could not enqueue a reconcile after the event stream gap"));
      },
    });
    const unfollow = watcher.followDeployments(events);
    watcher.start();
    lifecycle.onStop("exit watcher", async () => {
      unfollow();
      await watcher.stop();
    });
    workers.add<JobPayloads["reconcile"], unknown>(QUEUE_NAMES.reconcile, async (job) => {
      const report = await reconcile(pipeline, {
        hooks: dataPlaneHooks,
        exclusive: (uuid, fix) => watcher.exclusive(uuid, fix),
      });
      log.info({ report, reason: job.data.reason }, "reconcile finished");
      return report;
    });
    if (config.pipeline.reconcileOnStart) {
      await queue.enqueue(QUEUE_NAMES.reconcile, { reason: "start-up" }, `reconcile-start-${Date.now()}`);
    }
    const reconcileQueue = queue.queue(QUEUE_NAMES.reconcile);
    if (config.pipeline.reconcileIntervalMs > 0) {
      await reconcileQueue.upsertJobScheduler(
        "periodic-reconcile",
        { every: config.pipeline.reconcileIntervalMs },
        {
          name: QUEUE_NAMES.reconcile,
          data: { reason: "periodic" },
          opts: { removeOnComplete: 100, removeOnFail: 100 },
        },
      );
    } else {
      await reconcileQueue.removeJobScheduler("periodic-reconcile");
    }

    const slack = config.slack
      ? await createSlackApp({
          config: config.slack,
          logger: log,
          dedupe: new RedisEventDedupe(redis),
          maxBodyBytes: config.maxBodyBytes,
          chatops: slackApi
            ? { db, queue, log, secrets, slack: slackApi, now: Date.now, provisionQueue, tenantStores, logsQueue }
            : undefined,
        })
      : undefined;
    // Stops after the HTTP server (registered before it): waits for listeners still working after their ack.
    if (slack) lifecycle.onStop("slack", () => slack.stop());

    const app = createApp({
      logger: log,
      readiness: [
        { name: "database", check: () => pingDb(db) },
        { name: "redis", check: () => pingRedis(redis) },
      ],
      readinessDetails: () => ({ appsDown: openIncidents(db).length }),
      githubRoutes: githubRoute({
        globalSecret: config.github?.webhookSecret,
        appMode: config.github?.auth?.kind === "app",
        secrets,
        maxBodyBytes: config.maxBodyBytes,
        db,
        queue,
      }),
      slackRoutes: slack?.routes,
    });

    const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
      const s = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, () => resolve(s));
      s.once("error", reject);
    });
    // Registered last, so it runs first: stop accepting requests before anything they need goes away.
    lifecycle.onStop("http server", () => closeServer(server));
    await slack?.start(); // Socket Mode connects here; a no-op in HTTP mode
    const address = server.address() as AddressInfo;
    const url = `http://${address.address.includes(":") ? `[${address.address}]` : address.address}:${address.port}`;
    log.info(
      {
        url,
        slack: config.slack ? (config.slack.appToken ? "socket-mode" : "http") : "off",
        github: Boolean(config.github),
      },
      "tussilago bot listening",
    );
    return { url, caddyAdmin, pipeline, lifecycle, log };
  } catch (err) {
    await lifecycle.stop();
    throw err;
  }
}

/** Tenant PostgreSQL / Redis admin connections, when configured (off otherwise: provisioning then says so). */
function startTenantStores(
  config: Config,
  deps: { db: TenantStoreDeps["db"]; secrets: TenantStoreDeps["secrets"]; log: Logger; lifecycle: Lifecycle },
): TenantStoreDeps {
  const ts = config.tenantStores;
  const pgAdmin = ts.pgAdminUrl
    ? new PgPostgresAdmin({ adminUrl: ts.pgAdminUrl, log: deps.log.child({ component: "tenant-pg" }) })
    : undefined;
  if (pgAdmin) deps.lifecycle.onStop("tenant postgres", () => pgAdmin.close());
  const tenantRedis = ts.redisUrl ? new Redis(ts.redisUrl, { maxRetriesPerRequest: 3 }) : undefined;
  if (tenantRedis) {
    deps.lifecycle.onStop("tenant redis", async () => {
      await tenantRedis.quit().catch(() => tenantRedis.disconnect());
    });
  }
  return {
    db: deps.db,
    secrets: deps.secrets,
    log: deps.log.child({ component: "tenant-stores" }),
    postgres: pgAdmin,
    redisAcl: tenantRedis ? new IoRedisAcl(tenantRedis, deps.log.child({ component: "tenant-redis" })) : undefined,
    settings: tenantStoreSettings(config.tenantStores),
  };
}

/** Where apps reach their stores: the hosts/ports written into DATABASE_URL and REDIS_URL. */
function tenantStoreSettings(ts: Config["tenantStores"]): TenantStoreSettings {
  const pgAdminUrl = ts.pgAdminUrl ? new URL(ts.pgAdminUrl) : undefined;
  return {
    postgres: pgAdminUrl
      ? {
          publicHost: ts.pgPublicHost ?? pgAdminUrl.hostname,
          publicPort: ts.pgPublicPort ?? Number(pgAdminUrl.port || 5432),
          limits: DEFAULT_ROLE_LIMITS,
        }
      : undefined,
    redis: ts.redisUrl
      ? { publicUrl: tenantRedisPublicUrl(ts.redisUrl, ts.redisPublicHost, ts.redisPublicPort) }
      : undefined,
  };
}

function closeServer(server: ReturnType<typeof serve>): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Keep-alive connections would hold close() open; idle ones can go now, busy ones finish their request.
    if ("closeIdleConnections" in server) server.closeIdleConnections();
  });
}
