import type { LogsQueue } from "../commands/logs-job.ts";
import type { Db } from "../src/db/client.ts";
import { getAppBySlug } from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import { type Actor, authorize } from "../src/domain/users.ts";
import type { SlackApi } from "../src/infra/slack-api.ts";
import type { Logger } from "../src/log.ts";

/**
 * `/tussilago logs <app> [lines] [process[.n]]`: authorizes and enqueues; the logs job (commands/logs-job.ts) reads
 * the tail with podman and answers through the command's response_url, so the handler acks at once.
 */

export interface SlackLogsDeps {
  db: Db;
  logsQueue?: LogsQueue | undefined;
  slack: Pick<SlackApi, "acceptsResponseUrl">;
}

export interface SlackLogsContext {
  actor: Actor;
  correlationId: string;
  /** The command's response_url; Socket Mode and HTTP both carry one. */
  responseUrl: string | undefined;
  log: Logger;
}

export async function requestLogs(
  deps: SlackLogsDeps,
  cmd: { app: string; lines: number; process?: string; replica?: number },
  ctx: SlackLogsContext,
): Promise<{ text: string }> {
  const app = getAppBySlug(deps.db, cmd.app);
  authorize(deps.db, {
    actor: ctx.actor,
    correlationId: ctx.correlationId,
    app,
    needed: "viewer",
    action: "logs.read",
  });
  const source = cmd.process === undefined ? "" : `${cmd.process}.${cmd.replica ?? 1}`;
  const flags = cmd.process === undefined ? "" : ` --process ${cmd.process} --replica ${cmd.replica ?? 1}`;
  const cli = `\`tussilago logs ${app.slug}${flags} --lines ${cmd.lines}\``;
  if (!deps.logsQueue) {
    return { text: `Reading logs from Slack is not configured on this bot. Use the CLI: ${cli}` };
  }
  if (ctx.responseUrl === undefined || !deps.slack.acceptsResponseUrl(ctx.responseUrl)) {
    // Signed payloads always carry Slack's URL; without one there is nowhere to send the answer.
    ctx.log.warn({ hasUrl: ctx.responseUrl !== undefined }, "logs: no usable response_url in the command");
    return { text: `This command came without a Slack response URL, so the logs cannot be sent. Use the CLI: ${cli}` };
  }
  const jobId = await deps.logsQueue.enqueue({
    appUuid: app.uuid,
    lines: cmd.lines,
    ...(cmd.process === undefined ? {} : { process: cmd.process, replica: cmd.replica ?? 1 }),
    responseUrl: ctx.responseUrl,
    requester: ctx.actor.label,
    correlationId: ctx.correlationId,
  });
  recordAudit(deps.db, {
    action: "logs.read",
    outcome: "allowed",
    actor: ctx.actor,
    appUuid: app.uuid,
    details: { lines: cmd.lines, job: jobId, ...(source === "" ? {} : { container: source }) },
    correlationId: ctx.correlationId,
  });
  ctx.log.info({ appId: app.uuid, jobId, lines: cmd.lines }, "logs job enqueued");
  return { text: `Fetching the last ${cmd.lines} lines of *${app.slug}*${source === "" ? "" : ` ${source}`}…` };
}
