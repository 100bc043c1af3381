import envPaths from "env-paths";
import { z } from "zod";

/**
 * The whole process configuration, parsed once at boot from an env object that is passed in
 * (never read from `process.env` elsewhere), so tests can hand in exactly what they want.
 */
export interface SlackConfig {
  signingSecret: string;
  botToken: string;
  /** Set → Socket Mode; unset → HTTP receiver on the Hono app. */
  appToken: string | undefined;
  apiUrl: string | undefined;
}

export interface GithubConfig {
  webhookSecret: string;
  apiUrl: string;
}

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface Config {
  secretKey: string;
  port: number;
  host: string;
  logLevel: LogLevel;
  dataDir: string;
  /** `undefined` → the bot starts its own redis-server on a unix socket in the data dir. */
  redisUrl: string | undefined;
  /** `undefined` → the bot starts its own Caddy with the admin API on a unix socket in the data dir. */
  caddyAdmin: string | undefined;
  slack: SlackConfig | undefined;
  github: GithubConfig | undefined;
  /** How long in-flight jobs get to finish on SIGTERM before they are handed back to the queue. */
  shutdownGraceMs: number;
  /** Largest webhook body we read; bigger ones get 413 before any parsing. */
  maxBodyBytes: number;
}

/** A configuration problem the operator must fix; `variable` names the environment variable at fault. */
export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = "ConfigError";
    this.variable = variable;
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** Empty strings count as unset: `FOO= node …` is a common way to blank a variable. */
function opt(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === "" ? undefined : value;
}

function parseWith<T>(schema: z.ZodType<T>, env: Env, name: string, fallback: T): T {
  const raw = opt(env, name);
  if (raw === undefined) return fallback;
  const result = schema.safeParse(raw);
  if (!result.success) {
    throw new ConfigError(name, result.error.issues[0]?.message ?? "invalid value");
  }
  return result.data;
}

const portSchema = z.coerce
  .number({ message: "must be a number" })
  .int("must be an integer")
  .min(0, "must be between 0 and 65535")
  .max(65535, "must be between 0 and 65535");

const urlSchema = z
  .string()
  .refine((v) => URL.canParse(v) && /^https?:$/.test(new URL(v).protocol), "must be an absolute http(s) URL")
  .transform((v) => v.replace(/\/+$/, ""));

const redisUrlSchema = z.string().refine((v) => URL.canParse(v) && /^(rediss?|unix):$/.test(new URL(v).protocol), {
  message: "must be a redis://, rediss:// or unix:// URL",
});

/** A unix socket path (absolute) or an http(s) URL on which Caddy's admin API listens. */
const caddyAdminSchema = z
  .string()
  .refine((v) => v.startsWith("/") || v.startsWith("unix/") || /^https?:\/\//.test(v), {
    message: "must be an absolute unix socket path or an http(s) URL",
  });

const absolutePath = z.string().refine((v) => v.startsWith("/"), "must be an absolute path");

export function defaultDataDir(): string {
  // platformdirs-style user data directory (~/.local/share/tussilago on Linux); never the repository root.
  return envPaths("tussilago", { suffix: "" }).data;
}

export function loadConfig(env: Env): Config {
  const secretKey = opt(env, "TUSSILAGO_SECRET_KEY");
  if (secretKey === undefined) {
    throw new ConfigError("TUSSILAGO_SECRET_KEY", "is required (at least 32 characters; it encrypts secrets at rest)");
  }
  if (secretKey.length < 32) {
    throw new ConfigError("TUSSILAGO_SECRET_KEY", `must be at least 32 characters (got ${secretKey.length})`);
  }

  const signingSecret = opt(env, "SLACK_SIGNING_SECRET");
  const botToken = opt(env, "SLACK_BOT_TOKEN");
  if ((signingSecret === undefined) !== (botToken === undefined)) {
    const missing = signingSecret === undefined ? "SLACK_SIGNING_SECRET" : "SLACK_BOT_TOKEN";
    throw new ConfigError(
      missing,
      "is required when Slack is configured (set both SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN)",
    );
  }
  const slack: SlackConfig | undefined =
    signingSecret !== undefined && botToken !== undefined
      ? {
          signingSecret,
          botToken,
          appToken: opt(env, "SLACK_APP_TOKEN"),
          apiUrl: parseWith(urlSchema.optional(), env, "SLACK_API_URL", undefined),
        }
      : undefined;

  const webhookSecret = opt(env, "GITHUB_WEBHOOK_SECRET");
  const github: GithubConfig | undefined =
    webhookSecret !== undefined
      ? { webhookSecret, apiUrl: parseWith(urlSchema, env, "GITHUB_API_URL", "https://api.github.com") }
      : undefined;

  return {
    secretKey,
    port: parseWith(portSchema, env, "PORT", 3000),
    host: opt(env, "HOST") ?? "127.0.0.1",
    logLevel: parseWith(
      z.enum(LOG_LEVELS, { message: `must be one of ${LOG_LEVELS.join(", ")}` }),
      env,
      "LOG_LEVEL",
      "info",
    ),
    dataDir: parseWith(absolutePath, env, "TUSSILAGO_DATA_DIR", defaultDataDir()),
    redisUrl: parseWith(redisUrlSchema.optional(), env, "REDIS_URL", undefined),
    caddyAdmin: parseWith(caddyAdminSchema.optional(), env, "CADDY_ADMIN", undefined),
    slack,
    github,
    shutdownGraceMs: parseWith(
      z.coerce.number({ message: "must be a number" }).int().min(0).max(600_000),
      env,
      "TUSSILAGO_SHUTDOWN_GRACE_MS",
      25_000,
    ),
    maxBodyBytes: 1024 * 1024,
  };
}
