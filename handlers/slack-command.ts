import { randomUUID } from "node:crypto";
import type { App } from "@slack/bolt";
import { helpMessage, SLASH_COMMAND, usageLine } from "../commands/help.ts";
import type { Logger } from "../src/log.ts";

export interface SlackCommandDeps {
  logger: Logger;
}

export type ParsedCommand = { kind: "help" } | { kind: "unknown" };

// Subcommand names are ours, never tenant data; anything outside this shape is unknown by definition.
const SUBCOMMAND = /^[a-z][a-z0-9-]{0,31}$/;

/** `text` is what the user typed after the slash command; it is never echoed back (no Slack markup injection). */
export function parseCommandText(text: string): ParsedCommand {
  const [name = "help"] = text
    .trim()
    .split(/\s+/)
    .filter((word) => word !== "");
  const lower = name.toLowerCase();
  if (!SUBCOMMAND.test(lower)) return { kind: "unknown" };
  if (lower === "help") return { kind: "help" };
  return { kind: "unknown" };
}

/** Registers `/tussilago`. Answers go in the ack itself: ephemeral, so only the caller sees them. */
export function registerSlackCommand(app: App, deps: SlackCommandDeps): void {
  app.command(SLASH_COMMAND, async ({ command, ack, context }) => {
    const correlationId = typeof context.correlationId === "string" ? context.correlationId : randomUUID();
    const log = deps.logger.child({ correlationId, slackCommand: SLASH_COMMAND });
    try {
      const parsed = parseCommandText(command.text ?? "");
      log.info({ subcommand: parsed.kind }, "slash command");
      if (parsed.kind === "help") {
        await ack({ response_type: "ephemeral", ...helpMessage(SLASH_COMMAND) });
        return;
      }
      await ack({ response_type: "ephemeral", text: usageLine(SLASH_COMMAND) });
    } catch (err) {
      // The user sees a reference, never the error: the details are in our logs under the same id.
      log.error({ err }, "slash command failed");
      await ack({ response_type: "ephemeral", text: `Something went wrong. Reference: ${correlationId}` });
    }
  });
}
