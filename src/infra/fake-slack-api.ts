import type { SlackApi, SlackBlock, SlackMessage, SlackResponse } from "./slack-api.ts";
import { responseUrlAllowed, SlackApiError } from "./slack-api.ts";

export type FakeSlackCall =
  | {
      method: "chat.postMessage";
      channel: string;
      text: string;
      blocks?: SlackBlock[] | undefined;
      threadTs?: string | undefined;
      ts: string;
    }
  | { method: "chat.update"; channel: string; ts: string; text: string; blocks?: SlackBlock[] | undefined };

/** In-memory Slack: records every call, hands out increasing `ts` values, and can be told to be down. */
export class FakeSlackApi implements SlackApi {
  readonly calls: FakeSlackCall[] = [];
  /** Answers sent to a response_url, apart from `calls` (they are not Web API calls). */
  readonly responses: Array<{ url: string } & SlackResponse> = [];
  /** Accepted for response_url besides https://hooks.slack.com, like UndiciSlackApi's configured API origin. */
  responseOrigin: string | undefined;
  /** While set, every call throws it (Slack outage). */
  down: SlackApiError | undefined;
  #seq = 0;

  async postMessage(message: SlackMessage): Promise<{ channel: string; ts: string }> {
    if (this.down) throw this.down;
    this.#seq += 1;
    const ts = `1700000000.${String(this.#seq).padStart(6, "0")}`;
    this.calls.push({ method: "chat.postMessage", ...message, ts });
    return { channel: message.channel, ts };
  }

  async updateMessage(message: { channel: string; ts: string; text: string; blocks?: SlackBlock[] }): Promise<void> {
    if (this.down) throw this.down;
    this.calls.push({ method: "chat.update", ...message });
  }

  acceptsResponseUrl(url: string): boolean {
    return responseUrlAllowed(url, this.responseOrigin);
  }

  async respond(url: string, message: SlackResponse): Promise<void> {
    if (!this.acceptsResponseUrl(url)) throw new SlackApiError("response", "response_url_refused", false);
    if (this.down) throw this.down;
    this.responses.push({ url, ...message });
  }

  static outage(): SlackApiError {
    return new SlackApiError("chat.postMessage", "network", true);
  }

  /** Every text Slack would show (message text and block texts), for "no internal id" assertions. */
  renderedTexts(): string[] {
    return this.calls.map((c) => `${c.text}\n${JSON.stringify(c.blocks ?? [])}`);
  }
}
