import { randomBytes } from "node:crypto";
import { cpSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { pino } from "pino";
import { Agent, request } from "undici";
import { deployCommand } from "../../commands/deploy.ts";
import { rollbackCommand } from "../../commands/rollback.ts";
import type { Db } from "../../src/db/client.ts";
import { type AppView, createApp, listApps } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import { type DeploymentView, getDeployment } from "../../src/domain/deployments.ts";
import { CaddyAdmin } from "../../src/infra/caddy.ts";
import { type EmbeddedCaddy, startEmbeddedCaddy } from "../../src/infra/embedded-caddy.ts";
import { GitCli } from "../../src/infra/git.ts";
import { UndiciProbe } from "../../src/infra/http-probe.ts";
import { PodmanEngine } from "../../src/infra/podman.ts";
import type { AppServiceEndpoint } from "../../src/infra/podman-args.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { DEFAULT_PYTHON, DEFAULT_PYTHON_IMAGES } from "../../src/lib/python-images.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { AppLocks } from "../../src/pipeline/app-locks.ts";
import { registerDeployWorker } from "../../src/pipeline/deploy-worker.ts";
import { abortableSleep, type PipelineDeps } from "../../src/pipeline/deps.ts";
import { bullDrains, registerDrainWorker } from "../../src/pipeline/drain-worker.ts";
import { PipelineEvents } from "../../src/pipeline/events.ts";
import { BullJobQueue } from "../../src/pipeline/queues.ts";
import { defaultPipelineSettings, LABELS } from "../../src/pipeline/settings.ts";
import { WorkerPool } from "../../src/pipeline/worker-pool.ts";
import { dropPrefix, tempDb, tempDir, testRedis, uniquePrefix } from "./fixtures.ts";

/**
 * The real pipeline for the end-to-end suite: podman + runsc (own networks and nftables table per run), a real
 * Caddy on a free loopback port, real git over file://, BullMQ on the test Redis. Apps are served by host name.
 */
/** The default Python's image (3.14); tests that need another version build it by version (buildPythonImages). */
export const BASE_IMAGE = process.env.TUSSILAGO_BASE_IMAGE ?? DEFAULT_PYTHON_IMAGES[DEFAULT_PYTHON] ?? "";

/** Builds the base images of these Python versions once (skipped when present); each debootstrap takes 1–2 min. */
export async function buildPythonImages(versions: readonly string[]): Promise<void> {
  await new ExecaRunner(createLogger({ level: "silent" })).run(
    "bash",
    ["scripts/build-base-image.sh", ...versions.map((v) => DEFAULT_PYTHON_IMAGES[v] ?? v)],
    { timeoutMs: 900_000 },
  );
}
export const FIXTURES = join(import.meta.dirname, "..", "fixtures");

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

export interface E2EPipeline {
  db: Db;
  deps: PipelineDeps;
  runner: ExecaRunner;
  engine: PodmanEngine;
  caddyPort: number;
  /** The podman network running apps are on (their bridge's gateway is `host.containers.internal`). */
  isolatedNetwork: string;
  log: Logger;
  /** The harness's queue, worker pool (deploy worker registered) and the pipeline's events, for extra workers. */
  queue: BullJobQueue;
  pool: WorkerPool;
  events: PipelineEvents;
  /** This run's temp dir (removed by `close`). */
  workDir: string;
  /** Runs git with a fixed identity in `cwd`; returns trimmed stdout. */
  git(cwd: string, args: string[]): Promise<string>;
  /** Waits (up to 10 min) until the deployment has finished, whatever the outcome. */
  waitFinished(uuid: string): Promise<DeploymentView>;
  /** Creates a local git repo from a fixture dir (with `RELEASE` written) and returns its file:// URL. */
  repo(fixture: string, release: string): Promise<string>;
  /** Commits a new RELEASE marker to the repo; returns the new commit. */
  commit(url: string, release: string): Promise<string>;
  createApp(slug: string, gitUrl: string, extra?: Partial<Parameters<typeof createApp>[1]>): AppView;
  deploy(slug: string, ref?: string): Promise<DeploymentView>;
  rollback(slug: string, release?: string): Promise<DeploymentView>;
  get(host: string, path?: string): Promise<{ status: number; body: string }>;
  close(): Promise<void>;
}

export interface E2EOptions {
  /** Services running apps may reach (the bot derives these from the tenant-store settings). */
  appServices?: AppServiceEndpoint[];
  /** The old release's grace period; 2 s unless given (the bench uses the production default). */
  drainGraceMs?: number;
}

export async function startE2EPipeline(options: E2EOptions = {}): Promise<E2EPipeline> {
  const id = randomBytes(4).toString("hex");
  // Warnings and errors go to stderr, so a failing e2e run shows why (the pipeline logs every failed stage).
  const log = createLogger({
    level: (process.env.E2E_LOG_LEVEL as "warn" | undefined) ?? "warn",
    destination: pino.destination(2),
  });
  const runner = new ExecaRunner(log);
  const dir = tempDir("tsl-e2e-");
  const database = tempDb();
  const caddyPort = await freePort();
  const caddy: EmbeddedCaddy = await startEmbeddedCaddy({ runner, dataDir: dir.path, log });
  const engine = new PodmanEngine(runner, log, {
    stateDir: dir.path,
    settings: {
      isolatedNetwork: `tsl-e2e-iso-${id}`,
      egressNetwork: `tsl-e2e-egr-${id}`,
      appServices: options.appServices ?? [],
    },
    nftTable: `tsl_e2e_${id}`,
  });
  const proxy = new CaddyAdmin({ endpoint: caddy.adminSocket, log });
  const probe = new UndiciProbe();
  const settings = {
    ...defaultPipelineSettings(dir.path),
    pythonImages: { ...DEFAULT_PYTHON_IMAGES, [DEFAULT_PYTHON]: BASE_IMAGE },
    buildCaBundle: "/etc/ssl/certs/ca-certificates.crt",
    proxyListen: [`127.0.0.1:${caddyPort}`],
    drainGraceMs: options.drainGraceMs ?? 2_000,
    healthTimeoutMs: 30_000,
  };
  const events = new PipelineEvents();
  const redis: Redis = testRedis();
  const prefix = uniquePrefix();
  const queue = new BullJobQueue(redis, prefix);
  const deps: PipelineDeps = {
    db: database.db,
    appLocks: new AppLocks(),
    drains: bullDrains(queue),
    engine,
    proxy,
    git: new GitCli(runner, log, { allowFileUrls: true }),
    probe,
    secrets: new SecretBox("e2e-secret-key-0123456789abcdefghijklmn"),
    events,
    settings,
    log,
    sleep: abortableSleep,
    now: Date.now,
  };
  const pool = new WorkerPool(redis, log, prefix);
  registerDeployWorker(pool, deps);
  registerDrainWorker(pool, deps);
  const client = new Agent({ keepAliveTimeout: 1, pipelining: 0 });
  const git = (cwd: string, args: string[]) =>
    runner.run("git", ["-c", "user.name=E2E", "-c", "user.email=e2e@example.test", ...args], {
      cwd,
      timeoutMs: 30_000,
    });

  const waitFinished = async (uuid: string): Promise<DeploymentView> => {
    const deadline = Date.now() + 10 * 60_000;
    while (Date.now() < deadline) {
      const d = getDeployment(database.db, uuid);
      if (["succeeded", "failed", "superseded", "cancelled"].includes(d.status)) return d;
      await abortableSleep(200);
    }
    throw new Error(`deployment ${uuid} did not finish`);
  };

  return {
    db: database.db,
    deps,
    runner,
    engine,
    caddyPort,
    isolatedNetwork: `tsl-e2e-iso-${id}`,
    log,
    queue,
    pool,
    events,
    workDir: dir.path,
    async git(cwd, args) {
      return (await git(cwd, args)).stdout.trim();
    },
    waitFinished,
    async repo(fixture, release) {
      const path = join(dir.path, "repos", `${fixture}-${randomBytes(3).toString("hex")}`);
      cpSync(join(FIXTURES, fixture), path, { recursive: true });
      writeFileSync(join(path, "RELEASE"), `${release}\n`);
      await git(path, ["init", "-q", "-b", "main"]);
      await git(path, ["add", "-A"]);
      await git(path, ["commit", "-q", "-m", `release ${release}`]);
      return `file://${path}`;
    },
    async commit(url, release) {
      const path = new URL(url).pathname;
      writeFileSync(join(path, "RELEASE"), `${release}\n`);
      await git(path, ["commit", "-q", "-am", `release ${release}`]);
      return (await git(path, ["rev-parse", "HEAD"])).stdout.trim();
    },
    createApp(slug, gitUrl, extra = {}) {
      return createApp(database.db, { slug, gitUrl, domain: `${slug}.e2e.test`, healthPath: "/healthz", ...extra });
    },
    async deploy(slug, ref) {
      const { deployment } = await deployCommand({ db: database.db, queue, log }, { app: slug, ref });
      return waitFinished(deployment.uuid);
    },
    async rollback(slug, release) {
      const { deployment } = await rollbackCommand({ db: database.db, queue, log }, { app: slug, release });
      return waitFinished(deployment.uuid);
    },
    async get(host, path = "/") {
      const res = await request(`http://127.0.0.1:${caddyPort}${path}`, { headers: { host }, dispatcher: client });
      return { status: res.statusCode, body: await res.body.text() };
    },
    async close() {
      await pool.close(5_000);
      await queue.close();
      // Only what this run created: containers and images of this database's apps.
      for (const app of listApps(database.db)) {
        for (const c of await engine.listContainers({ [LABELS.app]: app.uuid })) await engine.removeContainer(c.name);
        for (const img of await engine.listImages(`localhost/tsl-${app.uuid}`)) {
          for (const name of img.names) await engine.removeImage(name).catch(() => undefined);
        }
      }
      for (const net of [`tsl-e2e-iso-${id}`, `tsl-e2e-egr-${id}`]) {
        await runner.run("podman", ["network", "rm", "--force", net], { timeoutMs: 60_000 }).catch(() => undefined);
      }
      await runner
        .run("nft", ["delete", "table", "inet", `tsl_e2e_${id}`], { timeoutMs: 10_000 })
        .catch(() => undefined);
      await proxy.close();
      await probe.close();
      await client.close();
      await caddy.stop();
      await dropPrefix(redis, prefix);
      await redis.quit();
      // E2E_KEEP_CADDY_LOG=/tmp/caddy.log keeps Caddy's own log (health checker, admin API) for a post-mortem.
      const keepCaddyLog = process.env.E2E_KEEP_CADDY_LOG;
      if (keepCaddyLog) cpSync(join(dir.path, "caddy", "server.log"), keepCaddyLog);
      database.cleanup();
      dir.cleanup();
    },
  };
}
