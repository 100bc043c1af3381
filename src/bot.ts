import { mkdirSync } from "node:fs";
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Redis } from "ioredis";
import { deployCommand } from "../commands/deploy.ts";
import type { ChatOpsDeps } from "../commands/deps.ts";
import { proveGithubLink } from "../commands/github-link-proof.ts";
import { type LogsQueue, registerLogsWorker } from "../commands/logs-job.ts";
import { type PushDeployDeps, processPushDelivery, triageRecordedPushes } from "../commands/push-deploy.ts";
import { type RunQueue, registerRunWorker } from "../commands/run-job.ts";
import { registerScaleWorker } from "../commands/scale-job.ts";
import { reflectDecisionInSlack } from "../handlers/slack-interactions.ts";
import type { Config } from "./config.ts";
import { startCheckpointer } from "./db/checkpointer.ts";
import { databasePath, openDb, pingDb } from "./db/client.ts";
import { getAppByUuid } from "./domain/apps.ts";
import { SecretBox } from "./domain/crypto.ts";
import { getDeployment } from "./domain/deployments.ts";
import { openIncidents } from "./domain/incidents.ts";
import {
  DEFAULT_ROLE_LIMITS,
  storePublicAddresses,
  type TenantStoreDeps,
  type TenantStoreSettings,
} from "./domain/tenant-databases.ts";
import { deliveryOutbox } from "./domain/webhook-deliveries.ts";
import { apiRoutes } from "./http/api.ts";
import { createApp, type ReadinessCheck } from "./http/app.ts";
import { dashboardRoutes } from "./http/dashboard.ts";
import { DashboardLive } from "./http/dashboard-live.ts";
import { fastPost } from "./http/fast-post.ts";
import { GITHUB_WEBHOOK_PATH, githubFastRoute } from "./http/github-fast-path.ts";
import { githubRoute, githubWebhook } from "./http/github-route.ts";
import { countRequest, metricsApp, requestMetrics } from "./http/metrics.ts";
import { createSlackApp } from "./http/slack-app.ts";
import { RedisEventDedupe } from "./http/slack-dedupe.ts";
import { ApiAvailability } from "./infra/api-availability.ts";
import { PodmanAppRedis } from "./infra/app-redis.ts";
import { appServiceEndpoints, assertNotBotRedis, hostAddresses, storeTargets } from "./infra/app-services.ts";
import { CaddyAdmin } from "./infra/caddy.ts";
import { caddySpec, type EmbeddedCaddy, probeCaddyAdmin, startEmbeddedCaddy } from "./infra/embedded-caddy.ts";
import {
  type EmbeddedRedis,
  pingRedis as pingRedisSocket,
  redisSpec,
  startEmbeddedRedis,
} from "./infra/embedded-redis.ts";
import { GitCli } from "./infra/git.ts";
import { GithubRestClient } from "./infra/github-api.ts";
import { githubGitCredentials } from "./infra/github-credentials.ts";
import { UndiciProbe } from "./infra/http-probe.ts";
import { acquireInstanceLock } from "./infra/instance-lock.ts";
import { PodmanEngine } from "./infra/podman.ts";
import { PgPostgresAdmin } from "./infra/postgres-admin.ts";
import { connectRedis, pingRedis, type RedisTarget } from "./infra/redis.ts";
import { IoRedisAcl } from "./infra/redis-acl.ts";
import { ExecaRunner } from "./infra/runner.ts";
import { SlackTokenRefusedError, slackAuthProbe } from "./infra/slack-availability.ts";
import { UndiciSlackApi } from "./infra/slack-web-api.ts";
import { ServiceSupervisor, type Supervised } from "./infra/supervisor.ts";
import { readSysctl } from "./infra/sysctl.ts";
import { createMetrics, registerScrapeGauges } from "./lib/metrics.ts";
import { Lifecycle } from "./lifecycle.ts";
import type { Logger } from "./log.ts";
import { AppLocks } from "./pipeline/app-locks.ts";
import { boundedQueue, boundedQueueOf } from "./pipeline/bounded-queue.ts";
import type { DataPlaneHooks } from "./pipeline/data-plane.ts";
import { DeliveryRelay } from "./pipeline/delivery-relay.ts";
import { registerDeployWorker } from "./pipeline/deploy-worker.ts";
import { abortableSleep, type PipelineDeps } from "./pipeline/deps.ts";
import { bullDrains, registerDrainWorker } from "./pipeline/drain-worker.ts";
import { PipelineEvents } from "./pipeline/events.ts";
import { registerLinkProofWorker } from "./pipeline/link-proof-worker.ts";
import { registerProvisionWorker } from "./pipeline/provision-worker.ts";
import { registerPushWorker } from "./pipeline/push-worker.ts";
import { queueSnapshots } from "./pipeline/queue-stats.ts";
import { BullJobQueue, type JobPayloads, QUEUE_NAMES } from "./pipeline/queues.ts";
import { reconcile } from "./pipeline/reconcile.ts";
import { appsWithoutRoute } from "./pipeline/route-check.ts";
import { checkServing } from "./pipeline/serving-check.ts";
import { defaultPipelineSettings } from "./pipeline/settings.ts";
import { StuckDeploymentCheck } from "./pipeline/stuck-deployments.ts";
import { DataPlaneWatcher } from "./pipeline/watcher.ts";
import { HAND_BACK_TIMEOUT_MS, WorkerPool } from "./pipeline/worker-pool.ts";
import { attachGithubStatusReporter } from "./reporters/github-status.ts";
import { attachLogReporter } from "./reporters/log-reporter.ts";
import { attachMetricsReporter } from "./reporters/metrics-reporter.ts";
import { dataPlaneNotifier, lockRefusalNotifier } from "./reporters/slack-notices.ts";
import { attachSlackThreadReporter, CATCH_UP_WINDOW_MS } from "./reporters/slack-thread.ts";

const COMMAND_QUEUE_TIMEOUT_MS = 1_000;

export interface RunningBot {
  url: string;
  /** The metrics listener's base URL, when TUSSILAGO_METRICS_LISTEN is set. */
  metricsUrl: string | undefined;
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
  let embeddedRedis: ServiceSupervisor<EmbeddedRedis> | undefined;
  let embeddedCaddy: ServiceSupervisor<EmbeddedCaddy> | undefined;
  // Bound once the queues exist; a Caddy that dies before that is restored by the start-up reconcile.
  let restoreRoutes: (reason: string) => void = () => {};
  try {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    // First of all: one bot per data dir. A lock left by a bot that was SIGKILLed or OOM-killed is stale and
    // taken over; its Caddy and Redis are then adopted below.
    const lock = acquireInstanceLock(config.dataDir);
    lifecycle.onStop("instance lock", () => lock.release());
    if (lock.staleOwner)
      log.warn({ previousPid: lock.staleOwner.pid }, "took over the lock of a bot that did not stop");
    const runner = new ExecaRunner(log.child({ component: "runner" }));

    const db = openDb(databasePath(config.dataDir));
    lifecycle.onStop("database", () => {
      db.$client.close();
    });
    // WAL checkpoints (and their fsyncs) in a thread of their own, off the webhook route (src/db/checkpointer.ts).
    const checkpointer = startCheckpointer(db, databasePath(config.dataDir), log.child({ component: "sqlite" }));
    lifecycle.onStop("wal checkpointer", () => checkpointer.stop());
    log.info({ dataDir: config.dataDir }, "platform database ready");

    // Slack down is not a reason to stay down (webhooks, the CLI's queue and the apps' supervision do not need it);
    // a token Slack refuses is: one auth.test decides, and only a refusal stops boot (docs/slack.md).
    const slackAuth = config.slack
      ? slackAuthProbe({
          token: config.slack.botToken,
          apiUrl: config.slack.apiUrl,
          log: log.child({ component: "slack-api" }),
        })
      : undefined;
    const slackAvailability = slackAuth
      ? new ApiAvailability({ name: "slack", probe: () => slackAuth.probe(), log: log.child({ component: "slack" }) })
      : undefined;
    if (slackAvailability) {
      lifecycle.onStop("slack availability", () => slackAvailability.stop());
      await slackAvailability.check();
      if (slackAvailability.state === "refused") {
        throw new SlackTokenRefusedError(slackAvailability.reason ?? "refused");
      }
    }

    let redisTarget: RedisTarget;
    if (config.redisUrl) {
      redisTarget = { url: config.redisUrl };
    } else {
      const redisLog = log.child({ component: "redis" });
      const supervisor = new ServiceSupervisor({
        service: "embedded redis",
        start: () => startEmbeddedRedis({ runner, dataDir: config.dataDir, log: redisLog }),
        probe: () => pingRedisSocket(redisSpec(config).socketPath),
        log: redisLog,
      });
      const embedded = await supervisor.start();
      lifecycle.onStop("embedded redis", () => dataPlaneStep(config, supervisor), 20_000);
      redisTarget = { socketPath: embedded.socketPath };
      log.info({ adopted: embedded.adopted }, "embedded redis-server started");
      embeddedRedis = supervisor;
    }
    const redis = connectRedis(redisTarget);
    // Without a listener ioredis prints every failed reconnect raw to stderr; one JSON line each instead.
    redis.on("error", (err: Error) => log.warn({ err: err.message }, "redis connection error"));
    lifecycle.onStop("redis connection", () => closeRedis(redis));

    let caddyAdmin: string;
    if (config.caddyAdmin) {
      caddyAdmin = config.caddyAdmin;
    } else {
      const caddyLog = log.child({ component: "caddy" });
      const supervisor = new ServiceSupervisor({
        service: "embedded caddy",
        start: () => startEmbeddedCaddy({ runner, dataDir: config.dataDir, log: caddyLog }),
        probe: () => probeCaddyAdmin(caddySpec(config).adminSocket),
        log: caddyLog,
        // A new Caddy starts without routes: the reconcile pass restores every one from the database.
        onRestarted: () => restoreRoutes("caddy restarted"),
      });
      const caddy = await supervisor.start();
      lifecycle.onStop("embedded caddy", () => dataPlaneStep(config, supervisor));
      caddyAdmin = caddy.adminSocket;
      log.info({ adopted: caddy.adopted }, "embedded caddy started");
      embeddedCaddy = supervisor;
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
    // A BullMQ Queue without an error listener prints each connection error raw to stderr. Its connection is the
    // shared one above, whose listener already logs every error as one JSON line; creating every queue here (the
    // instances are cached) gives all of them a listener.
    for (const name of Object.values(QUEUE_NAMES)) queue.queue(name).on("error", loggedByConnection);
    // Webhooks are recorded in SQLite and answered; this relay moves them onto the queue (docs/architecture.md).
    // Pushes no verified app follows are marked ignored there, without a job (commands/push-deploy.ts).
    const relay = new DeliveryRelay({
      outbox: deliveryOutbox(db),
      queue,
      log: log.child({ component: "relay" }),
      triage: (rows) => triageRecordedPushes(db, rows),
    });
    relay.start();
    lifecycle.onStop("delivery relay", () => relay.stop());

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
        availability: slackAvailability,
        // Threads an earlier process kept for a Slack outage and lost when it stopped: posted from the database.
        catchUpWindowMs: CATCH_UP_WINDOW_MS,
        servingCheck: (appUuid) =>
          checkServing({ probe, settings: { proxyListen: config.pipeline.proxyListen } }, getAppByUuid(db, appUuid)),
      });
      lifecycle.onStop("slack threads", async () => {
        await threads.idle();
        threads.stop();
      });
    }
    attachLogReporter(events, log.child({ component: "pipeline" }));
    // One registry per bot, passed down (never prom-client's global one); served only by the metrics listener.
    const metrics = createMetrics();
    attachMetricsReporter(events, metrics, (uuid) => getDeployment(db, uuid).trigger);
    const github = config.github?.auth
      ? new GithubRestClient({
          apiUrl: config.github.apiUrl,
          auth: config.github.auth,
          log: log.child({ component: "github" }),
        })
      : undefined;
    // GitHub has no start-up call: it counts as unreachable when a report cannot get through, up when one does.
    const githubAvailability = github
      ? new ApiAvailability({ name: "github", log: log.child({ component: "github" }) })
      : undefined;
    if (github) {
      const reporter = attachGithubStatusReporter(events, {
        db,
        github,
        log: log.child({ component: "github-status" }),
        availability: githubAvailability,
      });
      // Stops after the workers (registered before them): lets the last statuses reach GitHub, bounded.
      lifecycle.onStop(
        "github reporter",
        async () => {
          reporter.detach();
          await Promise.race([reporter.idle(), new Promise((r) => setTimeout(r, 5_000))]);
        },
        6_000,
      );
    }
    const settings = {
      ...defaultPipelineSettings(config.dataDir),
      pythonImages: config.pipeline.pythonImages,
      defaultPython: config.pipeline.defaultPython,
      buildCaBundle: config.pipeline.buildCaBundle,
      proxyListen: config.pipeline.proxyListen,
      drainGraceMs: config.pipeline.drainGraceMs,
      keepReleases: config.pipeline.keepReleases,
      tenantQuota: config.pipeline.tenantQuota,
      loadBalancing: config.pipeline.loadBalancing,
    };
    // Running apps may open connections to their stores, and to nothing else (never to the bot's own Redis).
    const appServices = await appServiceEndpoints(
      storeTargets(tenantStoreSettings(config.tenantStores)),
      log.child({ component: "app-services" }),
    );
    assertNotBotRedis(appServices, config.redisUrl, hostAddresses());
    // Each app's own Redis server (docs/tenant-databases.md), unless tenants share one server with ACL users.
    const appRedis =
      config.tenantStores.redisMode === "private"
        ? new PodmanAppRedis(runner, log, {
            image: config.tenantStores.appRedisImage,
            instance: settings.instance,
            stateDir: config.dataDir,
            settings: { runscNetwork: config.pipeline.runscNetwork },
          })
        : undefined;
    const pipeline: PipelineDeps = {
      db,
      appLocks: new AppLocks(),
      appRedis,
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
      drains: bullDrains(queue),
    };

    const workers = new WorkerPool(redis, log.child({ component: "workers" }), prefix);
    // Bounded by the grace period plus time to hand unfinished jobs back to the queue.
    lifecycle.onStop(
      "workers",
      () => workers.close(config.shutdownGraceMs),
      config.shutdownGraceMs + HAND_BACK_TIMEOUT_MS + 500,
    );
    // Before any worker runs: jobs a killed predecessor left active go back to the queue now, not after the
    // stalled-job check (30–90 s). Safe because one bot runs per data dir and queue prefix (docs/architecture.md).
    const stuck = new StuckDeploymentCheck({ db, queue, redis, holder: workers, pipeline, log: pipeline.log });
    await stuck.runAtStartUp();
    registerDeployWorker(workers, pipeline);
    registerDrainWorker(workers, pipeline);
    stuck.start();
    lifecycle.onStop("stuck-deployment check", () => stuck.stop());
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
    if (github) {
      const linkProof = {
        db,
        log: log.child({ component: "github-link" }),
        github,
        secrets,
        appMode: config.github?.auth?.kind === "app",
      };
      registerLinkProofWorker(workers, (claim) => proveGithubLink(linkProof, claim));
    }
    const tenantStores = { ...startTenantStores(config, { db, secrets: pipeline.secrets, log, lifecycle }), appRedis };
    registerProvisionWorker(workers, tenantStores);
    const provisionQueue = queue.only(QUEUE_NAMES.provision);
    lifecycle.onStop("provision queue", () => provisionQueue.close());
    // `/tussilago logs`: the only producer is the slash command, so the queue and worker exist with Slack only.
    let logsQueue: LogsQueue | undefined;
    let runQueue: RunQueue | undefined;
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
      // `/tussilago run`, likewise Slack-only (the CLI runs its one-off commands itself).
      registerRunWorker(workers, { ...pipeline, slack: slackApi, log: log.child({ component: "run" }) });
      const runs = queue.only(QUEUE_NAMES.run);
      lifecycle.onStop("run queue", () => runs.close());
      runQueue = runs;
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
      onRestarted: () => metrics.containerRestarts.inc(),
    });
    const unfollow = watcher.followDeployments(events);
    watcher.start();
    lifecycle.onStop("exit watcher", async () => {
      unfollow();
      await watcher.stop();
    });
    // `scale`: the formation applied at once, never beside the watcher's restart of the same app.
    registerScaleWorker(workers, {
      ...pipeline,
      log: log.child({ component: "scale" }),
      slack: slackApi,
      exclusive: (uuid, fn) => watcher.exclusive(uuid, fn),
    });
    workers.add<JobPayloads["reconcile"], unknown>(QUEUE_NAMES.reconcile, async (job) => {
      const report = await reconcile(pipeline, {
        hooks: dataPlaneHooks,
        exclusive: (uuid, fix) => watcher.exclusive(uuid, fix),
      });
      log.info({ report, reason: job.data.reason }, "reconcile finished");
      return report;
    });
    restoreRoutes = (reason) => {
      queue.enqueue(QUEUE_NAMES.reconcile, { reason }, `reconcile-${reason.replace(/\W+/g, "-")}-${Date.now()}`).then(
        () => log.info({ reason }, "reconcile queued to restore routes"),
        (err: unknown) => log.error({ err, reason }, "could not queue the reconcile that restores routes"),
      );
    };
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

    // What chat commands and approval clicks run with, from Slack and from the web dashboard alike.
    const chatops: ChatOpsDeps = {
      db,
      // Slack wants an answer within 3 s: a command's add waits at most 1 s, then the user is told the
      // queue is delayed (the add still lands when Redis is back; src/pipeline/bounded-queue.ts).
      queue: boundedQueue(queue, COMMAND_QUEUE_TIMEOUT_MS, log),
      log,
      secrets,
      now: Date.now,
      provisionQueue: boundedQueueOf(provisionQueue, QUEUE_NAMES.provision, COMMAND_QUEUE_TIMEOUT_MS, log),
      tenantStores,
      logsQueue: logsQueue && boundedQueueOf(logsQueue, QUEUE_NAMES.logs, COMMAND_QUEUE_TIMEOUT_MS, log),
      runQueue: runQueue && boundedQueueOf(runQueue, QUEUE_NAMES.run, COMMAND_QUEUE_TIMEOUT_MS, log),
      tenantQuota: config.pipeline.tenantQuota,
    };
    const slack = config.slack
      ? await createSlackApp({
          config: config.slack,
          logger: log,
          dedupe: new RedisEventDedupe(redis),
          maxBodyBytes: config.maxBodyBytes,
          identity: () => slackAuth?.identity(),
          chatops: slackApi ? { ...chatops, slack: slackApi } : undefined,
        })
      : undefined;
    // The web dashboard (docs/dashboard.md): its live streams end before the HTTP server closes (registered below).
    const dashboardLive = config.dashboard
      ? new DashboardLive({ db, events, log: log.child({ component: "dashboard" }) })
      : undefined;
    // Stops after the HTTP server (registered before it): waits for listeners still working after their ack.
    if (slack) lifecycle.onStop("slack", () => slack.stop());

    const readiness: ReadinessCheck[] = [
      { name: "database", check: () => pingDb(db) },
      { name: "redis", check: () => pingRedis(redis) },
      {
        name: "caddy",
        check: async () => {
          const missing = await appsWithoutRoute(pipeline);
          if (missing.length > 0) throw new Error(`caddy serves no route for ${missing.join(", ")}`);
        },
      },
      ...supervisedChecks({ redis: embeddedRedis, caddy: embeddedCaddy }),
    ];
    const githubDeps = {
      globalSecret: config.github?.webhookSecret,
      appMode: config.github?.auth?.kind === "app",
      // With API credentials a link's activation waits for the proof-of-control job (docs/security.md).
      proofOfControl: github !== undefined,
      secrets,
      maxBodyBytes: config.maxBodyBytes,
      db,
      onRecorded: () => relay.wake(),
      queue,
    };
    // One handler for both ways in: the node:http fast path below and the Hono route (src/http/github-route.ts).
    const webhook = githubWebhook(githubDeps);
    const app = createApp({
      logger: log,
      readiness,
      middleware: [requestMetrics(metrics)],
      readinessDetails: () => ({ appsDown: openIncidents(db).length }),
      githubRoutes: githubRoute(githubDeps, webhook),
      slackRoutes: slack?.routes,
      dashboardRoutes:
        config.dashboard && dashboardLive
          ? dashboardRoutes({
              config: config.dashboard,
              chatops,
              live: dashboardLive,
              onDecided: slackApi
                ? (outcome, l) => reflectDecisionInSlack({ db, slack: slackApi, now: Date.now }, outcome, l)
                : undefined,
            })
          : undefined,
      apiRoutes: apiRoutes({
        db,
        // Like Slack's: a request waits at most 1 s on Redis, then answers that its job is recorded and delayed.
        queue: boundedQueue(queue, COMMAND_QUEUE_TIMEOUT_MS, log),
        log: log.child({ component: "api" }),
        secrets,
        engine: pipeline.engine,
        allowFileUrls: config.pipeline.gitAllowFileUrls,
        trustForwarded: config.apiTrustForwarded,
        tenantQuota: config.pipeline.tenantQuota,
      }),
      degraded: () =>
        [slackAvailability?.detail(), githubAvailability?.detail()].filter((d): d is string => d !== undefined),
    });

    // The hot POST routes on node:http ahead of Hono, answered by the same functions as their Hono routes.
    const fastPath = fastPost(
      new Map([[GITHUB_WEBHOOK_PATH, githubFastRoute(webhook)], ...(slack?.fastRoutes ?? [])]),
      {
        logger: log,
        onAnswered: (path, status) => countRequest(metrics, path, status),
      },
    );
    const server = await listen(app.fetch, config, fastPath);
    // Registered last, so it runs first: stop accepting requests before anything they need goes away.
    lifecycle.onStop("http server", () => closeServer(server));
    if (dashboardLive) lifecycle.onStop("dashboard streams", () => dashboardLive.close());
    await slack?.start(); // Socket Mode connects here; a no-op in HTTP mode
    const url = listenUrl(server);
    let metricsUrl: string | undefined;
    if (config.metrics) {
      registerScrapeGauges(metrics.registry, {
        queues: () => queueSnapshots(queue),
        health: () => dependencyHealth(readiness, { slack: slackAvailability, github: githubAvailability }),
        now: Date.now,
      });
      const metricsServer = await listen(metricsApp(metrics, config.metrics.token).fetch, config.metrics);
      lifecycle.onStop("metrics server", () => closeServer(metricsServer));
      metricsUrl = listenUrl(metricsServer);
    }
    return { url, metricsUrl, caddyAdmin, pipeline, lifecycle, log };
  } catch (err) {
    await lifecycle.stop();
    throw err;
  }
}

/**
 * `first`, when given, sees every request before Hono and returns whether it answered it (the fast path of the
 * GitHub webhook and Slack routes, src/http/fast-post.ts); anything else goes to Hono's listener as before.
 */
function listen(
  fetch: Parameters<typeof serve>[0]["fetch"],
  at: { host: string; port: number },
  first?: (req: IncomingMessage, res: ServerResponse) => boolean,
): Promise<ReturnType<typeof serve>> {
  const withFirst = first
    ? (options: object, hono: RequestListener) =>
        createServer(options, (req, res) => {
          if (!first(req, res)) hono(req, res);
        })
    : undefined;
  return new Promise((resolve, reject) => {
    const s = serve(
      {
        fetch,
        port: at.port,
        hostname: at.host,
        ...(withFirst ? { createServer: withFirst as typeof createServer } : {}),
      },
      () => resolve(s),
    );
    s.once("error", reject);
  });
}

function listenUrl(server: ReturnType<typeof serve>): string {
  const address = server.address() as AddressInfo;
  return `http://${address.address.includes(":") ? `[${address.address}]` : address.address}:${address.port}`;
}

/**
 * `tussilago_dependency_up`: the readiness checks of `/readyz` (database, redis, caddy, embedded processes), each
 * bounded, plus what the Slack and GitHub availability objects last saw (absent while they know nothing yet).
 */
async function dependencyHealth(
  readiness: ReadinessCheck[],
  apis: Record<string, ApiAvailability | undefined>,
): Promise<Record<string, boolean | undefined>> {
  const checks = await Promise.all(
    readiness.map(async ({ name, check }) => {
      const ok = await Promise.race([
        Promise.resolve()
          .then(check)
          .then(
            () => true,
            () => false,
          ),
        new Promise<boolean>((r) => setTimeout(() => r(false), 900).unref()),
      ]);
      return [name, ok] as const;
    }),
  );
  const result: Record<string, boolean | undefined> = Object.fromEntries(checks);
  for (const [name, availability] of Object.entries(apis)) {
    if (!availability || availability.state === "unknown") continue;
    result[name] = availability.state === "up";
  }
  return result;
}

/** QUIT, or a hard disconnect when Redis does not answer within a second (it may be down or hung). */
async function closeRedis(redis: Redis): Promise<void> {
  const quit = redis.quit().then(
    () => true,
    () => false,
  );
  const answered = await Promise.race([quit, new Promise<false>((r) => setTimeout(() => r(false), 1_000))]);
  if (!answered) redis.disconnect();
}

/** For BullMQ queues on the shared connection: its own listener has logged the error already. */
function loggedByConnection(): void {}

/**
 * Normal shutdown leaves the embedded Caddy and Redis running (apps stay online; the next bot adopts them);
 * TUSSILAGO_STOP_DATA_PLANE_ON_EXIT=1 stops them too.
 */
async function dataPlaneStep(config: Config, supervisor: Supervised): Promise<void> {
  if (config.stopDataPlaneOnExit) await supervisor.stopService();
  else supervisor.detach();
}

/** `/readyz` names a supervised process that is down (being restarted) as its own failed dependency. */
function supervisedChecks(services: Record<string, Supervised | undefined>): ReadinessCheck[] {
  return Object.entries(services).flatMap(([name, supervisor]) =>
    supervisor
      ? [
          {
            name: `embedded ${name} process`,
            check: () => {
              const problem = supervisor.problem;
              if (problem !== undefined) throw new Error(problem);
            },
          },
        ]
      : [],
  );
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
    tenantRedis.on("error", (err: Error) => deps.log.warn({ err: err.message }, "tenant redis connection error"));
    deps.lifecycle.onStop("tenant redis", () => closeRedis(tenantRedis));
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

/** Where apps reach their stores (the hosts/ports written into DATABASE_URL and REDIS_URL), with role limits. */
function tenantStoreSettings(ts: Config["tenantStores"]): TenantStoreSettings {
  const addresses = storePublicAddresses(ts);
  return {
    postgres: addresses.postgres ? { ...addresses.postgres, limits: DEFAULT_ROLE_LIMITS } : undefined,
    redis: addresses.redis,
  };
}

function closeServer(server: ReturnType<typeof serve>): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Keep-alive connections would hold close() open; idle ones can go now, busy ones finish their request.
    if ("closeIdleConnections" in server) server.closeIdleConnections();
  });
}
