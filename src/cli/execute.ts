import { listAppsCommand } from "../../commands/apps.ts";
import { CLI_CANCELLER, cancelCommand } from "../../commands/cancel.ts";
import type { DeployResult } from "../../commands/deploy.ts";
import { logsCommand } from "../../commands/logs.ts";
import { operatorCreateApp, operatorDeploy, operatorRollback } from "../../commands/operator.ts";
import { releasesCommand } from "../../commands/releases.ts";
import { processStates, statusCommand } from "../../commands/status.ts";
import type { Env } from "../config.ts";
import type { NewApp } from "../domain/apps.ts";
import { getDeployment } from "../domain/deployments.ts";
import type { Logger } from "../log.ts";
import { QUEUE_NAMES } from "../pipeline/queues.ts";
import { executeAdmin } from "./admin-execute.ts";
import type { CliCommand, CreateAppArgs } from "./args.ts";
import { executeAudit } from "./audit.ts";
import { formatElapsed } from "./duration.ts";
import { EXIT } from "./exit-codes.ts";
import { followDeployment, followToExit } from "./follow.ts";
import {
  formatAppList,
  formatCancel,
  formatCreatedApp,
  formatEnqueued,
  formatLogs,
  formatReleases,
  formatStatus,
} from "./format.ts";
import { onSigint } from "./interrupt.ts";
import { json, type Output } from "./output.ts";
import { summaryLine } from "./progress.ts";
import type { CliResources } from "./resources.ts";

export interface ExecuteOptions {
  output: Output;
  /** The process environment: `run` reads the bot's whole configuration from it (src/cli/run-engine.ts). */
  env?: Env | undefined;
  /** Registers a Ctrl-C handler while following; returns its removal. Defaults to SIGINT on this process. */
  onInterrupt?: ((handler: () => void) => () => void) | undefined;
  now?: (() => number) | undefined;
}

/** Audit rows of CLI actions name the CLI: whoever runs it on the bot's host owns the data directory. */
const CLI_ACTOR = "cli";

function toNewApp(input: CreateAppArgs): NewApp {
  const app: NewApp = {
    slug: input.slug,
    gitUrl: input.gitUrl,
    domain: input.domain,
    allowEgress: input.allowEgress,
    gitSubmodules: input.gitSubmodules,
    gitLfs: input.gitLfs,
  };
  if (input.branch !== undefined) app.branch = input.branch;
  if (input.tenant !== undefined) app.tenant = input.tenant;
  if (input.githubRepo !== undefined) app.githubRepo = input.githubRepo;
  if (input.memoryMb !== undefined) app.memoryMb = input.memoryMb;
  if (input.cpus !== undefined) app.cpus = input.cpus;
  if (input.healthPath !== undefined) app.healthPath = input.healthPath;
  return app;
}

/** The secret box only when the new app links GitHub (its webhook secret is sealed); else no TUSSILAGO_SECRET_KEY needed. */
function appSecrets(input: CreateAppArgs, res: CliResources) {
  return input.githubRepo === undefined ? undefined : res.secrets("apps create --github");
}

export async function execute(
  command: Exclude<CliCommand, { kind: "help" | "doctor" }>,
  res: CliResources,
  log: Logger,
  options: ExecuteOptions,
): Promise<number> {
  const { output } = options;
  switch (command.kind) {
    case "apps-create":
      output.out(
        formatCreatedApp(
          operatorCreateApp(
            {
              db: res.db(),
              log,
              secrets: appSecrets(command.input, res),
              allowFileUrls: res.gitAllowFileUrls,
            },
            toNewApp(command.input),
            { actorLabel: CLI_ACTOR },
          ),
        ),
      );
      return EXIT.ok;
    case "apps-list": {
      const apps = listAppsCommand({ db: res.db() });
      output.out(command.json ? json(apps) : formatAppList(apps));
      return EXIT.ok;
    }
    case "status": {
      const status = statusCommand({ db: res.db() }, { app: command.app });
      // What runs, per process type; the database alone still answers when podman does not.
      const states = await processStates({ engine: await res.engine() }, status).catch((err: unknown) => {
        log.warn({ err }, "cannot list the app's containers; status shows the wanted counts only");
        return undefined;
      });
      output.out(command.json ? json({ ...status, containers: states ?? null }) : formatStatus(status, states));
      return EXIT.ok;
    }
    case "releases": {
      const releases = releasesCommand({ db: res.db() }, { app: command.app });
      output.out(
        command.json ? json({ app: releases.app.slug, releases: releases.releases }) : formatReleases(releases),
      );
      return EXIT.ok;
    }
    case "reconcile": {
      // The bot's reconcile worker runs it (one pass at a time); the CLI only asks for a pass now.
      const queue = await res.queue();
      const jobId = `reconcile-cli-${Date.now()}`;
      await queue.enqueue(QUEUE_NAMES.reconcile, { reason: "cli" }, jobId);
      output.out(`reconcile requested (${jobId}); the bot logs what it fixes`);
      return EXIT.ok;
    }
    case "logs": {
      const logs = await logsCommand({ db: res.db(), engine: await res.engine() }, command);
      const body = {
        app: logs.app.slug,
        release: `v${logs.release.version}`,
        releaseUuid: logs.release.uuid,
        process: logs.process,
        replica: logs.replica,
      };
      output.out(command.json ? json({ ...body, log: logs.text }) : formatLogs(logs.text));
      return EXIT.ok;
    }
    case "deploy":
    case "rollback": {
      // Redis first: a deployment row whose job cannot be enqueued would sit "queued" until a reconcile.
      const queue = await res.queue();
      const deps = { db: res.db(), queue, log };
      const result =
        command.kind === "deploy"
          ? await operatorDeploy(deps, { app: command.app, ref: command.ref, actorLabel: CLI_ACTOR })
          : await operatorRollback(deps, {
              app: command.app,
              release: command.release,
              withRelease: command.withRelease,
              actorLabel: CLI_ACTOR,
            });
      await res.closeQueue();
      output.out(formatEnqueued(result, command.app));
      if (!command.follow) return EXIT.ok;
      return follow(result, command.app, command.timeoutMs, res, options);
    }
    case "cancel": {
      const queue = await res.queue();
      const result = await cancelCommand(
        { db: res.db(), queue, log },
        { target: command.target, by: CLI_CANCELLER, actorLabel: "cli" },
      );
      await res.closeQueue();
      output.out(formatCancel(result));
      const running = result.outcomes.filter((o) => o.kind === "requested").map((o) => o.deployment.uuid);
      if (!command.follow || running.length === 0) return EXIT.ok;
      return followCancel(running, command.timeoutMs, res, options);
    }
    case "audit":
      return executeAudit(command, res, output, options.now);
    case "tokens-create":
    case "tokens-list":
    case "tokens-revoke": {
      const { executeTokens } = await import("./tokens.ts");
      return executeTokens(command, res, log, output);
    }
    case "scale": {
      const [{ operatorScale, scaleStatus, showFormation }, { loadTenantQuota }, { executeScale }] = await Promise.all([
        import("../../commands/scale.ts"),
        import("../config.ts"),
        import("./scale.ts"),
      ]);
      const tenantQuota = loadTenantQuota(options.env ?? {});
      const capped = tenantQuota.maxMemoryMb !== undefined || tenantQuota.maxContainers !== undefined;
      return executeScale(
        command,
        {
          show: (app) => showFormation({ db: res.db() }, { app }),
          request: async (app, args) =>
            operatorScale(
              {
                db: res.db(),
                queue: await res.queue(),
                log,
                tenantQuota,
                // Private Redis servers count against the quota; their REDIS_URLs are sealed.
                secrets: capped ? res.secrets("scale") : undefined,
              },
              { app, args, actorLabel: CLI_ACTOR },
            ),
          status: (app, request) => scaleStatus({ db: res.db() }, { app, request }),
        },
        { output, onInterrupt: options.onInterrupt ?? onSigint, now: options.now },
      );
    }
    case "env-set":
    case "env-unset":
    case "env-list":
    case "run": {
      const { executeEnvRun } = await import("./env-run-execute.ts");
      return executeEnvRun(command, res, log, {
        output,
        env: options.env ?? {},
        onInterrupt: options.onInterrupt ?? onSigint,
        follow: (result, app, timeoutMs) => follow(result, app, timeoutMs, res, options),
      });
    }
    default:
      return executeAdmin(command, res, log, output);
  }
}

function follow(
  result: DeployResult,
  app: string,
  timeoutMs: number,
  res: CliResources,
  options: ExecuteOptions,
): Promise<number> {
  const db = res.db();
  const uuid = result.deployment.uuid;
  return followToExit({ uuid, app, poll: () => getDeployment(db, uuid) }, timeoutMs, {
    output: options.output,
    onInterrupt: options.onInterrupt ?? onSigint,
    now: options.now,
  });
}

/** Follows each running deployment until it ends: cancelled (exit 0), or finished anyway past the route switch. */
async function followCancel(
  uuids: string[],
  timeoutMs: number,
  res: CliResources,
  options: ExecuteOptions,
): Promise<number> {
  const { output } = options;
  const now = options.now ?? Date.now;
  const controller = new AbortController();
  const off = (options.onInterrupt ?? onSigint)(() => controller.abort());
  let code: number = EXIT.ok;
  try {
    const db = res.db();
    for (const uuid of uuids) {
      const outcome = await followDeployment({
        poll: () => getDeployment(db, uuid),
        output,
        timeoutMs,
        signal: controller.signal,
        now,
      });
      if (outcome.kind === "interrupted") {
        output.err(`stopped following; the cancel of ${uuid} stands (check it with: tussilago status)\n`);
        return EXIT.interrupted;
      }
      if (outcome.kind === "timeout") {
        output.err(`error: deployment ${uuid} is still ${outcome.state.status} after ${formatElapsed(timeoutMs)}\n`);
        code = EXIT.error;
      } else if (outcome.state.status === "cancelled") {
        output.out(`${summaryLine(outcome.state, now())}\n`);
      } else {
        output.err(
          `error: deployment ${uuid} was past the route switch and could not be stopped: ${summaryLine(outcome.state, now())}\n`,
        );
        code = EXIT.error;
      }
    }
  } finally {
    off();
  }
  return code;
}
