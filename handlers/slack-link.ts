import {
  GITHUB_REPO,
  linkChannelCommand,
  linkGithubCommand,
  rotateWebhookSecretCommand,
  SLACK_CHANNEL_ID,
  unlinkChannelCommand,
} from "../commands/apps.ts";
import type { Db } from "../src/db/client.ts";
import { getAppBySlug } from "../src/domain/apps.ts";
import type { SecretBox } from "../src/domain/crypto.ts";
import { invalidError } from "../src/domain/errors.ts";
import { LINK_PROOF_PATH, linkProofLine } from "../src/domain/github-links.ts";
import { type Actor, authorize } from "../src/domain/users.ts";
import { refSchema, slugSchema } from "../src/domain/validation.ts";
import { escapeSlack } from "../src/infra/slack-api.ts";
import type { Logger } from "../src/log.ts";

/**
 * `/tussilago link <app> github <owner/name> [branch]`, `/tussilago link <app> github --rotate-secret`,
 * `/tussilago link <app> channel` and `/tussilago unlink <app> channel`. The channel is always the one the command
 * was typed in: a channel id typed by hand would let anyone point deploy threads at a channel they cannot see.
 * A webhook secret is shown once, in the command's answer, which is ephemeral: only the admin who typed it sees it.
 */
export type LinkSubcommand =
  | { kind: "link"; action: "link-github"; app: string; repo: string; branch?: string | undefined }
  | { kind: "link"; action: "link-channel" | "unlink-channel" | "rotate-github-secret"; app: string };

/** `args` are the words after `link`/`unlink`; undefined means malformed (the caller answers with the usage line). */
export function parseLinkArgs(verb: "link" | "unlink", args: readonly string[]): LinkSubcommand | undefined {
  const [app, target, repo, branch, ...rest] = args;
  if (rest.length > 0 || !slugSchema.safeParse(app).success) return undefined;
  const slug = app as string;
  if (target === "channel") {
    if (repo !== undefined) return undefined;
    return { kind: "link", action: verb === "link" ? "link-channel" : "unlink-channel", app: slug };
  }
  if (verb === "link" && target === "github" && repo === "--rotate-secret" && branch === undefined) {
    return { kind: "link", action: "rotate-github-secret", app: slug };
  }
  if (verb !== "link" || target !== "github" || repo === undefined || !GITHUB_REPO.test(repo)) return undefined;
  if (branch !== undefined && !refSchema.safeParse(branch).success) return undefined;
  return { kind: "link", action: "link-github", app: slug, repo, branch };
}

/** Admins of the app's tenant only; a refusal is audited by authorize, a success by the command itself. */
export function runLinkSubcommand(
  deps: { db: Db; log: Logger; secrets: SecretBox },
  cmd: LinkSubcommand,
  input: { actor: Actor; correlationId: string; channel: string },
): { text: string } {
  const app = getAppBySlug(deps.db, cmd.app);
  authorize(deps.db, {
    actor: input.actor,
    correlationId: input.correlationId,
    app,
    needed: "admin",
    action: `app.${cmd.action}`,
  });
  const request = { app: app.slug, actor: input.actor.label, correlationId: input.correlationId };
  if (cmd.action === "link-github") {
    const link = linkGithubCommand(deps, { ...request, repo: cmd.repo, branch: cmd.branch });
    const repo = escapeSlack(link.repo);
    const branch = escapeSlack(link.branch);
    if (link.status === "active") {
      return { text: `Pushes to \`${repo}\` branch \`${branch}\` now deploy *${link.app}*.` };
    }
    return {
      text:
        `*${link.app}* is linked to \`${repo}\` branch \`${branch}\`, *pending*: nothing deploys until GitHub ` +
        `proves the link.\n${secretInstructions(link.repo, link.webhookSecret, link.challenge, link.status)}`,
    };
  }
  if (cmd.action === "rotate-github-secret") {
    const r = rotateWebhookSecretCommand(deps, request);
    return {
      text:
        `New webhook secret for *${r.app}*; the old one no longer verifies, so update the webhook on GitHub now.\n` +
        secretInstructions(r.repo, r.webhookSecret, r.challenge, r.status),
    };
  }
  if (cmd.action === "unlink-channel") {
    const r = unlinkChannelCommand(deps, request);
    return {
      text:
        r.previous === null
          ? `*${app.slug}* had no linked channel.`
          : `*${app.slug}* is unlinked from <#${r.previous}>.`,
    };
  }
  // DMs and group DMs have no stable audience for deploy threads; the command layer would reject their ids anyway.
  if (!SLACK_CHANNEL_ID.test(input.channel))
    throw invalidError("type this command in the channel to link, not in a DM");
  const r = linkChannelCommand(deps, { ...request, channel: input.channel });
  return { text: `Deploy threads of *${app.slug}* now go to <#${r.channel}>.` };
}

/** Only the admin sees this answer (ephemeral), and it is the only time the secret is shown. */
function secretInstructions(
  repo: string,
  secret: string | undefined,
  challenge: string | undefined,
  status: "pending" | "active",
): string {
  if (secret === undefined || challenge === undefined) {
    return "The webhook secret is unchanged (`--rotate-secret` makes a new one).";
  }
  const proof =
    status === "pending"
      ? `\nTo prove you control the repository, commit the file \`${LINK_PROOF_PATH}\` containing the line ` +
        `\`${linkProofLine(challenge)}\` to its default branch. Where the bot has GitHub API credentials, the link ` +
        "turns active only once that file is there when a signed ping or push arrives (redeliver the ping after " +
        "committing it)."
      : "";
  return (
    `Webhook secret (shown once): \`${secret}\`\nAdd it at https://github.com/${escapeSlack(repo)}/settings/hooks ` +
    "(payload URL `<bot>/webhooks/github`, content type `application/json`); GitHub's ping activates the link." +
    proof
  );
}
