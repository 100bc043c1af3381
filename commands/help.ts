import type { types } from "@slack/bolt";

/** One line of help per subcommand. Later issues append their subcommands here, so help never lists what is missing. */
export interface SubcommandHelp {
  name: string;
  usage: string;
  summary: string;
}

export const SLASH_COMMAND = "/tussilago";

export const SUBCOMMANDS: readonly SubcommandHelp[] = [{ name: "help", usage: "help", summary: "Show this help." }];

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
