import { z } from "zod";
import type { Env } from "../config.ts";
import { tenantRedisPublicUrl } from "../domain/tenant-databases.ts";
import type { StoreKind } from "./admin-args.ts";
import { CliEnvError } from "./env-error.ts";

/**
 * The secrets only `db show` and `db reveal` need, read when such a command runs: every other command works
 * without them. Same variables and rules as loadConfig (src/config.ts), so one env file serves the bot and the CLI.
 */

export type TenantStoreEnv =
  | { kind: "postgres"; adminUrl: string; publicHost: string; publicPort: number }
  | { kind: "redis"; url: string; publicUrl: string };

const pgUrl = z
  .string()
  .refine((v) => URL.canParse(v) && /^postgres(ql)?:$/.test(new URL(v).protocol), "must be a postgres:// URL");
const host = z.string().regex(/^[A-Za-z0-9.-]{1,253}$/, "must be a host name or IPv4 address");
const port = z
  .string()
  .regex(/^\d{1,5}$/, "must be a number")
  .transform(Number)
  .pipe(z.number().max(65535, "must be between 0 and 65535"));
const redisUrl = z
  .string()
  .refine((v) => URL.canParse(v) && /^rediss?:$/.test(new URL(v).protocol), "must be a redis:// or rediss:// URL");

function value(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw.trim() === "" ? undefined : raw;
}

function parse<T>(env: Env, name: string, schema: z.ZodType<T, string>, purpose: string): T;
function parse<T>(env: Env, name: string, schema: z.ZodType<T, string>): T | undefined;
function parse<T>(env: Env, name: string, schema: z.ZodType<T, string>, purpose?: string): T | undefined {
  const raw = value(env, name);
  if (raw === undefined) {
    if (purpose === undefined) return undefined;
    throw new CliEnvError(`${name} is required for ${purpose}`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new CliEnvError(`${name}: ${parsed.error.issues[0]?.message ?? "invalid value"}`);
  return parsed.data;
}

export function secretKeyFrom(env: Env, command: string): string {
  const key = parse(
    env,
    "TUSSILAGO_SECRET_KEY",
    z.string(),
    `${command} (the bot's key: it decrypts stored credentials)`,
  );
  if (key.length < 32)
    throw new CliEnvError(`TUSSILAGO_SECRET_KEY: must be at least 32 characters (got ${key.length})`);
  return key;
}

export function tenantStoreFrom(env: Env, kind: StoreKind, command: string): TenantStoreEnv {
  const purpose = `${command} --kind ${kind}`;
  if (kind === "postgres") {
    const adminUrl = parse(env, "TUSSILAGO_PG_ADMIN_URL", pgUrl, purpose);
    const admin = new URL(adminUrl);
    return {
      kind,
      adminUrl,
      // DATABASE_URL names PgBouncer when it fronts the cluster; the admin URL may go around it.
      publicHost: parse(env, "TUSSILAGO_PG_PUBLIC_HOST", host) ?? admin.hostname,
      publicPort: parse(env, "TUSSILAGO_PG_PUBLIC_PORT", port) ?? Number(admin.port || 5432),
    };
  }
  const url = parse(env, "TUSSILAGO_TENANT_REDIS_URL", redisUrl, purpose);
  const publicUrl = tenantRedisPublicUrl(
    url,
    parse(env, "TUSSILAGO_TENANT_REDIS_PUBLIC_HOST", host),
    parse(env, "TUSSILAGO_TENANT_REDIS_PUBLIC_PORT", port),
  );
  return { kind, url, publicUrl };
}
