import { randomUUID } from "node:crypto";
import type { App, types } from "@slack/bolt";
import { z } from "zod";
import { approvalsCommand } from "../commands/approvals.ts";
import { listAppsCommand } from "../commands/apps.ts";
import { type CancelResult, cancelAsActor } from "../commands/cancel.ts";
import { deployAsActor } from "../commands/deploy.ts";
import type { ChatOpsDeps } from "../commands/deps.ts";
import { destroyCommand } from "../commands/destroy.ts";
import { envListCommand, envSetCommand, envUnsetCommand } from "../commands/env.ts";
import { helpMessage, SLASH_COMMAND, subcommandUsage, usageLine } from "../commands/help.ts";
import { lockCommand, unlockCommand } from "../commands/lock.ts";
import { parseLogSource } from "../commands/logs.ts";
import { releasesCommand } from "../commands/releases.ts";
import { restartCommand } from "../commands/restart.ts";
import { rollbackAsActor } from "../commands/rollback.ts";
import { describeChanges, describeFormation, scaleAsActor, showFormation } from "../commands/scale.ts";
import { describeProcesses, statusCommand } from "../commands/status.ts";
import { setApprovalMessage } from "../src/domain/approvals.ts";
import { getAppBySlug } from "../src/domain/apps.ts";
import { DomainError } from "../src/domain/errors.ts";
import { LockedError } from "../src/domain/locks.ts";
import { type Actor, authorize, ensureSlackUser, rolesOf } from "../src/domain/users.ts";
import { refSchema, slugSchema } from "../src/domain/validation.ts";
import { escapeSlack, type SlackApi } from "../src/infra/slack-api.ts";
import type { Logger } from "../src/log.ts";
import { QueueDelayedError } from "../src/pipeline/bounded-queue.ts";
import { linkDeploymentChannel } from "../src/reporters/slack-thread.ts";
import { approvalMessage } from "./slack-approval-message.ts";
import { type AuditSubcommand, parseAuditArgs, runAuditSubcommand } from "./slack-audit.ts";
import { type DbSubcommand, parseDbArgs, runDbSubcommand } from "./slack-db.ts";
import { type LinkSubcommand, parseLinkArgs, runLinkSubcommand } from "./slack-link.ts";
import { requestLogs } from "./slack-logs.ts";
import { type PolicySubcommand, parsePolicyArgs, runPolicySubcommand } from "./slack-policy.ts";
import { parseRunArgs, type RunSubcommand, requestRun } from "./slack-run.ts";

/** The database, queue and Web API client behind the chat commands; without them only `help` answers. */
export interface ChatOpsSlackDeps extends ChatOpsDeps {
  slack: SlackApi;
  /** How long a command may work before the ack goes out and the result follows via response_url. */
  ackBudgetMs?: number;
}

export interface SlackCommandDeps {
  logger: Logger;
  chatops?: ChatOpsSlackDeps | undefined;
}

const app = slugSchema;
const releaseRef = z.string().regex(/^(v?\d{1,9}|[0-9a-f-]{36})$/);
const envKeyValue = z.string().regex(/^[A-Z_][A-Z0-9_]{0,127}=/s);

export type ParsedCommand =
  | { kind: "help" }
  | { kind: "apps" }
  | { kind: "approvals" }
  | { kind: "deploy"; app: string; ref?: string | undefined }
  | { kind: "rollback"; app: string; release?: string | undefined }
  | { kind: "status" | "releases" | "restart" | "unlock" | "destroy" | "cancel" | "env-list"; app: string }
  | { kind: "logs"; app: string; lines: number; process?: string; replica?: number }
  | { kind: "env-set"; app: string; key: string; value: string }
  | { kind: "env-unset"; app: string; key: string }
  | { kind: "lock"; app: string; reason: string }
  /** `scale <app>` shows the formation; `scale <app> web=2 …` changes it (counts judged by parseScaleArgs). */
  | { kind: "scale"; app: string; args: string[] }
  | DbSubcommand
  | PolicySubcommand
  | LinkSubcommand
  | AuditSubcommand
  | RunSubcommand
  /** A known subcommand with malformed arguments: answered with its own usage line. */
  | { kind: "usage"; name: string }
  | { kind: "unknown" };

// Subcommand names are ours, never tenant data; anything outside this shape is unknown by definition.
const SUBCOMMAND = /^[a-z][a-z0-9-]{0,31}$/;

/** Slack HTML-escapes &, < and > in command text; env values and reasons are stored as the user typed them. */
function unescapeSlack(text: string): string {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

/** `text` is what the user typed after the slash command; it is never echoed back unescaped. */
export function parseCommandText(text: string): ParsedCommand {
  const words = text
    .trim()
    .split(/\s+/)
    .filter((w) => w !== "");
  const name = (words[0] ?? "help").toLowerCase();
  if (!SUBCOMMAND.test(name)) return { kind: "unknown" };
  const args = words.slice(1);
  const usage = { kind: "usage", name } as const;
  const ok = (schema: z.ZodType, value: string | undefined) => value !== undefined && schema.safeParse(value).success;
  const appOnly = (kind: "status" | "releases" | "restart" | "unlock" | "destroy" | "cancel"): ParsedCommand =>
    args.length === 1 && ok(app, args[0]) ? { kind, app: args[0] as string } : usage;
  switch (name) {
    case "help":
      return { kind: "help" };
    case "apps":
    case "approvals":
      return args.length === 0 ? { kind: name } : usage;
    case "deploy":
      if (args.length < 1 || args.length > 2 || !ok(app, args[0])) return usage;
      if (args[1] !== undefined && !ok(refSchema, args[1])) return usage;
      return { kind: "deploy", app: args[0] as string, ref: args[1] };
    case "rollback":
      if (args.length < 1 || args.length > 2 || !ok(app, args[0])) return usage;
      if (args[1] !== undefined && !ok(releaseRef, args[1])) return usage;
      return { kind: "rollback", app: args[0] as string, release: args[1] };
    case "status":
    case "releases":
    case "restart":
    case "unlock":
    case "destroy":
    case "cancel":
      return appOnly(name);
    case "logs": {
      // `logs <app> [lines] [process[.n]]`, the two optional words in either order.
      if (args.length < 1 || args.length > 3 || !ok(app, args[0])) return usage;
      let lines: number | undefined;
      let source: { process: string; replica: number } | undefined;
      for (const word of args.slice(1)) {
        const asSource = parseLogSource(word);
        if (lines === undefined && /^\d{1,4}$/.test(word)) lines = Number(word);
        else if (source === undefined && asSource !== undefined) source = asSource;
        else return usage;
      }
      lines ??= 100;
      if (lines < 1 || lines > 5000) return usage;
      return { kind: "logs", app: args[0] as string, lines, ...source };
    }
    case "scale":
      if (args.length < 1 || args.length > 17 || !ok(app, args[0])) return usage;
      if (!args.slice(1).every((a) => /^[a-z][a-z0-9_]{0,29}=[0-9]{1,3}$/.test(a))) return usage;
      return { kind: "scale", app: args[0] as string, args: args.slice(1) };
    case "lock":
      if (args.length < 1 || !ok(app, args[0])) return usage;
      return { kind: "lock", app: args[0] as string, reason: unescapeSlack(args.slice(1).join(" ")).slice(0, 200) };
    case "env":
      return parseEnv(text, args, usage);
    case "db":
      return parseDbArgs(args) ?? usage;
    case "policy":
      return parsePolicyArgs(args) ?? usage;
    case "link":
    case "unlink":
      return parseLinkArgs(name, args) ?? usage;
    case "audit":
      return parseAuditArgs(args) ?? usage;
    case "run":
      // Quoted words (`python -c "print(1)"`): parsed from the text itself, not from the blank-split words.
      return parseRunArgs(text) ?? usage;
    default:
      return { kind: "unknown" };
  }
}

function parseEnv(text: string, args: string[], usage: ParsedCommand): ParsedCommand {
  const [verb, appSlug, keyArg] = args;
  if (appSlug === undefined || !app.safeParse(appSlug).success) return usage;
  if (verb === "list") return args.length === 2 ? { kind: "env-list", app: appSlug } : usage;
  if (verb === "unset") {
    return args.length === 3 && /^[A-Z_][A-Z0-9_]{0,127}$/.test(keyArg ?? "")
      ? { kind: "env-unset", app: appSlug, key: keyArg as string }
      : usage;
  }
  if (verb !== "set") return usage;
  // The value is everything after the first "=", spaces included, exactly as typed.
  const match = /^\s*\S+\s+set\s+\S+\s+(.*)$/s.exec(text);
  const pair = unescapeSlack(match?.[1]?.trim() ?? "");
  if (!envKeyValue.safeParse(pair).success) return usage;
  const eq = pair.indexOf("=");
  return { kind: "env-set", app: appSlug, key: pair.slice(0, eq), value: pair.slice(eq + 1) };
}

type Reply = { text: string; blocks?: types.KnownBlock[] };

/** What `cancel` did, per deployment; the deployment's thread says how a running one ended. */
function cancelReply(slug: string, outcomes: CancelResult["outcomes"]): string {
  if (outcomes.length === 0) return `*${slug}* has no queued or running deployment to cancel.`;
  return outcomes
    .map((o) => {
      const d = o.deployment;
      if (o.kind === "cancelled") return `Cancelled the queued deployment of *${slug}* (${d.uuid}).`;
      if (o.kind === "requested" && d.stageTimings.route !== undefined)
        return `Too late to stop deployment ${d.uuid} of *${slug}*: it is already switching traffic, so it finishes.`;
      if (o.kind === "requested")
        return `Stopping the running deployment of *${slug}* (${d.uuid}); its thread will say when it stopped. The release serving now keeps serving.`;
      return `Deployment ${d.uuid} of *${slug}* had already ${d.status === "cancelled" ? "been cancelled" : d.status}.`;
    })
    .join("\n");
}
const TIMED_OUT = Symbol("timed out");

/** The ack of a command that needs no state: help, a usage line; undefined for anything else. */
function statelessReply(parsed: ParsedCommand): Record<string, unknown> | undefined {
  if (parsed.kind === "help") return { response_type: "ephemeral", ...helpMessage(SLASH_COMMAND) };
  if (parsed.kind === "unknown") return { response_type: "ephemeral", text: usageLine(SLASH_COMMAND) };
  if (parsed.kind === "usage") return { response_type: "ephemeral", text: subcommandUsage(parsed.name) };
  return undefined;
}

let helpAck: string | undefined;

/**
 * The ack of `/tussilago help` (or a usage line) as JSON text, for the HTTP receiver to send before Bolt, the
 * dedupe store and the database (src/http/slack-receiver.ts): these answers depend on the text alone, and at a few
 * thousand commands a second the Bolt dispatch and the dedupe round trip were most of the ack's cost
 * (bench/RESULTS.md). The help text is serialised once. Undefined for any other command or subcommand.
 */
export function statelessCommandAck(command: string, text: string): string | undefined {
  if (command !== SLASH_COMMAND) return undefined;
  const parsed = parseCommandText(text);
  if (parsed.kind === "help") {
    helpAck ??= JSON.stringify(statelessReply(parsed));
    return helpAck;
  }
  const reply = statelessReply(parsed);
  return reply === undefined ? undefined : JSON.stringify(reply);
}

/** Registers `/tussilago`. Answers are ephemeral: only the caller sees them; deployments get a public thread. */
export function registerSlackCommand(bolt: App, deps: SlackCommandDeps): void {
  bolt.command(SLASH_COMMAND, async ({ command, ack, respond, context }) => {
    const correlationId = typeof context.correlationId === "string" ? context.correlationId : randomUUID();
    const log = deps.logger.child({ correlationId, slackCommand: SLASH_COMMAND });
    const parsed = parseCommandText(command.text ?? "");
    const stateless = statelessReply(parsed);
    if (stateless !== undefined) {
      log.debug({ subcommand: parsed.kind }, "slash command");
      return ack(stateless);
    }
    log.info({ subcommand: parsed.kind }, "slash command");
    const chatops = deps.chatops;
    if (!chatops) return ack({ response_type: "ephemeral", text: "This bot is not set up for that command yet." });

    const work = (async (): Promise<Reply> => {
      try {
        const actor = ensureSlackUser(chatops.db, {
          teamId: command.team_id,
          userId: command.user_id,
          displayName: command.user_name,
        });
        const responseUrl = typeof command.response_url === "string" ? command.response_url : undefined;
        return await run(chatops, parsed, { actor, channel: command.channel_id, correlationId, responseUrl, log });
      } catch (err) {
        return errorReply(err, correlationId, log);
      }
    })();
    // Slack gives 3 s: answer with the result when it is quick (it nearly always is: a few SQLite statements and
    // one Redis add), otherwise ack now and deliver the result through response_url.
    let timer: NodeJS.Timeout | undefined;
    const budget = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), chatops.ackBudgetMs ?? 2_000);
    });
    const first = await Promise.race([work, budget]);
    clearTimeout(timer);
    if (first !== TIMED_OUT) return ack({ response_type: "ephemeral", ...first });
    await ack({ response_type: "ephemeral", text: "Working on it…" });
    await respond({ response_type: "ephemeral", ...(await work) }).catch((err: unknown) => {
      log.warn({ err }, "could not deliver a late command result");
    });
  });
}

interface RunContext {
  actor: Actor;
  channel: string;
  correlationId: string;
  /** Where late answers go (the logs worker posts there); valid 30 minutes, 5 uses. */
  responseUrl: string | undefined;
  log: Logger;
}

async function run(deps: ChatOpsSlackDeps, cmd: ParsedCommand, ctx: RunContext): Promise<Reply> {
  const base = { actor: ctx.actor, correlationId: ctx.correlationId };
  const viewer = (slug: string, action: string) => {
    const found = getAppBySlug(deps.db, slug);
    authorize(deps.db, { ...base, app: found, needed: "viewer", action });
    return found;
  };
  switch (cmd.kind) {
    case "apps": {
      const roles = rolesOf(deps.db, ctx.actor);
      const visible = listAppsCommand(deps).filter((a) => roles.has(a.tenant));
      if (visible.length === 0) return { text: "No apps you can see." };
      const lines = visible.map((a) => {
        const rel = a.currentRelease ? `v${a.currentRelease.version}` : "no release";
        return `• *${a.slug}* (${a.tenant}) ${rel} · ${a.domain} · last deploy: ${a.lastDeployment?.status ?? "none"}`;
      });
      return { text: lines.join("\n") };
    }
    case "status": {
      viewer(cmd.app, "status");
      const s = statusCommand(deps, { app: cmd.app });
      const rel = s.currentRelease ? `v${s.currentRelease.version}` : "no release yet";
      const deps5 = s.deployments.map((d) => `• ${d.status} · ${d.trigger} \`${escapeSlack(d.ref)}\` · ${d.uuid}`);
      const down = s.incident
        ? [`:rotating_light: down since ${s.incident.createdAt.toISOString()}: ${escapeSlack(s.incident.reason)}`]
        : [];
      // Wanted counts from the database: the handler answers within Slack's 3 s and runs no podman.
      const procs = s.processes.length > 0 ? [`processes: ${escapeSlack(describeProcesses(s))}`] : [];
      return { text: [`*${s.app.slug}*: ${rel} at ${s.app.domain}`, ...procs, ...down, ...deps5].join("\n") };
    }
    case "releases": {
      viewer(cmd.app, "releases");
      const r = releasesCommand(deps, { app: cmd.app, limit: 20 });
      if (r.releases.length === 0) return { text: `*${r.app.slug}* has no releases yet.` };
      const lines = r.releases.map(
        (x, i) =>
          `• v${x.version}${i === 0 ? " (current)" : ""} · ${x.commitSha?.slice(0, 12) ?? "no commit"} · ${x.createdAt.toISOString()}`,
      );
      return { text: [`*${r.app.slug}* releases:`, ...lines].join("\n") };
    }
    case "run": {
      // A command runs podman for as long as it takes: a job runs it and answers via response_url.
      const r = await requestRun(deps, cmd, ctx);
      return "text" in r ? r : requested(deps, r, ctx);
    }
    case "logs":
      // Reading logs runs podman, which a Slack handler must not do: a job reads them and answers via response_url.
      return requestLogs(deps, cmd, ctx);
    case "deploy": {
      const g = await deployAsActor(deps, { ...base, app: cmd.app, ref: cmd.ref });
      if (g.kind === "approval") return requested(deps, g, ctx);
      const d = g.result.deployment;
      linkDeploymentChannel(deps.db, d.uuid, ctx.channel);
      return { text: `Deployment of *${d.appSlug}* \`${escapeSlack(d.ref)}\` queued (${d.uuid}).` };
    }
    case "restart": {
      const g = await restartCommand(deps, { ...base, app: cmd.app });
      if (g.kind === "approval") return requested(deps, g, ctx);
      const d = g.result.deployment;
      linkDeploymentChannel(deps.db, d.uuid, ctx.channel);
      return { text: `Restart of *${d.appSlug}* (${d.ref}) queued (${d.uuid}).` };
    }
    case "scale": {
      if (cmd.args.length === 0) {
        authorize(deps.db, { ...base, app: getAppBySlug(deps.db, cmd.app), needed: "viewer", action: "scale.show" });
        const v = showFormation(deps, { app: cmd.app });
        return { text: `*${v.app}* (${v.release ?? "no release yet"}): ${describeFormation(v.formation)}` };
      }
      // Applying runs podman (health checks included): a job does it and answers via response_url.
      const g = await scaleAsActor(deps, { ...base, app: cmd.app, args: cmd.args, responseUrl: ctx.responseUrl });
      if (g.kind === "approval") return requested(deps, g, ctx);
      const r = g.result;
      const next = r.applying ? "applying now; the outcome follows here" : "its first deployment starts it";
      return { text: `Scale of *${r.app}*: ${escapeSlack(describeChanges(r.changes))} recorded; ${next}.` };
    }
    case "cancel": {
      const r = await cancelAsActor(deps, { ...base, app: cmd.app });
      return { text: cancelReply(r.app.slug, r.outcomes) };
    }
    case "rollback": {
      const g = await rollbackAsActor(deps, { ...base, app: cmd.app, release: cmd.release });
      if (g.kind === "approval") return requested(deps, g, ctx);
      linkDeploymentChannel(deps.db, g.result.deployment.uuid, ctx.channel);
      return { text: `Rollback of *${cmd.app}* to ${g.result.deployment.ref} queued (${g.result.deployment.uuid}).` };
    }
    case "env-list": {
      const r = envListCommand(deps, { ...base, app: cmd.app });
      const keys = r.vars.map((v) => `\`${v.key}\``).join(", ");
      return { text: r.vars.length === 0 ? `*${r.app.slug}* has no env vars.` : `*${r.app.slug}* env: ${keys}` };
    }
    case "env-set": {
      const g = await envSetCommand(deps, { ...base, app: cmd.app, key: cmd.key, value: cmd.value });
      if (g.kind === "approval") return requested(deps, g, ctx);
      return {
        text: `Set \`${g.result.key}\` on *${g.result.app.slug}* (value hidden). It applies on the next deploy or restart.`,
      };
    }
    case "env-unset": {
      const g = await envUnsetCommand(deps, { ...base, app: cmd.app, key: cmd.key });
      if (g.kind === "approval") return requested(deps, g, ctx);
      const what = g.result.existed ? "Removed" : "There was no";
      return { text: `${what} \`${g.result.key}\` on *${g.result.app.slug}*.` };
    }
    case "lock": {
      const lock = lockCommand(deps, { ...base, app: cmd.app, reason: cmd.reason });
      const why = lock.reason === "" ? "" : `: ${escapeSlack(lock.reason)}`;
      return { text: `*${cmd.app}* is locked by ${lock.holderLabel}${why}. Deployments are refused until \`unlock\`.` };
    }
    case "unlock": {
      const r = unlockCommand(deps, { ...base, app: cmd.app });
      if (!r.released) return { text: `*${cmd.app}* was not locked.` };
      return {
        text: r.broken ? `Broke ${r.released.holderLabel}'s lock on *${cmd.app}*.` : `*${cmd.app}* is unlocked.`,
      };
    }
    case "destroy": {
      const g = await destroyCommand(deps, { ...base, app: cmd.app });
      if (g.kind === "approval") return requested(deps, g, ctx);
      return { text: `*${g.result.app.slug}* is destroyed; its containers and route are being removed.` };
    }
    case "db": {
      const r = await runDbSubcommand(deps, cmd, base);
      return "text" in r ? r : requested(deps, r, ctx);
    }
    case "policy": {
      const r = await runPolicySubcommand(deps, cmd, base);
      return "text" in r ? r : requested(deps, r, ctx);
    }
    case "link":
      return runLinkSubcommand({ db: deps.db, log: ctx.log, secrets: deps.secrets }, cmd, {
        ...base,
        channel: ctx.channel,
      });
    case "audit":
      return runAuditSubcommand(deps, cmd, base);
    case "approvals": {
      const pending = approvalsCommand(deps, base);
      if (pending.length === 0) return { text: "No pending approval requests." };
      const blocks = pending.flatMap((a) => approvalMessage(a, deps.now()).blocks);
      return {
        text: `${pending.length} pending approval request(s).`,
        blocks: blocks.slice(0, 50) as unknown as types.KnownBlock[],
      };
    }
    default:
      return { text: usageLine(SLASH_COMMAND) };
  }
}

/** Posts the Approve/Deny message in the channel (once per request) and tells the requester. */
async function requested(
  deps: ChatOpsSlackDeps,
  g: Extract<Awaited<ReturnType<typeof destroyCommand>>, { kind: "approval" }>,
  ctx: RunContext,
): Promise<Reply> {
  const { approval } = g;
  if (g.isNew) {
    const message = approvalMessage(approval, deps.now());
    try {
      const posted = await deps.slack.postMessage({ channel: ctx.channel, ...message });
      setApprovalMessage(deps.db, approval.uuid, posted.channel, posted.ts);
    } catch (err) {
      // The request stands; approvers still find it with `approvals`.
      ctx.log.warn({ err, approvalId: approval.uuid }, "could not post the approval request");
    }
  }
  return {
    text: `This needs an approval from someone else with the approver role (request ${approval.uuid}, expires ${approval.expiresAt.toISOString()}).`,
  };
}

function errorReply(err: unknown, correlationId: string, log: Logger): Reply {
  if (err instanceof QueueDelayedError) {
    // True as said: what the command records is in SQLite already, and the add lands when Redis is back.
    log.warn({ err: err.message }, "slash command answered while the queue is delayed");
    return {
      text: `The job queue is delayed: your request is recorded and will run when the queue is back. Reference: ${correlationId}`,
    };
  }
  if (err instanceof LockedError) {
    const why = err.lock.reason === "" ? "" : `: ${escapeSlack(err.lock.reason)}`;
    return { text: `Refused: locked by ${err.lock.holderLabel} since ${err.lock.since.toISOString()}${why}` };
  }
  if (err instanceof DomainError) {
    log.info({ code: err.code, status: err.status }, "slash command refused");
    const prefix = err.status === 403 ? "Not allowed: " : "";
    return { text: `${prefix}${escapeSlack(err.message)}` };
  }
  // The user sees a reference, never the error: the details are in our logs under the same id.
  log.error({ err }, "slash command failed");
  return { text: `Something went wrong. Reference: ${correlationId}` };
}
