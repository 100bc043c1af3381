import { createPrivateKey } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import envPaths from "env-paths";
import { z } from "zod";
import { DEFAULT_APP_REDIS_IMAGE } from "./lib/app-redis-image.ts";
import { DEFAULT_PYTHON, DEFAULT_PYTHON_IMAGES } from "./lib/python-images.ts";

export interface SlackConfig {
  signingSecret: string;
  botToken: string;
  /** Set → Socket Mode; unset → HTTP receiver on the Hono app. */
  appToken: string | undefined;
  apiUrl: string | undefined;
}

/** How the bot authenticates to the GitHub API; either kind is enough for status reporting and private fetches. */
export type GithubAuthConfig = { kind: "token"; token: string } | { kind: "app"; appId: string; privateKeyPem: string };

export interface GithubConfig {
  /**
   * GITHUB_WEBHOOK_SECRET: signs the GitHub App's deliveries, and those of links made before per-link secrets;
   * every other link verifies with its own secret (docs/security.md). Required in App mode only.
   */
  webhookSecret: string | undefined;
  apiUrl: string;
  /** `undefined` → no reporting back to GitHub and no authenticated fetches; webhooks still deploy. */
  auth: GithubAuthConfig | undefined;
}

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

/**
 * The whole process configuration, parsed once at boot from an env object that is passed in
 * (never read from `process.env` elsewhere), so tests can hand in exactly what they want.
 */
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
  /** Embedded Caddy/Redis keep serving after the bot exits unless this is set (`tussilago stop-proxy` does it too). */
  stopDataPlaneOnExit: boolean;
  /** Largest webhook body we read; bigger ones get 413 before any parsing. */
  maxBodyBytes: number;
  pipeline: PipelineConfig;
  tenantStores: TenantStoresConfig;
  /** `GET /metrics` on a listener of its own; `undefined` → no metrics listener (the default). */
  metrics: MetricsConfig | undefined;
  /**
   * The operator API (docs/api.md) counts failed authentications per client. Behind a TLS-terminating proxy every
   * client is the proxy: TUSSILAGO_API_TRUST_FORWARDED=1 counts per X-Forwarded-For client instead (only safe when the
   * proxy sets that header itself).
   */
  apiTrustForwarded: boolean;
  /** The read-only web dashboard with Sign in with Slack (docs/dashboard.md); `undefined` → off (the default). */
  dashboard: DashboardConfig | undefined;
}

export interface DashboardConfig {
  /** Where browsers reach the bot (`https://deploy.example.com`), no trailing slash: the OIDC redirect URI base. */
  publicUrl: string;
  /** The Slack app's client id and secret (Basic Information → App Credentials). */
  clientId: string;
  clientSecret: string;
  /** The OpenID Connect issuer; `https://slack.com` unless a test points it at a fake issuer. */
  issuer: string;
  /** Seals the session and sign-in cookies; changing it signs everyone out. */
  cookieSecret: string;
}

export interface MetricsConfig {
  host: string;
  port: number;
  /** Bearer token a scraper must send; required whenever the listener is on. */
  token: string;
}

/** Shared servers for tenant databases (issue: tenant PostgreSQL and Redis); unset → provisioning is off. */
export interface TenantStoresConfig {
  /** Superuser-ish admin connection for provisioning (through PgBouncer is fine: transaction-safe by design). */
  pgAdminUrl: string | undefined;
  /** Host/port apps get in DATABASE_URL (PgBouncer's); default: the admin URL's. */
  pgPublicHost: string | undefined;
  pgPublicPort: number | undefined;
  /** A Redis for tenants, separate from the bot's own (sandboxes must never reach the bot's Redis). */
  redisUrl: string | undefined;
  /** Host/port apps get in REDIS_URL; default: the admin URL's. */
  redisPublicHost: string | undefined;
  redisPublicPort: number | undefined;
  /**
   * "private": each app's Redis is its own redis-server in a sandboxed container (docs/tenant-databases.md);
   * "shared": an ACL user on `redisUrl`'s server (no Lua scripts, so no Celery). Default: shared when `redisUrl`
   * is set, private otherwise.
   */
  redisMode: "private" | "shared";
  /** The image of the private servers (scripts/build-redis-image.sh builds the default). */
  appRedisImage: string;
}

export interface PipelineConfig {
  /** Builder + runtime base image of the default Python version (what `doctor` checks). */
  baseImage: string;
  /** Python version → builder + runtime base image (python3.X + uv); docs/python-apps.md, "Python versions". */
  pythonImages: Record<string, string>;
  /** The version an app that names none gets; a key of `pythonImages`. */
  defaultPython: string;
  /** Extra CA bundle mounted into builds (intercepting proxies). */
  buildCaBundle: string | undefined;
  /** Caddy listen addresses for app traffic. */
  proxyListen: string[];
  /**
   * runsc's network stack: "sandbox" (gVisor netstack, the stronger isolation) where the installed runsc supports
   * it; "host" (the container's own network namespace through podman's bridge) where it does not — runsc 20221219
   * on Linux ≥ 6.11 fails with netstack (gVisor issue 10704), so "host" is the default here.
   */
  runscNetwork: "host" | "sandbox";
  /** Allow file:// git URLs (local repositories). Off by default: such a URL reads any repo this host can read. */
  gitAllowFileUrls: boolean;
  /** BullMQ key prefix; tests give each run its own. */
  queuePrefix: string;
  drainGraceMs: number;
  keepReleases: number;
  /** Run the reconcile pass at start-up (default on). */
  reconcileOnStart: boolean;
  /** Run it again every this many ms, so a crashed app container is restarted (0 = never). */
  reconcileIntervalMs: number;
  /** Caps on what each tenant's apps run together (docs/python-apps.md, "Scale"); unset fields do not cap. */
  tenantQuota: TenantQuotaConfig;
  /** How Caddy spreads requests over an app's web containers. */
  loadBalancing: "round_robin" | "least_conn";
}

export interface TenantQuotaConfig {
  /** Sum over a tenant's apps of containers × the app's memory, private Redis servers included. */
  maxMemoryMb: number | undefined;
  maxContainers: number | undefined;
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

export function defaultDataDir(): string {
  // platformdirs-style user data directory (~/.local/share/tussilago on Linux); never the repository root.
  return envPaths("tussilago", { suffix: "" }).data;
}

/**
 * Composes the per-area readers below. They run in this order, and each reads its variables in field order, so the
 * first error reported for a bad environment is always the same one.
 */
export function loadConfig(env: Env): Config {
  const secretKey = loadSecretKey(env);
  const slack = loadSlack(env);
  const github = loadGithub(env);
  const config: Config = {
    secretKey,
    ...loadHttp(env),
    ...loadOwnServices(env),
    slack,
    github,
    shutdownGraceMs: parseWith(shutdownGraceSchema, env, "TUSSILAGO_SHUTDOWN_GRACE_MS", 25_000),
    stopDataPlaneOnExit: parseFlag(env, "TUSSILAGO_STOP_DATA_PLANE_ON_EXIT"),
    maxBodyBytes: 1024 * 1024,
    tenantStores: loadTenantStores(env),
    pipeline: loadPipeline(env),
    metrics: loadMetrics(env),
    dashboard: loadDashboard(env),
    apiTrustForwarded: parseFlag(env, "TUSSILAGO_API_TRUST_FORWARDED"),
  };
  assertTenantRedisIsNotOurs(config);
  return config;
}

// Shared value schemas.

const hostSchema = z.string().regex(/^[A-Za-z0-9.-]{1,253}$/, "must be a host name or IPv4 address");
const portSchema = z.coerce
  .number({ message: "must be a number" })
  .int("must be an integer")
  .min(0, "must be between 0 and 65535")
  .max(65535, "must be between 0 and 65535");

const urlSchema = z
  .string()
  .refine((v) => URL.canParse(v) && /^https?:$/.test(new URL(v).protocol), "must be an absolute http(s) URL")
  .transform((v) => v.replace(/\/+$/, ""));

const absolutePath = z.string().refine((v) => v.startsWith("/"), "must be an absolute path");

/** A whole number of milliseconds in [min, max]. */
const millisSchema = (min: number, max: number) =>
  z.coerce.number({ message: "must be a number" }).int().min(min).max(max);

const shutdownGraceSchema = millisSchema(0, 600_000);

// The secret key.

function loadSecretKey(env: Env): string {
  const secretKey = opt(env, "TUSSILAGO_SECRET_KEY");
  if (secretKey === undefined) {
    throw new ConfigError("TUSSILAGO_SECRET_KEY", "is required (at least 32 characters; it encrypts secrets at rest)");
  }
  if (secretKey.length < 32) {
    throw new ConfigError("TUSSILAGO_SECRET_KEY", `must be at least 32 characters (got ${secretKey.length})`);
  }
  return secretKey;
}

// Slack: both secrets or neither.

function loadSlack(env: Env): SlackConfig | undefined {
  const signingSecret = opt(env, "SLACK_SIGNING_SECRET");
  const botToken = opt(env, "SLACK_BOT_TOKEN");
  if ((signingSecret === undefined) !== (botToken === undefined)) {
    const missing = signingSecret === undefined ? "SLACK_SIGNING_SECRET" : "SLACK_BOT_TOKEN";
    throw new ConfigError(
      missing,
      "is required when Slack is configured (set both SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN)",
    );
  }
  if (signingSecret === undefined || botToken === undefined) return undefined;
  return {
    signingSecret,
    botToken,
    appToken: opt(env, "SLACK_APP_TOKEN"),
    apiUrl: parseWith(urlSchema.optional(), env, "SLACK_API_URL", undefined),
  };
}

// GitHub: the webhook secret turns it on; API credentials need it.

function loadGithub(env: Env): GithubConfig | undefined {
  const webhookSecret = opt(env, "GITHUB_WEBHOOK_SECRET");
  const auth = loadGithubAuth(env);
  if (auth?.kind === "app" && webhookSecret === undefined) {
    throw new ConfigError("GITHUB_WEBHOOK_SECRET", "is required in GitHub App mode (the App's webhook secret)");
  }
  if (webhookSecret === undefined && auth === undefined) return undefined;
  return { webhookSecret, apiUrl: parseWith(urlSchema, env, "GITHUB_API_URL", "https://api.github.com"), auth };
}

// HTTP listener and logging.

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
const logLevelSchema = z.enum(LOG_LEVELS, { message: `must be one of ${LOG_LEVELS.join(", ")}` });

function loadHttp(env: Env): Pick<Config, "port" | "host" | "logLevel"> {
  return {
    port: parseWith(portSchema, env, "PORT", 3000),
    host: opt(env, "HOST") ?? "127.0.0.1",
    logLevel: parseWith(logLevelSchema, env, "LOG_LEVEL", "info"),
  };
}

// The metrics listener: off unless an address is given, and then only with a token.

function loadMetrics(env: Env): MetricsConfig | undefined {
  const listen = opt(env, "TUSSILAGO_METRICS_LISTEN");
  if (listen === undefined) return undefined;
  const match = /^(.+):(\d+)$/.exec(listen);
  const host = match?.[1];
  if (match === null || host === undefined || !hostSchema.safeParse(host).success) {
    throw new ConfigError("TUSSILAGO_METRICS_LISTEN", "must be HOST:PORT, e.g. 127.0.0.1:9464");
  }
  const port = portSchema.safeParse(match[2]);
  if (!port.success) throw new ConfigError("TUSSILAGO_METRICS_LISTEN", "must be HOST:PORT with a port of 0-65535");
  const token = opt(env, "TUSSILAGO_METRICS_TOKEN");
  if (token === undefined || token.length < 16) {
    throw new ConfigError(
      "TUSSILAGO_METRICS_TOKEN",
      "is required (at least 16 characters) when TUSSILAGO_METRICS_LISTEN is set: scrapers send it as a bearer token",
    );
  }
  return { host, port: port.data, token };
}

// The web dashboard: off unless the flag is set, and then every setting is required.

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** https, or http on a loopback host only (a test's fake issuer, a dashboard reached through an SSH tunnel). */
const secureUrlSchema = urlSchema.refine((v) => {
  const u = new URL(v);
  return u.protocol === "https:" || LOOPBACK_HOSTS.has(u.hostname);
}, "must be an https:// URL (http:// only on a loopback host)");

const publicUrlSchema = secureUrlSchema.refine((v) => {
  const u = new URL(v);
  return u.pathname === "/" && u.search === "" && u.hash === "" && u.username === "" && u.password === "";
}, "must be an origin without a path, e.g. https://deploy.example.com");

function loadDashboard(env: Env): DashboardConfig | undefined {
  if (!parseFlag(env, "TUSSILAGO_DASHBOARD")) return undefined;
  const required = <T>(schema: z.ZodType<T>, name: string, why: string): T => {
    if (opt(env, name) === undefined) {
      throw new ConfigError(name, `is required when TUSSILAGO_DASHBOARD is on (${why})`);
    }
    return parseWith(schema, env, name, undefined as T);
  };
  const secret = z.string().min(32, "must be at least 32 characters");
  return {
    publicUrl: required(publicUrlSchema, "TUSSILAGO_PUBLIC_URL", "the URL browsers reach the bot at"),
    clientId: required(z.string(), "SLACK_OIDC_CLIENT_ID", "the Slack app's client id"),
    clientSecret: required(z.string(), "SLACK_OIDC_CLIENT_SECRET", "the Slack app's client secret"),
    issuer: parseWith(secureUrlSchema, env, "SLACK_OIDC_ISSUER", "https://slack.com"),
    cookieSecret: required(secret, "TUSSILAGO_DASHBOARD_COOKIE_SECRET", "at least 32 characters; it seals sessions"),
  };
}

// The bot's own data dir, Redis and Caddy (embedded when unset).

const redisUrlSchema = z.string().refine((v) => URL.canParse(v) && /^(rediss?|unix):$/.test(new URL(v).protocol), {
  message: "must be a redis://, rediss:// or unix:// URL",
});

/** A unix socket path (absolute) or an http(s) URL on which Caddy's admin API listens. */
const caddyAdminSchema = z
  .string()
  .refine((v) => v.startsWith("/") || v.startsWith("unix/") || /^https?:\/\//.test(v), {
    message: "must be an absolute unix socket path or an http(s) URL",
  });

function loadOwnServices(env: Env): Pick<Config, "dataDir" | "redisUrl" | "caddyAdmin"> {
  return {
    dataDir: parseWith(absolutePath, env, "TUSSILAGO_DATA_DIR", defaultDataDir()),
    redisUrl: parseWith(redisUrlSchema.optional(), env, "REDIS_URL", undefined),
    caddyAdmin: parseWith(caddyAdminSchema.optional(), env, "CADDY_ADMIN", undefined),
  };
}

// Shared servers for tenant databases.

const pgAdminUrlSchema = z
  .string()
  .refine((v) => URL.canParse(v) && /^postgres(ql)?:$/.test(new URL(v).protocol), "must be a postgres:// URL");

const tenantRedisUrlSchema = z
  .string()
  .refine((v) => URL.canParse(v) && /^rediss?:$/.test(new URL(v).protocol), "must be a redis:// or rediss:// URL");

function loadTenantStores(env: Env): TenantStoresConfig {
  return {
    pgAdminUrl: parseWith(pgAdminUrlSchema.optional(), env, "TUSSILAGO_PG_ADMIN_URL", undefined),
    pgPublicHost: parseWith(hostSchema.optional(), env, "TUSSILAGO_PG_PUBLIC_HOST", undefined),
    pgPublicPort: parseWith(portSchema.optional(), env, "TUSSILAGO_PG_PUBLIC_PORT", undefined),
    redisUrl: parseWith(tenantRedisUrlSchema.optional(), env, "TUSSILAGO_TENANT_REDIS_URL", undefined),
    redisPublicHost: parseWith(hostSchema.optional(), env, "TUSSILAGO_TENANT_REDIS_PUBLIC_HOST", undefined),
    redisPublicPort: parseWith(portSchema.optional(), env, "TUSSILAGO_TENANT_REDIS_PUBLIC_PORT", undefined),
    redisMode:
      parseWith(
        z.enum(["private", "shared"], { message: "must be private or shared" }).optional(),
        env,
        "TUSSILAGO_TENANT_REDIS_MODE",
        undefined,
      ) ?? (env.TUSSILAGO_TENANT_REDIS_URL ? "shared" : "private"),
    appRedisImage: parseWith(baseImageSchema, env, "TUSSILAGO_APP_REDIS_IMAGE", DEFAULT_APP_REDIS_IMAGE),
  };
}

// The deployment pipeline.

const baseImageSchema = z.string().regex(/^[a-z0-9][a-z0-9._/:@-]{0,254}$/, "must be an image reference");
const proxyListenSchema = z
  .string()
  .regex(/^[0-9a-zA-Z.:[\]]*:\d{1,5}(,[0-9a-zA-Z.:[\]]*:\d{1,5})*$/, "must be comma-separated [host]:port addresses")
  .transform((v) => v.split(","));
const runscNetworkSchema = z.enum(["host", "sandbox"], { message: "must be host or sandbox" });
const queuePrefixSchema = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1-64 letters, digits, - or _");
const keepReleasesSchema = z.coerce.number({ message: "must be a number" }).int().min(1).max(100);

const pythonVersionSchema = z.string().regex(/^3\.\d{1,2}$/, "must be a Python version like 3.14");
const pythonImagesSchema = z
  .string()
  .transform((v) => v.split(",").map((pair) => pair.trim().split("=")))
  .pipe(
    z
      .array(z.tuple([pythonVersionSchema, baseImageSchema]), {
        message: "must be comma-separated VERSION=IMAGE pairs, e.g. 3.13=localhost/tussilago-python:3.13",
      })
      .min(1),
  )
  .transform((pairs) => Object.fromEntries(pairs));

/**
 * TUSSILAGO_PYTHON_IMAGES replaces the whole version → image table; TUSSILAGO_BASE_IMAGE (the older, one-image
 * setting) still names the default version's image.
 */
function loadPythonImages(env: Env): Pick<PipelineConfig, "baseImage" | "pythonImages" | "defaultPython"> {
  const images = parseWith(pythonImagesSchema, env, "TUSSILAGO_PYTHON_IMAGES", { ...DEFAULT_PYTHON_IMAGES });
  const defaultPython = parseWith(pythonVersionSchema, env, "TUSSILAGO_PYTHON_DEFAULT", DEFAULT_PYTHON);
  const override = parseWith(baseImageSchema.optional(), env, "TUSSILAGO_BASE_IMAGE", undefined);
  if (override !== undefined) images[defaultPython] = override;
  const baseImage = images[defaultPython];
  if (baseImage === undefined) {
    throw new ConfigError(
      "TUSSILAGO_PYTHON_DEFAULT",
      `Python ${defaultPython} has no image in TUSSILAGO_PYTHON_IMAGES (versions: ${Object.keys(images).join(", ")})`,
    );
  }
  return { baseImage, pythonImages: images, defaultPython };
}

/** The host's CA store (Debian's ca-certificates package). */
export const HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/**
 * Builds trust what the host trusts: by default the host's CA store is mounted into them, so a corporate proxy that
 * intercepts TLS (and that the host already trusts) does not make every `uv sync` with dependencies fail with
 * "invalid peer certificate". A path names another bundle; `none` mounts nothing.
 */
function loadBuildCaBundle(env: Env): string | undefined {
  if (opt(env, "TUSSILAGO_BUILD_CA_BUNDLE") === "none") return undefined;
  const fallback = existsSync(HOST_CA_BUNDLE) ? HOST_CA_BUNDLE : undefined;
  return parseWith(absolutePath.optional(), env, "TUSSILAGO_BUILD_CA_BUNDLE", fallback);
}

function loadPipeline(env: Env): PipelineConfig {
  return {
    ...loadPythonImages(env),
    buildCaBundle: loadBuildCaBundle(env),
    proxyListen: parseWith(proxyListenSchema, env, "TUSSILAGO_PROXY_LISTEN", [":8080"]),
    gitAllowFileUrls: parseFlag(env, "TUSSILAGO_GIT_ALLOW_FILE_URLS"),
    runscNetwork: parseWith(runscNetworkSchema, env, "TUSSILAGO_RUNSC_NETWORK", "host"),
    queuePrefix: parseWith(queuePrefixSchema, env, "TUSSILAGO_QUEUE_PREFIX", "tussilago"),
    drainGraceMs: parseWith(millisSchema(0, 600_000), env, "TUSSILAGO_DRAIN_GRACE_MS", 10_000),
    reconcileOnStart:
      opt(env, "TUSSILAGO_RECONCILE_ON_START") === undefined || parseFlag(env, "TUSSILAGO_RECONCILE_ON_START"),
    reconcileIntervalMs: parseWith(millisSchema(0, 86_400_000), env, "TUSSILAGO_RECONCILE_INTERVAL_MS", 30_000),
    keepReleases: parseWith(keepReleasesSchema, env, "TUSSILAGO_KEEP_RELEASES", 5),
    tenantQuota: loadTenantQuota(env),
    loadBalancing: parseWith(loadBalancingSchema, env, "TUSSILAGO_PROXY_LB_POLICY", "round_robin"),
  };
}

const quotaSchema = (max: number) => z.coerce.number({ message: "must be a number" }).int().min(1).max(max);
const loadBalancingSchema = z.enum(["round_robin", "least_conn"], { message: "must be round_robin or least_conn" });

/** Also read by the CLI on the bot's host (src/cli/env.ts): `tussilago scale` checks the same caps. */
export function loadTenantQuota(env: Env): TenantQuotaConfig {
  return {
    maxMemoryMb: parseWith(quotaSchema(16 * 1024 * 1024), env, "TUSSILAGO_TENANT_MAX_MEMORY_MB", undefined),
    maxContainers: parseWith(quotaSchema(100_000), env, "TUSSILAGO_TENANT_MAX_CONTAINERS", undefined),
  };
}

/**
 * GITHUB_TOKEN (fine-grained token) or GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY / GITHUB_APP_PRIVATE_KEY_PATH (a
 * GitHub App; installation tokens are minted per repository at run time). Error messages never echo a value.
 */
function loadGithubAuth(env: Env): GithubAuthConfig | undefined {
  const token = opt(env, "GITHUB_TOKEN");
  const appId = opt(env, "GITHUB_APP_ID");
  const inlineKey = opt(env, "GITHUB_APP_PRIVATE_KEY");
  const keyPath = opt(env, "GITHUB_APP_PRIVATE_KEY_PATH");
  const anyApp = appId !== undefined || inlineKey !== undefined || keyPath !== undefined;
  if (token !== undefined && anyApp) {
    throw new ConfigError("GITHUB_TOKEN", "set either GITHUB_TOKEN or the GITHUB_APP_* variables, not both");
  }
  if (token !== undefined) {
    if (/\s/.test(token)) throw new ConfigError("GITHUB_TOKEN", "must not contain whitespace");
    return { kind: "token", token };
  }
  if (!anyApp) return undefined;
  if (appId === undefined) throw new ConfigError("GITHUB_APP_ID", "is required when a GitHub App private key is set");
  if (!/^\d{1,20}$/.test(appId)) throw new ConfigError("GITHUB_APP_ID", "must be the numeric App ID");
  if (inlineKey !== undefined && keyPath !== undefined) {
    throw new ConfigError(
      "GITHUB_APP_PRIVATE_KEY",
      "set GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_PATH, not both",
    );
  }
  let pem: string;
  let source: string;
  if (keyPath !== undefined) {
    source = "GITHUB_APP_PRIVATE_KEY_PATH";
    if (!keyPath.startsWith("/")) throw new ConfigError(source, "must be an absolute path");
    try {
      pem = readFileSync(keyPath, "utf8");
    } catch {
      throw new ConfigError(source, "cannot be read");
    }
  } else if (inlineKey !== undefined) {
    source = "GITHUB_APP_PRIVATE_KEY";
    // Env files often carry the PEM on one line with literal "\n".
    pem = inlineKey.replaceAll("\\n", "\n");
  } else {
    throw new ConfigError(
      "GITHUB_APP_PRIVATE_KEY",
      "is required when GITHUB_APP_ID is set (or GITHUB_APP_PRIVATE_KEY_PATH)",
    );
  }
  try {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== "rsa") throw new Error("not RSA");
  } catch {
    throw new ConfigError(source, "must be the App's RSA private key in PEM form");
  }
  return { kind: "app", appId, privateKeyPem: pem };
}

/** Flags are "1"/"true"/"yes" or "0"/"false"/"no"; z.coerce.boolean() would read "false" as true. */
export function parseFlag(env: Env, name: string): boolean {
  const raw = opt(env, name)?.toLowerCase();
  if (raw === undefined) return false;
  if (["1", "true", "yes"].includes(raw)) return true;
  if (["0", "false", "no"].includes(raw)) return false;
  throw new ConfigError(name, "must be 1/true/yes or 0/false/no");
}

const LOOPBACK_NAMES = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

function endpointOf(url: string): string {
  const u = new URL(url);
  const host = LOOPBACK_NAMES.has(u.hostname) ? "loopback" : u.hostname;
  return `${host}:${u.port || "6379"}`;
}

/**
 * Running apps may open connections to the tenant Redis (src/infra/app-services.ts), so it must never be the bot's
 * own Redis, which holds the queues: a tenant could then read or forge jobs.
 */
function assertTenantRedisIsNotOurs(config: Config): void {
  const tenant = config.tenantStores.redisUrl;
  if (tenant === undefined || config.redisUrl === undefined) return;
  if (endpointOf(tenant) === endpointOf(config.redisUrl)) {
    throw new ConfigError(
      "TUSSILAGO_TENANT_REDIS_URL",
      "must not be the bot's own Redis (REDIS_URL): running apps may connect to the tenant Redis",
    );
  }
}
