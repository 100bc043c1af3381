import { type Job, UnrecoverableError, type Worker } from "bullmq";
import type { Db } from "../src/db/client.ts";
import { getAppByUuid } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import { DomainError } from "../src/domain/errors.ts";
import type { ContainerEngine } from "../src/infra/podman.ts";
import { escapeSlack, type SlackApi, SlackApiError } from "../src/infra/slack-api.ts";
import { originOf } from "../src/infra/slack-response-url.ts";
import type { Logger } from "../src/log.ts";
import { type LogsJobData, QUEUE_NAMES, type QueueOf } from "../src/pipeline/queues.ts";
import type { WorkerPool } from "../src/pipeline/worker-pool.ts";
import { formatLogsForSlack } from "../src/reporters/slack-logs.ts";
import { logsCommand } from "./logs.ts";

/**
 * `/tussilago logs`: reading logs runs podman, which a Slack request handler must not wait for. The command
 * enqueues a job; this worker reads the tail and answers the requester through the command's response_url.
 */

/** What the logs command needs: add a job (its id comes from the table), nothing else. */
export type LogsQueue = QueueOf<"logs">;

export interface LogsJobDeps {
  db: Db;
  engine: ContainerEngine;
  slack: SlackApi;
  log: Logger;
}

/** shown: the tail; refused: a DomainError (no release, container gone); failed: podman failed (a reference). */
export type LogsJobOutcome = "shown" | "refused" | "failed";

/**
 * Reads the tail, answers the requester, and audits the read (every attempt reads, so every attempt is audited).
 * Only a Slack outage is worth a retry (thrown); a refused URL or a Slack error word (`expired_url`…) throws
 * UnrecoverableError; everything else, podman failures included, ends in an answer to the user.
 */
export async function runLogsJob(deps: LogsJobDeps, data: LogsJobData): Promise<LogsJobOutcome> {
  const log = deps.log.child({ appId: data.appUuid, correlationId: data.correlationId });
  if (!deps.slack.acceptsResponseUrl(data.responseUrl)) {
    // Payloads are signature-checked, so this is a bug or an attack: do nothing a forged URL could exploit.
    log.warn({ origin: originOf(data.responseUrl) }, "logs job refused: response_url is not a Slack URL");
    recordAudit(deps.db, {
      action: "logs.read",
      outcome: "denied",
      actorLabel: data.requester,
      appUuid: data.appUuid,
      details: { lines: data.lines, code: "response_url_refused" },
      correlationId: data.correlationId,
    });
    throw new UnrecoverableError("response_url is not a Slack URL");
  }
  let text: string;
  let outcome: LogsJobOutcome;
  let details: Record<string, unknown> = { lines: data.lines };
  try {
    const app = getAppByUuid(deps.db, data.appUuid);
    const logs = await logsCommand(deps, {
      app: app.slug,
      lines: data.lines,
      process: data.process,
      replica: data.replica,
    });
    const reply = formatLogsForSlack({
      app: app.slug,
      version: logs.release.version,
      text: logs.text,
      requested: data.lines,
      source: { process: logs.process, replica: logs.replica },
    });
    text = reply.text;
    outcome = "shown";
    details = {
      ...details,
      release: `v${logs.release.version}`,
      container: `${logs.process}.${logs.replica}`,
      returned: reply.lines,
      shown: reply.shown,
    };
  } catch (err) {
    if (err instanceof DomainError) {
      // No release, container gone, app destroyed since: the user can act on these.
      log.info({ code: err.code }, "logs not available");
      text = escapeSlack(err.message);
      outcome = "refused";
      details = { ...details, code: err.code };
    } else {
      log.error({ err }, "could not read the logs");
      text = `Could not read the logs (reference ${data.correlationId}).`;
      outcome = "failed";
      details = { ...details, code: "engine" };
    }
  }
  let deliveryError: SlackApiError | Error | undefined;
  try {
    await deps.slack.respond(data.responseUrl, { text });
  } catch (err) {
    deliveryError = err instanceof Error ? err : new Error(String(err));
  }
  const delivery = deliveryError instanceof SlackApiError ? deliveryError.code : deliveryError ? "unknown" : "sent";
  recordAudit(deps.db, {
    action: "logs.read",
    outcome: outcome === "shown" && !deliveryError ? "succeeded" : "failed",
    actorLabel: data.requester,
    appUuid: data.appUuid,
    details: { ...details, delivery },
    correlationId: data.correlationId,
  });
  if (deliveryError) {
    // Only the code: the error of a fetch may quote the URL, which is the credential.
    log.warn({ code: delivery, outcome }, "could not deliver the logs answer");
    if (deliveryError instanceof SlackApiError && !deliveryError.retryable) {
      throw new UnrecoverableError(`Slack refused the answer: ${delivery}`);
    }
    throw new Error(`Slack answer failed: ${delivery}`);
  }
  log.info({ outcome }, "logs answered");
  return outcome;
}

export function registerLogsWorker(pool: WorkerPool, deps: LogsJobDeps): Worker<LogsJobData, LogsJobOutcome> {
  return pool.add<LogsJobData, LogsJobOutcome>(QUEUE_NAMES.logs, async (job: Job<LogsJobData>) => {
    deps.log.info({ jobId: job.id, appId: job.data.appUuid, attempt: job.attemptsMade + 1 }, "logs job");
    return runLogsJob(deps, job.data);
  });
}
