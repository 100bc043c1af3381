import type { types } from "@slack/bolt";

/** One line of help per subcommand. A command adds its line here when it lands, so help never lists what is missing. */
export interface SubcommandHelp {
  name: string;
  usage: string;
  summary: string;
}

export const SLASH_COMMAND = "/tussilago";

export const SUBCOMMANDS: readonly SubcommandHelp[] = [
  { name: "help", usage: "help", summary: "Show this help." },
  { name: "apps", usage: "apps", summary: "List the apps you can see, with their current release." },
  {
    name: "deploy",
    usage: "deploy <app> [ref]",
    summary: "Build and deploy a branch, tag or commit (default: the app's branch).",
  },
  {
    name: "rollback",
    usage: "rollback <app> [release]",
    summary: "Redeploy a kept release (default: the one before the current).",
  },
  { name: "status", usage: "status <app>", summary: "Current release and recent deployments." },
  { name: "releases", usage: "releases <app>", summary: "Release history, newest first." },
  {
    name: "logs",
    usage: "logs <app> [lines] [process[.n]]",
    summary:
      "The app's last lines of output (default 100, at most 5000; web.1 unless you name another container, e.g. worker or worker.2), sent back to you here.",
  },
  {
    name: "run",
    usage: "run <app> -- <command…>",
    summary:
      "Run a one-off command in a fresh container of the current release; its exit code and last output come back here (production needs an approval by default).",
  },
  { name: "restart", usage: "restart <app>", summary: "Redeploy the current release (picks up env changes)." },
  {
    name: "scale",
    usage: "scale <app> [web=2 worker=1 …]",
    summary:
      "Show or change how many containers of each process type run; applied at once, no rebuild (production needs an approval by default).",
  },
  {
    name: "cancel",
    usage: "cancel <app>",
    summary: "Stop the app's queued or running deployment; the release serving now keeps serving.",
  },
  { name: "env", usage: "env list|set|unset <app> [KEY[=VALUE]]", summary: "Manage env vars; values are never shown." },
  { name: "lock", usage: "lock <app> [reason]", summary: "Refuse deployments of the app until unlocked." },
  { name: "unlock", usage: "unlock <app>", summary: "Release your lock (admins can break anyone's)." },
  {
    name: "destroy",
    usage: "destroy <app>",
    summary: "Remove the app (admins; production needs an approval by default).",
  },
  {
    name: "db",
    usage: "db create|show|rotate|drop <app> [postgres|redis]",
    summary: "The app's own database or Redis (password never shown; drop: admins, production needs an approval).",
  },
  { name: "approvals", usage: "approvals", summary: "Pending approval requests you can see." },
  {
    name: "policy",
    usage: "policy <app> [add|remove <deploy|rollback|restart|scale|env|destroy|db.drop|run>… | reset]",
    summary: "Which actions need a second person's approval (changes: admins; loosening needs an approval).",
  },
  {
    name: "link",
    usage: "link <app> github <owner/name> [branch] | link <app> github --rotate-secret | link <app> channel",
    summary:
      "Deploy on pushes to a GitHub repo (you get the webhook secret, once), rotate that secret, or post the app's deploy threads in this channel (admins).",
  },
  { name: "unlink", usage: "unlink <app> channel", summary: "Stop posting the app's deploy threads here (admins)." },
  { name: "audit", usage: "audit <app> [--since 1h]", summary: "Who did what to the app, newest first (admins)." },
];

/** The usage line of one subcommand, for malformed arguments. */
export function subcommandUsage(name: string, command: string = SLASH_COMMAND): string {
  const sub = SUBCOMMANDS.find((s) => s.name === name);
  return sub ? `Usage: ${command} ${sub.usage}` : usageLine(command);
}

export interface HelpMessage {
  /** Plain text: the CLI prints it, and Slack shows it where blocks cannot render (notifications). */
  text: string;
  blocks: types.KnownBlock[];
}

/** The short answer to anything that is not a known subcommand. */
export function usageLine(command: string = SLASH_COMMAND): string {
  return `Usage: ${command} <subcommand> [arguments]. Try ${command} help.`;
}

export function helpMessage(
  command: string = SLASH_COMMAND,
  subcommands: readonly SubcommandHelp[] = SUBCOMMANDS,
): HelpMessage {
  const lines = subcommands.map((s) => `${command} ${s.usage}: ${s.summary}`);
  const text = [`Tussilago deploy bot. ${usageLine(command)}`, "", ...lines].join("\n");
  const blocks: types.KnownBlock[] = [
    { type: "section", text: { type: "mrkdwn", text: `*Tussilago deploy bot*\n${usageLine(command)}` } },
    {
      type: "section",
      text: { type: "mrkdwn", text: subcommands.map((s) => `\`${command} ${s.usage}\`  ${s.summary}`).join("\n") },
    },
  ];
  return { text, blocks };
}
