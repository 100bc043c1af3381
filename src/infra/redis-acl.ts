import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "../log.ts";

/**
 * One Redis ACL user per app on the shared tenant Redis: keys and pub/sub channels limited to the app's prefix,
 * everything that reaches across tenants or the server itself denied.
 */

export interface RedisAcl {
  /** Creates the user or resets it to exactly these rules and password (one atomic `ACL SETUSER`). */
  ensureUser(name: string, password: string, keyPrefix: string): Promise<void>;
  rotatePassword(name: string, password: string): Promise<void>;
  /** Deletes the user and closes its connections; a missing user is fine. */
  deleteUser(name: string): Promise<void>;
  userExists(name: string): Promise<boolean>;
}

/** ACL user names and prefixes we manage; anything else is refused, so we never rewrite `default` or an operator. */
export const TENANT_REDIS_USER = /^app-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const TENANT_REDIS_PREFIX = /^app:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Denied on top of `-@dangerous -@admin` (which covers FLUSHALL, FLUSHDB, CONFIG, DEBUG, KEYS, MODULE, ACL,
 * SHUTDOWN, MONITOR, CLIENT LIST/KILL, INFO, SORT, SWAPDB …): scripts can loop and block the whole shared server;
 * SCAN, RANDOMKEY, DBSIZE and PUBSUB CHANNELS take no key argument, so key patterns do not filter them and they
 * would reveal other tenants' key and channel names; MEMORY DOCTOR/STATS describe the server.
 */
export const DENIED_COMMANDS = [
  "-@dangerous",
  "-@admin",
  "-@scripting",
  "-flushall",
  "-flushdb",
  "-config",
  "-debug",
  "-keys",
  "-script",
  "-module",
  "-acl",
  "-shutdown",
  "-scan",
  "-randomkey",
  "-dbsize",
  "-pubsub",
  "-memory",
  "-swapdb",
  "-migrate",
] as const;

/** Rules for one tenant user, after `reset` (which also clears passwords, keys and channels). */
export function aclRules(password: string, keyPrefix: string): string[] {
  return [
    "reset",
    "on",
    // `#<sha256>` instead of `>plaintext`: the password never appears in MONITOR, SLOWLOG or the ACL log.
    `#${sha256Hex(password)}`,
    `~${keyPrefix}:*`,
    `&${keyPrefix}:*`,
    "+@all",
    ...DENIED_COMMANDS,
  ];
}

function sha256Hex(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}

function checkUser(name: string): void {
  if (!TENANT_REDIS_USER.test(name)) throw new Error(`refusing Redis ACL user ${JSON.stringify(name)}`);
}

export class IoRedisAcl implements RedisAcl {
  readonly #redis: Redis;
  readonly #log: Logger;

  /** `redis` authenticates as a user allowed to run ACL SETUSER/DELUSER/GETUSER (the default user, or an admin). */
  constructor(redis: Redis, log: Logger) {
    this.#redis = redis;
    this.#log = log;
  }

  async ensureUser(name: string, password: string, keyPrefix: string): Promise<void> {
    checkUser(name);
    if (!TENANT_REDIS_PREFIX.test(keyPrefix)) throw new Error(`refusing Redis key prefix ${JSON.stringify(keyPrefix)}`);
    await this.#redis.call("ACL", "SETUSER", name, ...aclRules(password, keyPrefix));
    this.#log.info({ redisUser: name, keyPrefix }, "redis tenant ACL user ensured");
  }

  async rotatePassword(name: string, password: string): Promise<void> {
    checkUser(name);
    if (!(await this.userExists(name))) throw new Error(`redis ACL user ${name} does not exist`);
    // Existing connections stay authenticated; new ones need the new password.
    await this.#redis.call("ACL", "SETUSER", name, "resetpass", `#${sha256Hex(password)}`);
    this.#log.info({ redisUser: name }, "redis tenant password rotated");
  }

  async deleteUser(name: string): Promise<void> {
    checkUser(name);
    // ACL DELUSER also disconnects every client authenticated as that user.
    const removed = await this.#redis.call("ACL", "DELUSER", name);
    this.#log.info({ redisUser: name, removed }, "redis tenant ACL user deleted");
  }

  async userExists(name: string): Promise<boolean> {
    checkUser(name);
    const users = (await this.#redis.call("ACL", "USERS")) as string[];
    return users.includes(name);
  }
}
