import type { AppSummary } from "../../commands/apps.ts";
import type { CancelResult } from "../../commands/cancel.ts";
import type { DeployResult } from "../../commands/deploy.ts";
import type { AppReleases } from "../../commands/releases.ts";
import type { FormationView, ScaleResult, ScaleStatus } from "../../commands/scale.ts";
import type { AppStatus } from "../../commands/status.ts";
import type { AppView } from "../domain/apps.ts";
import type { AuditView } from "../domain/audit.ts";
import type { DeploymentView } from "../domain/deployments.ts";
import type { CliCommand } from "./args.ts";
import { auditJsonLines, formatAudit } from "./audit.ts";
import { CliEnvError } from "./env-error.ts";
import { policyNote, readEnvFile } from "./env-run-execute.ts";
import { EXIT } from "./exit-codes.ts";
import { followToExit } from "./follow.ts";
import {
  formatAppList,
  formatCancel,
  formatCreatedApp,
  formatEnqueued,
  formatLogs,
  formatReleases,
  formatStatus,
} from "./format.ts";
import { json, type Output, table } from "./output.ts";
import type { ApiClient } from "./remote.ts";

export interface RemoteOptions {
  output: Output;
  onInterrupt: (handler: () => void) => () => void;
  now?: (() => number) | undefined;
  /** Between polls while following; the API is a network away, so less often than the local 300 ms. */
  followIntervalMs?: number | undefined;
}

type EnvChange = {
  app: string;
  keys: string[];
  missing?: string[];
  gatedInSlack: boolean;
  restart: DeployResult | null;
};

/**
 * The CLI's commands over the operator API (docs/api.md): the same command line, the same output and exit codes as
 * on the bot's host; the bot runs the same command functions and audits them as the token's operator (`api:<name>`).
 * Commands that need the host itself (db, users, run, reconcile, doctor, tokens, …) are refused here.
 */
export async function executeRemote(command: CliCommand, api: ApiClient, options: RemoteOptions): Promise<number> {
  const { output } = options;
  switch (command.kind) {
    case "scale": {
      const { executeScale } = await import("./scale.ts");
      return executeScale(
        command,
        {
          show: (app) => api.get<FormationView>(`/apps/${app}/scale`),
          request: (app, args) => api.post<ScaleResult>(`/apps/${app}/scale`, { counts: args }),
          status: (app, request) => api.get<ScaleStatus>(`/apps/${app}/scale/${request}`),
        },
        { output, onInterrupt: options.onInterrupt, now: options.now, intervalMs: options.followIntervalMs },
      );
    }
    case "apps-list": {
      const { apps } = await api.get<{ apps: AppSummary[] }>("/apps");
      output.out(command.json ? json(apps) : formatAppList(apps));
      return EXIT.ok;
    }
    case "apps-create": {
      const { app } = await api.post<{ app: AppView & { webhookSecret?: string; challenge?: string } }>(
        "/apps",
        withoutUndefined(command.input),
      );
      output.out(formatCreatedApp(app));
      return EXIT.ok;
    }
    case "status": {
      const status = await api.get<AppStatus>(`/apps/${command.app}`);
      output.out(command.json ? json(status) : formatStatus(status));
      return EXIT.ok;
    }
    case "releases": {
      const releases = await api.get<AppReleases>(`/apps/${command.app}/releases`);
      output.out(
        command.json ? json({ app: releases.app.slug, releases: releases.releases }) : formatReleases(releases),
      );
      return EXIT.ok;
    }
    case "logs": {
      const logs = await api.get<{ app: string; release: string; releaseUuid: string; log: string }>(
        `/apps/${command.app}/logs`,
        {
          lines: String(command.lines),
          ...(command.process === undefined ? {} : { process: command.process }),
          ...(command.replica === undefined ? {} : { replica: String(command.replica) }),
        },
      );
      output.out(command.json ? json(logs) : formatLogs(logs.log));
      return EXIT.ok;
    }
    case "deploy":
    case "rollback": {
      const result =
        command.kind === "deploy"
          ? await api.post<DeployResult>(`/apps/${command.app}/deploy`, withoutUndefined({ ref: command.ref }))
          : await api.post<DeployResult>(
              `/apps/${command.app}/rollback`,
              withoutUndefined({ release: command.release, withRelease: command.withRelease }),
            );
      output.out(formatEnqueued(result, command.app));
      if (!command.follow) return EXIT.ok;
      return follow(api, result, command.app, command.timeoutMs, options);
    }
    case "cancel": {
      const path = /^[0-9a-f-]{36}$/.test(command.target)
        ? `/deployments/${command.target}/cancel`
        : `/apps/${command.target}/cancel`;
      const result = await api.post<CancelResult>(path, {});
      output.out(formatCancel(result));
      const running = result.outcomes.filter((o) => o.kind === "requested").map((o) => o.deployment.uuid);
      if (!command.follow || running.length === 0) return EXIT.ok;
      let code: number = EXIT.ok;
      for (const uuid of running) {
        const deployment = { deployment: { uuid } as DeploymentView, superseded: [] };
        const exit = await follow(api, deployment, result.app.slug, command.timeoutMs, options);
        if (exit === EXIT.interrupted) return exit;
        // Cancelled is what was asked for: that is success here, unlike after a deploy.
        if (exit !== EXIT.superseded) code = EXIT.error;
      }
      return code;
    }
    case "env-list": {
      const { app, vars } = await api.get<{ app: string; vars: Array<{ key: string; updatedAt: Date }> }>(
        `/apps/${command.app}/env`,
      );
      if (command.json) output.out(json({ app, vars }));
      else if (vars.length === 0) output.out(`${app} has no env vars\n`);
      else output.out(`${table([["KEY", "UPDATED"], ...vars.map((v) => [v.key, v.updatedAt.toISOString()])])}\n`);
      return EXIT.ok;
    }
    case "env-set":
    case "env-unset":
      return envChange(command, api, options);
    case "audit": {
      const since = command.sinceMs === undefined ? undefined : `${Math.round(command.sinceMs / 1_000)}s`;
      const { events } = await api.get<{ events: AuditView[] }>("/audit", {
        app: command.app,
        since,
        limit: String(command.limit),
      });
      if (command.json) output.out(auditJsonLines(events));
      else if (events.length === 0) output.out(`no audit events${command.app ? ` for ${command.app}` : ""}\n`);
      else {
        output.out(formatAudit(events));
        if (events.length === command.limit) output.err(`showing the newest ${command.limit}; see more with --limit\n`);
      }
      return EXIT.ok;
    }
    default:
      throw new CliEnvError(
        `${command.kind.replace("-", " ")} is not available over the operator API; run it on the bot's host (without TUSSILAGO_API_URL)`,
      );
  }
}

async function envChange(
  command: Extract<CliCommand, { kind: "env-set" | "env-unset" }>,
  api: ApiClient,
  options: RemoteOptions,
): Promise<number> {
  const { output } = options;
  let result: EnvChange;
  if (command.kind === "env-set") {
    const fromFile = command.fromFile === undefined ? [] : await readEnvFile(command.fromFile);
    result = await api.post<EnvChange>(`/apps/${command.app}/env`, {
      vars: [...command.pairs, ...fromFile].map((v) => ({ key: v.key, value: v.value, source: v.source })),
      restart: command.restart,
    });
    output.out(`set ${result.keys.join(", ")} on ${result.app} (values not shown)\n`);
  } else {
    result = await api.post<EnvChange>(`/apps/${command.app}/env/unset`, {
      keys: command.keys,
      restart: command.restart,
    });
    const missing = result.missing ?? [];
    const removed = result.keys.filter((k) => !missing.includes(k));
    output.out(
      `${removed.length > 0 ? `unset ${removed.join(", ")} on ${result.app}` : `nothing to unset on ${result.app}`}` +
        `${missing.length > 0 ? ` (not set: ${missing.join(", ")})` : ""}\n`,
    );
  }
  if (result.gatedInSlack) output.err(policyNote(result.app, "api:<your token's operator>"));
  if (result.restart === null) {
    output.out(`takes effect on ${result.app}'s next deploy; --restart applies it now\n`);
    return EXIT.ok;
  }
  output.out(formatEnqueued(result.restart, result.app));
  if (!command.follow) return EXIT.ok;
  return follow(api, result.restart, result.app, command.timeoutMs, options);
}

function follow(
  api: ApiClient,
  result: DeployResult,
  app: string,
  timeoutMs: number,
  options: RemoteOptions,
): Promise<number> {
  const uuid = result.deployment.uuid;
  const poll = async () => (await api.get<{ deployment: DeploymentView }>(`/deployments/${uuid}`)).deployment;
  return followToExit({ uuid, app, poll }, timeoutMs, {
    output: options.output,
    onInterrupt: options.onInterrupt,
    now: options.now,
    intervalMs: options.followIntervalMs ?? 1_000,
  });
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
