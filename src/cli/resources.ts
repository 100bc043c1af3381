import type { Redis } from "ioredis";
import { closeDb, type Db, databasePath, openDb } from "../db/client.ts";
import type { ContainerEngine } from "../infra/podman.ts";
import type { RedisTarget } from "../infra/redis.ts";
import type { Logger } from "../log.ts";
import type { BullJobQueue, JobQueue } from "../pipeline/queues.ts";
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
    const target = this.#env.redis();
    const [{ connectRedis }, { BullJobQueue }] = await Promise.all([
      import("../infra/redis.ts"),
      import("../pipeline/queues.ts"),
    ]);
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
    this.#queue = new BullJobQueue(redis, this.#env.queuePrefix);
    return this.#queue;
  }

  /** Releases Redis early (the follower only reads the database). */
  async closeQueue(): Promise<void> {
    const queue = this.#queue;
    const redis = this.#redis;
    this.#queue = undefined;
    this.#redis = undefined;
    await queue?.close();
    if (redis) {
      if (redis.status === "ready") await redis.quit().catch(() => redis.disconnect());
      else redis.disconnect();
    }
  }

  async close(): Promise<void> {
    await this.closeQueue();
    if (this.#db) closeDb(this.#db);
    this.#db = undefined;
  }
}
