import type { SlackApi, SlackBlock, SlackMessage } from "./slack-api.ts";
import { SlackApiError } from "./slack-api.ts";

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

  static outage(): SlackApiError {
    return new SlackApiError("chat.postMessage", "network", true);
  }

  /** Every text Slack would show (message text and block texts), for "no internal id" assertions. */
  renderedTexts(): string[] {
    return this.calls.map((c) => `${c.text}\n${JSON.stringify(c.blocks ?? [])}`);
  }
}
