import { type Job, UnrecoverableError, type Worker } from "bullmq";
import { getAppByUuid } from "../src/domain/apps.ts";
import { listAuditEvents } from "../src/domain/audit.ts";
import { envSecretValues } from "../src/domain/env-vars.ts";
import { DomainError } from "../src/domain/errors.ts";
import { currentRelease } from "../src/domain/releases.ts";
import { escapeSlack, type SlackApi } from "../src/infra/slack-api.ts";
import { originOf } from "../src/infra/slack-response-url.ts";
import { maskSecrets, secretNeedles } from "../src/lib/mask.ts";
import type { OneOffDeps } from "../src/pipeline/one-off.ts";
import { QUEUE_NAMES, type QueueOf, type RunJobData } from "../src/pipeline/queues.ts";
import type { WorkerPool } from "../src/pipeline/worker-pool.ts";
import { stripControl } from "../src/reporters/slack-logs.ts";
import { runCommand } from "./run.ts";

/**
 * `/tussilago run`: a one-off command runs podman for as long as the command takes, which a Slack handler must not
 * wait for. The handler (or an approval) enqueues a job; this worker runs the command (commands/run.ts) and answers
 * the requester through the command's response_url with the end of the output: control characters stripped,
 * escaped for Slack, the app's env values masked, bounded.
 */

export type RunQueue = QueueOf<"run">;

export interface RunJobDeps extends OneOffDeps {
  slack: SlackApi;
}

/** Slack's runs get this long; longer work belongs to `tussilago run --timeout` or a worker process. */
export const SLACK_RUN_TIMEOUT_MS = 10 * 60_000;
/** Output beyond this kills the command (it is not a log store); only the tail is shown anyway. */
export const SLACK_RUN_MAX_OUTPUT_BYTES = 8 * 1024 * 1024;
/** What is kept in memory of the output while it runs: the message shows the end of it. */
const TAIL_CHARS = 64 * 1024;
export const SLACK_RUN_MAX_CHARS = 3_500;

export type RunJobOutcome = "ran" | "refused" | "failed";

/** The end of the output as one Slack message; whole lines from the end, within `maxChars`. */
export function formatRunForSlack(
  input: { app: string; version: number; command: readonly string[]; exitCode: number; ended: string; output: string },
  maxChars = SLACK_RUN_MAX_CHARS,
): string {
  const shown = escapeSlack(input.command.join(" ").slice(0, 200));
  const how =
    input.ended === "timeout"
      ? `was stopped after ${SLACK_RUN_TIMEOUT_MS / 60_000} minutes`
      : input.ended === "aborted"
        ? "was stopped"
        : `exited with ${input.exitCode}`;
  const header = `\`${shown}\` in *${input.app}* v${input.version} ${how}.`;
  const clean = stripControl(input.output).replace(/\n+$/, "");
  if (clean.trim() === "") return `${header} No output.`;
  const budget = maxChars - header.length - "\n```\n```\n(earlier output cut)".length;
  const body: string[] = [];
  let used = 0;
  const lines = clean.split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const escaped = escapeSlack(lines[i] as string);
    const cost = escaped.length + 1;
    if (used + cost > budget) break;
    body.unshift(escaped);
    used += cost;
  }
  const cut = body.length < lines.length ? "\n(earlier output cut)" : "";
  return `${header}\n\`\`\`\n${body.join("\n")}\n\`\`\`${cut}`;
}

/** A job that already started once (its worker died mid-run) must not run the command a second time. */
function alreadyStarted(deps: Pick<OneOffDeps, "db">, appSlug: string, jobId: string, now: number): boolean {
  const since = new Date(now - 24 * 3600_000);
  return listAuditEvents(deps.db, { appSlug, since, limit: 1_000 }).some(
    (e) => e.action === "run" && e.details.job === jobId,
  );
}

export async function runRunJob(deps: RunJobDeps, data: RunJobData, jobId: string): Promise<RunJobOutcome> {
  const log = deps.log.child({ appId: data.appUuid, correlationId: data.correlationId, jobId });
  if (!deps.slack.acceptsResponseUrl(data.responseUrl)) {
    log.warn({ origin: originOf(data.responseUrl) }, "run job refused: response_url is not a Slack URL");
    throw new UnrecoverableError("response_url is not a Slack URL");
  }
  let text: string;
  let outcome: RunJobOutcome;
  try {
    const app = getAppByUuid(deps.db, data.appUuid);
    if (alreadyStarted(deps, app.slug, jobId, Date.now())) {
      throw new DomainError(
        409,
        "interrupted",
        "the run was interrupted (the bot restarted); it was not started again",
      );
    }
    const release = currentRelease(deps.db, app.uuid);
    if (release?.uuid !== data.releaseUuid) {
      throw new DomainError(409, "stale", `the current release of ${app.slug} changed since the request; ask again`);
    }
    let tail = "";
    const result = await runCommand(deps, {
      app: app.slug,
      command: data.command,
      timeoutMs: SLACK_RUN_TIMEOUT_MS,
      actorLabel: data.requester,
      correlationId: data.correlationId,
      auditDetails: { job: jobId },
      maxOutputBytes: SLACK_RUN_MAX_OUTPUT_BYTES,
      onOutput: (chunk) => {
        tail = (tail + chunk).slice(-TAIL_CHARS);
      },
    });
    // Whoever may run a command may read the env in effect, but Slack keeps messages: no value lands there verbatim.
    const masked = maskSecrets(tail, secretNeedles(envSecretValues(deps.db, deps.secrets, app.uuid)));
    text = formatRunForSlack({
      app: app.slug,
      version: release.version,
      command: data.command,
      exitCode: result.run.exitCode,
      ended: result.run.outcome,
      output: masked,
    });
    outcome = "ran";
  } catch (err) {
    if (err instanceof DomainError) {
      log.info({ code: err.code }, "run refused");
      text = escapeSlack(err.message);
      outcome = "refused";
    } else {
      log.error({ err }, "run failed");
      text = `Could not run the command (reference ${data.correlationId}).`;
      outcome = "failed";
    }
  }
  try {
    await deps.slack.respond(data.responseUrl, { text });
  } catch (err) {
    // Not retried (the job has one attempt): the command ran, and the audit has its exit code.
    log.warn({ code: err instanceof Error ? err.name : "unknown", outcome }, "could not deliver the run answer");
  }
  log.info({ outcome }, "run answered");
  return outcome;
}

export function registerRunWorker(pool: WorkerPool, deps: RunJobDeps): Worker<RunJobData, RunJobOutcome> {
  return pool.add<RunJobData, RunJobOutcome>(QUEUE_NAMES.run, async (job: Job<RunJobData>) => {
    deps.log.info({ jobId: job.id, appId: job.data.appUuid }, "run job");
    return runRunJob(deps, job.data, job.id ?? "run-unknown");
  });
}
