import { escapeSlack } from "../infra/slack-api.ts";

/**
 * An app's log tail as one Slack message. Container output is tenant-controlled: terminal escapes and control
 * characters are removed, Slack's control characters escaped (escapeSlack also turns every backtick into ˋ, so
 * nothing in the logs can close our code block), and the size is bounded by keeping the last lines.
 */

/** Slack accepts ~40k characters, but a log wall that long is unreadable in a channel; the CLI has the rest. */
export const SLACK_LOGS_MAX_CHARS = 3_500;

// CSI (ESC [ … final byte, or the 8-bit CSI), OSC (ESC ] … BEL or ST; an unterminated one ends at the line),
// then any other ESC sequence (ESC c, ESC ( B…). Whatever escapes this, CONTROL below still removes the ESC.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching terminal escapes is the point here.
const ANSI = /(?:\u001b\[|\u009b)[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b\n]*(?:\u0007|\u001b\\)?|\u001b[ -/]*[0-~]/g;
// Every C0/C1 control but tab and newline, and the bidi overrides that make text display in another order.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point here.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** Terminal escapes removed, CRLF and Unicode line separators made newlines, other control characters dropped. */
export function stripControl(text: string): string {
  return text
    .replace(ANSI, "")
    .replace(/\r\n|[\u2028\u2029]/g, "\n")
    .replace(CONTROL, "");
}

export interface SlackLogsInput {
  app: string;
  version: number;
  /** Raw container output. */
  text: string;
  /** What the user asked for (the CLI hint repeats it). */
  requested: number;
  /** The container read, when not web.1: its process type and replica. */
  source?: { process: string; replica: number } | undefined;
}

export interface SlackLogsReply {
  text: string;
  /** Lines the container returned, and how many of them the message shows. */
  lines: number;
  shown: number;
}

export function formatLogsForSlack(input: SlackLogsInput, maxChars = SLACK_LOGS_MAX_CHARS): SlackLogsReply {
  const clean = stripControl(input.text).replace(/\n+$/, "");
  const src = input.source;
  const other = src !== undefined && (src.process !== "web" || src.replica !== 1);
  const who = `*${input.app}* v${input.version}${other ? ` ${src.process}.${src.replica}` : ""}`;
  if (clean.trim() === "") return { text: `${who} has no log output.`, lines: 0, shown: 0 };
  const lines = clean.split("\n");
  const flags = other ? ` --process ${src.process} --replica ${src.replica}` : "";
  const cli = `\`tussilago logs ${input.app}${flags} --lines ${input.requested}\``;
  // The header is sized for the longest counts, so the body budget holds whichever header is chosen.
  const longHeader = truncatedHeader(who, lines.length, lines.length, cli);
  const budget = maxChars - longHeader.length - "\n```\n\n```".length;
  const body: string[] = [];
  let used = 0;
  let cut = false;
  for (let i = lines.length - 1; i >= 0; i--) {
    const escaped = escapeSlack(lines[i] as string);
    const cost = escaped.length + (body.length > 0 ? 1 : 0);
    if (used + cost <= budget) {
      body.unshift(escaped);
      used += cost;
      continue;
    }
    // Even the last line alone is too long: show its end, which is where a message usually says what went wrong.
    if (body.length === 0) {
      body.unshift(`…${escapedTail(lines[i] as string, budget - 1)}`);
      cut = true;
    }
    break;
  }
  const shown = body.length;
  const header =
    shown === lines.length && !cut
      ? `${who}: last ${shown} line${shown === 1 ? "" : "s"}`
      : truncatedHeader(who, shown, lines.length, cli);
  return { text: `${header}\n\`\`\`\n${body.join("\n")}\n\`\`\``, lines: lines.length, shown };
}

function truncatedHeader(who: string, shown: number, total: number, cli: string): string {
  return `${who}: showing the last ${shown} of ${total} lines; use the CLI for more: ${cli}`;
}

/** The longest end of `line` whose escaped form fits in `budget` characters (an entity is never cut in half). */
function escapedTail(line: string, budget: number): string {
  // Escaping never shortens, so the last budget + 1 code units are enough (and a surrogate pair cut there is
  // never reached: those units alone are already over the budget).
  const chars = [...line.slice(-(budget + 1))];
  let out = "";
  for (let i = chars.length - 1; i >= 0; i--) {
    const next = escapeSlack(chars[i] as string) + out;
    if (next.length > budget) break;
    out = next;
  }
  return out;
}
