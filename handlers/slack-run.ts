import type { ChatOpsDeps } from "../commands/deps.ts";
import { gate } from "../commands/gate.ts";
import { checkRunCommand, runUrlBinding } from "../commands/run.ts";
import type { ApprovalView } from "../src/domain/approvals.ts";
import { getAppBySlug } from "../src/domain/apps.ts";
import { DomainError } from "../src/domain/errors.ts";
import { currentRelease } from "../src/domain/releases.ts";
import { type Actor, authorize } from "../src/domain/users.ts";
import { slugSchema } from "../src/domain/validation.ts";
import { escapeSlack, type SlackApi } from "../src/infra/slack-api.ts";
import type { Logger } from "../src/log.ts";

/**
 * `/tussilago run <app> -- <command…>`: role deployer, the policy action `run` (gated by default in production).
 * Nothing slow here: authorize, gate, enqueue; the run job (commands/run-job.ts) runs the command and answers
 * through the command's response_url.
 */

export interface RunSubcommand {
  kind: "run";
  app: string;
  command: string[];
}

/** Slack HTML-escapes &, < and >; phones and desktop clients may turn quotes into typographic ones. */
function normalize(text: string): string {
  return text
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&")
    .replace(/[\u201c\u201d]/g, '"')
    .replace(/[\u2018\u2019]/g, "'");
}

/**
 * Words as a POSIX shell would split them, without any expansion: blanks separate, '…' is literal, "…" knows only
 * \" and \\, a backslash outside quotes escapes the next character. Undefined on an unterminated quote.
 */
export function splitWords(text: string): string[] | undefined {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end === -1) return undefined;
      word = (word ?? "") + text.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      let part = "";
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === "\\" && (text[j + 1] === '"' || text[j + 1] === "\\")) j++;
        part += text[j];
      }
      if (j >= text.length) return undefined;
      word = (word ?? "") + part;
      i = j;
    } else if (c === "\\" && i + 1 < text.length) {
      word = (word ?? "") + text[i + 1];
      i++;
    } else {
      word = (word ?? "") + c;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** `run <app> -- <command…>`; undefined when malformed (answered with the usage line). */
export function parseRunArgs(text: string): RunSubcommand | undefined {
  const words = splitWords(normalize(text.trim()));
  if (words === undefined) return undefined;
  if (words[0]?.toLowerCase() !== "run") return undefined;
  const [, app, dashes, ...command] = words;
  if (app === undefined || !slugSchema.safeParse(app).success || dashes !== "--" || command.length === 0) {
    return undefined;
  }
  return { kind: "run", app, command };
}

export interface SlackRunContext {
  actor: Actor;
  correlationId: string;
  responseUrl: string | undefined;
  log: Logger;
}

export type RunRequestReply = { text: string } | { kind: "approval"; approval: ApprovalView; isNew: boolean };

export async function requestRun(
  deps: ChatOpsDeps & { slack: Pick<SlackApi, "acceptsResponseUrl"> },
  cmd: RunSubcommand,
  ctx: SlackRunContext,
): Promise<RunRequestReply> {
  const app = getAppBySlug(deps.db, cmd.app);
  authorize(deps.db, { actor: ctx.actor, correlationId: ctx.correlationId, app, needed: "deployer", action: "run" });
  const command = checkRunCommand(cmd.command);
  const cli = `\`tussilago run ${app.slug} -- …\``;
  if (!deps.runQueue) return { text: `Running commands from Slack is not configured on this bot. Use the CLI: ${cli}` };
  const responseUrl = ctx.responseUrl;
  if (responseUrl === undefined || !deps.slack.acceptsResponseUrl(responseUrl)) {
    ctx.log.warn({ hasUrl: responseUrl !== undefined }, "run: no usable response_url in the command");
    return {
      text: `This command came without a Slack response URL, so the output cannot be sent. Use the CLI: ${cli}`,
    };
  }
  const release = currentRelease(deps.db, app.uuid);
  if (!release) throw new DomainError(404, "not_found", `${app.slug} has no release to run a command in yet`);
  const runQueue = deps.runQueue;
  const shown = `\`${escapeSlack(command.join(" ").slice(0, 200))}\``;
  const g = await gate(
    deps,
    {
      app,
      actor: ctx.actor,
      correlationId: ctx.correlationId,
      action: {
        kind: "run",
        app: app.uuid,
        release: release.uuid,
        version: release.version,
        command,
        responseUrlSealed: deps.secrets.seal(responseUrl, runUrlBinding(app.uuid)),
      },
    },
    async () => {
      const jobId = await runQueue.enqueue({
        appUuid: app.uuid,
        releaseUuid: release.uuid,
        command,
        responseUrl,
        requester: ctx.actor.label,
        correlationId: ctx.correlationId,
      });
      ctx.log.info({ appId: app.uuid, jobId }, "run job enqueued");
      return jobId;
    },
  );
  if (g.kind === "approval") return g;
  return { text: `Running ${shown} in *${app.slug}* v${release.version}; the output follows here.` };
}
