import type { Redis } from "ioredis";
import { closeDb, type Db, databasePath, openDb } from "../db/client.ts";
import { SecretBox } from "../domain/crypto.ts";
import type { TenantStoreDeps } from "../domain/tenant-databases.ts";
import type { ContainerEngine } from "../infra/podman.ts";
import type { RedisTarget } from "../infra/redis.ts";
import type { Logger } from "../log.ts";
import type { ProvisionQueue } from "../pipeline/provision-worker.ts";
import type { BullJobQueue, JobQueue } from "../pipeline/queues.ts";
import type { StoreKind } from "./admin-args.ts";
import { type CliEnv, CliEnvError } from "./env.ts";

const REDIS_CONNECT_TIMEOUT_MS = 5_000;

function describeTarget(target: RedisTarget): string {
  if ("socketPath" in target) return target.socketPath;
  const url = new URL(target.url);
  if (url.password !== "") url.password = "***";
  return url.toString();
}

/**
 * Opens what a command needs, when it needs it: read commands never touch Redis, so they work while the bot is
 * down. `close()` releases everything, so the process exits on its own. BullMQ, ioredis and execa are imported
 * on first use: read commands start noticeably faster without them.
 */
export class CliResources {
  readonly #env: CliEnv;
  readonly #log: Logger;
  #db: Db | undefined;
  #redis: Redis | undefined;
  #queue: BullJobQueue | undefined;
  #provisionQueue: ProvisionQueue | undefined;
  /** Tenant-store admin connections opened by `db reveal`. */
  readonly #closers: Array<() => Promise<void>> = [];

  /** Whether file:// git URLs are allowed (the bot's TUSSILAGO_GIT_ALLOW_FILE_URLS). */
  get gitAllowFileUrls(): boolean {
    return this.#env.gitAllowFileUrls;
  }

  constructor(env: CliEnv, log: Logger) {
    this.#env = env;
    this.#log = log;
  }

  db(): Db {
    this.#db ??= openDb(databasePath(this.#env.dataDir));
    return this.#db;
  }

  async engine(): Promise<ContainerEngine> {
    const [{ PodmanEngine }, { ExecaRunner }] = await Promise.all([
      import("../infra/podman.ts"),
      import("../infra/runner.ts"),
    ]);
    return new PodmanEngine(new ExecaRunner(this.#log), this.#log);
  }

  /** Connects and pings first, so a deploy is never recorded while its job cannot be enqueued. */
  async queue(): Promise<JobQueue> {
    if (this.#queue) return this.#queue;
    const redis = await this.#connectRedis();
    const { BullJobQueue } = await import("../pipeline/queues.ts");
    this.#queue = new BullJobQueue(redis, this.#env.queuePrefix);
    return this.#queue;
  }

  /** The provision queue on the bot's Redis and prefix, where the bot's provision worker picks jobs up. */
  async provisionQueue(): Promise<ProvisionQueue> {
    if (this.#provisionQueue) return this.#provisionQueue;
    const redis = await this.#connectRedis();
    const { BullJobQueue } = await import("../pipeline/queues.ts");
    this.#provisionQueue = new BullJobQueue(redis, this.#env.queuePrefix).only("provision");
    return this.#provisionQueue;
  }

  /** The bot's TUSSILAGO_SECRET_KEY, which opens the sealed tenant credentials. */
  secrets(command: string): SecretBox {
    return new SecretBox(this.#env.secretKey(command));
  }

  /**
   * What `db reveal` needs to rotate inline: the admin connection for one kind of store, from the same variables
   * the bot reads (src/bot.ts startTenantStores). The other kind stays unconfigured.
   */
  async tenantStores(kind: StoreKind, command: string): Promise<TenantStoreDeps> {
    const store = this.#env.tenantStore(kind, command);
    const secrets = this.secrets(command);
    const log = this.#log.child({ component: "tenant-stores" });
    const { DEFAULT_ROLE_LIMITS } = await import("../domain/tenant-databases.ts");
    const base = { db: this.db(), secrets, log, postgres: undefined, redisAcl: undefined };
    if (store.kind === "postgres") {
      const { PgPostgresAdmin } = await import("../infra/postgres-admin.ts");
      const admin = new PgPostgresAdmin({ adminUrl: store.adminUrl, log });
      this.#closers.push(() => admin.close());
      return {
        ...base,
        postgres: admin,
        settings: {
          postgres: { publicHost: store.publicHost, publicPort: store.publicPort, limits: DEFAULT_ROLE_LIMITS },
          redis: undefined,
        },
      };
    }
    const [{ Redis }, { IoRedisAcl }] = await Promise.all([import("ioredis"), import("../infra/redis-acl.ts")]);
    const tenantRedis = new Redis(store.url, { maxRetriesPerRequest: 3, connectionName: "tussilago-cli" });
    tenantRedis.on("error", (err: Error) => log.debug({ err: err.message }, "tenant redis connection error"));
    this.#closers.push(async () => {
      if (tenantRedis.status === "ready") await tenantRedis.quit().catch(() => tenantRedis.disconnect());
      else tenantRedis.disconnect();
    });
    return {
      ...base,
      redisAcl: new IoRedisAcl(tenantRedis, log),
      settings: { postgres: undefined, redis: { publicUrl: store.publicUrl } },
    };
  }

  /** One connection for both queues; pinged first, so nothing is recorded while a job cannot be enqueued. */
  async #connectRedis(): Promise<Redis> {
    if (this.#redis) return this.#redis;
    const target = this.#env.redis();
    const { connectRedis } = await import("../infra/redis.ts");
    const redis = connectRedis(target, "tussilago-cli");
    this.#redis = redis;
    let lastError = "";
    // connectRedis retries forever (right for the bot); the CLI wants an answer within seconds instead.
    redis.on("error", (err: Error) => {
      lastError = err.message;
    });
    let timer: NodeJS.Timeout | undefined;
    const ok = await Promise.race([
      redis.ping().then(
        () => true,
        () => false,
      ),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), REDIS_CONNECT_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    if (!ok) {
      this.#log.debug({ lastError }, "redis unreachable");
      throw new CliEnvError(
        `cannot reach Redis at ${describeTarget(target)}; is the bot running? (start it with npm start or set REDIS_URL)`,
      );
    }
    return redis;
  }

  /** Releases Redis early (the follower only reads the database). */
  async closeQueue(): Promise<void> {
    const queue = this.#queue;
    const provisionQueue = this.#provisionQueue;
    const redis = this.#redis;
    this.#queue = undefined;
    this.#provisionQueue = undefined;
    this.#redis = undefined;
    await queue?.close();
    await provisionQueue?.close();
    if (redis) {
      if (redis.status === "ready") await redis.quit().catch(() => redis.disconnect());
      else redis.disconnect();
    }
  }

  async close(): Promise<void> {
    await this.closeQueue();
    for (const close of this.#closers.splice(0)) await close();
    if (this.#db) closeDb(this.#db);
    this.#db = undefined;
  }
}
