import { existsSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { z } from "zod";
import type { LogLevel } from "../config.ts";
import { ConfigError, defaultDataDir, type Env, parseFlag } from "../config.ts";
import type { RedisTarget } from "../infra/redis.ts";
import type { StoreKind } from "./admin-args.ts";
import { CliEnvError } from "./env-error.ts";
import { secretKeyFrom, type TenantStoreEnv, tenantStoreFrom } from "./tenant-store-env.ts";

/**
 * What the CLI reads from its environment. Deliberately not loadConfig(): most commands only read the database
 * and enqueue jobs, so they must work without TUSSILAGO_SECRET_KEY or Slack/GitHub settings.
 */
export interface CliEnv {
  dataDir: string;
  /** Resolved lazily: read-only commands must work while the bot (and its embedded Redis) is down. */
  redis: () => RedisTarget;
  queuePrefix: string;
  logLevel: LogLevel;
  /** Only `db show` and `db reveal` need these; `command` names the command in the error when one is missing. */
  secretKey: (command: string) => string;
  tenantStore: (kind: StoreKind, command: string) => TenantStoreEnv;
  /** TUSSILAGO_GIT_ALLOW_FILE_URLS, as the bot reads it: `apps create` refuses a URL the bot would refuse later. */
  gitAllowFileUrls: boolean;
}

export { CliEnvError };

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

const redisUrlSchema = z.string().refine((v) => URL.canParse(v) && /^(rediss?|unix):$/.test(new URL(v).protocol));
// BullMQ joins prefix, queue name and job id with ":"; a prefix containing one would collide with other keys.
const prefixSchema = z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/);

function opt(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === "" ? undefined : value;
}

export function embeddedRedisSocket(dataDir: string): string {
  // Same place src/infra/embedded-redis.ts puts it.
  return join(dataDir, "redis", "redis.sock");
}

export function parseCliEnv(env: Env, exists: (path: string) => boolean = existsSync): CliEnv {
  const dataDir = opt(env, "TUSSILAGO_DATA_DIR") ?? defaultDataDir();
  if (!isAbsolute(dataDir)) throw new CliEnvError("TUSSILAGO_DATA_DIR: must be an absolute path");

  const queuePrefix = opt(env, "TUSSILAGO_QUEUE_PREFIX") ?? "tussilago";
  if (!prefixSchema.safeParse(queuePrefix).success) {
    throw new CliEnvError("TUSSILAGO_QUEUE_PREFIX: must be 1–100 letters, digits, '.', '_' or '-'");
  }

  const rawLevel = opt(env, "LOG_LEVEL") ?? "warn";
  const level = z.enum(LOG_LEVELS).safeParse(rawLevel);
  if (!level.success) throw new CliEnvError(`LOG_LEVEL: must be one of ${LOG_LEVELS.join(", ")}`);

  const redisUrl = opt(env, "REDIS_URL");
  if (redisUrl !== undefined && !redisUrlSchema.safeParse(redisUrl).success) {
    throw new CliEnvError("REDIS_URL: must be a redis://, rediss:// or unix:// URL");
  }
  const redis = (): RedisTarget => {
    if (redisUrl !== undefined) return { url: redisUrl };
    const socketPath = embeddedRedisSocket(dataDir);
    if (!exists(socketPath)) {
      throw new CliEnvError(
        `the bot is not running (no Redis at ${socketPath}); start it with npm start or set REDIS_URL`,
      );
    }
    return { socketPath };
  };

  let gitAllowFileUrls: boolean;
  try {
    gitAllowFileUrls = parseFlag(env, "TUSSILAGO_GIT_ALLOW_FILE_URLS");
  } catch (err) {
    if (err instanceof ConfigError) throw new CliEnvError(err.message);
    throw err;
  }

  return {
    dataDir,
    redis,
    queuePrefix,
    gitAllowFileUrls,
    logLevel: level.data,
    secretKey: (command) => secretKeyFrom(env, command),
    tenantStore: (kind, command) => tenantStoreFrom(env, kind, command),
  };
}
