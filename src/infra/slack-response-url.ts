import { SlackApiError, type SlackResponse } from "./slack-api.ts";
import { postToSlack, retrying, type SlackTransport } from "./slack-transport.ts";

/** Where Slack's response_url points in production. */
export const SLACK_RESPONSE_ORIGIN = "https://hooks.slack.com";

/**
 * A response_url is only followed to Slack: https://hooks.slack.com, or the configured API base's origin (the fake
 * Slack of the tests, on loopback). Anything else in a payload is refused, so a forged one cannot make the bot
 * send requests (and tenant logs) elsewhere. Credentials in the URL are refused too.
 */
export function responseUrlAllowed(url: string, extraOrigin?: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (parsed.username !== "" || parsed.password !== "") return false;
  if (parsed.origin === SLACK_RESPONSE_ORIGIN) return true;
  return extraOrigin !== undefined && parsed.origin === extraOrigin;
}

/** The origin of a URL for logs: never the path, which carries response_url's secret part. */
export function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "invalid-url";
  }
}

/**
 * Posts an ephemeral answer to a response_url that `responseUrlAllowed` has accepted, never replacing the original
 * message, retried like any Slack call.
 */
export async function postResponse(transport: SlackTransport, url: string, message: SlackResponse): Promise<void> {
  const body = JSON.stringify({
    response_type: "ephemeral",
    replace_original: false,
    text: message.text,
    ...(message.blocks ? { blocks: message.blocks } : {}),
  });
  await retrying(transport, "response", () => respondOnce(transport, url, body));
}

/** response_url needs no token (the URL is the credential); Slack answers `ok` or an error word. */
async function respondOnce(transport: SlackTransport, url: string, body: string): Promise<void> {
  const res = await postToSlack(
    transport,
    "response",
    url,
    { "content-type": "application/json; charset=utf-8" },
    body,
  );
  const text = (await res.body.text().catch(() => "")).slice(0, 2_000);
  const code = responseErrorCode(res.statusCode, text);
  if (code !== undefined) throw new SlackApiError("response", code, false);
}

/** undefined when Slack took the answer. Error words (`expired_url`, `used_url`…) are kept only if they look like one. */
function responseErrorCode(status: number, text: string): string | undefined {
  let word = text.trim();
  try {
    const json = JSON.parse(word) as { ok?: unknown; error?: unknown };
    if (status >= 200 && status < 300 && json.ok !== false) return undefined;
    word = typeof json.error === "string" ? json.error : "";
  } catch {
    if (status >= 200 && status < 300) return undefined;
  }
  return /^[a-z_]{1,40}$/.test(word) ? word : `http_${status}`;
}
