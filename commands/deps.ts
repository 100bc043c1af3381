import type { Db } from "../src/db/client.ts";
import type { SecretBox } from "../src/domain/crypto.ts";
import type { TenantQuota } from "../src/domain/tenant-quota.ts";
import type { Logger } from "../src/log.ts";
import type { ProvisionQueue } from "../src/pipeline/provision-worker.ts";
import type { JobQueue } from "../src/pipeline/queues.ts";
import type { DbCommandDeps } from "./db.ts";
import type { LogsQueue } from "./logs-job.ts";
import type { RunQueue } from "./run-job.ts";

/** Shared by the CLI and Slack: validate, record, supersede, enqueue. Never runs git or podman itself. */
export interface CommandDeps {
  db: Db;
  queue: JobQueue;
  log: Logger;
}

/** What the chat commands need: the CLI's deps plus the secret box and a clock (tests pass a fake one). */
export interface ChatOpsDeps extends CommandDeps {
  secrets: SecretBox;
  now: () => number;
  /** Tenant database jobs (`db create|rotate|drop`); without it those answer that they are not configured. */
  provisionQueue?: ProvisionQueue | undefined;
  /** Which tenant stores this bot provisions, to refuse an unconfigured kind before enqueueing. */
  tenantStores?: DbCommandDeps["stores"];
  /** Log reads (`logs`), answered later through the command's response_url; without it `logs` says so. */
  logsQueue?: LogsQueue | undefined;
  /** One-off commands (`run`), answered later through the command's response_url; without it `run` says so. */
  runQueue?: RunQueue | undefined;
  /** The tenant-wide cap `scale` checks (TUSSILAGO_TENANT_MAX_*); unset → none. */
  tenantQuota?: TenantQuota | undefined;
}
