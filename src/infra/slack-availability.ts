import type { Dispatcher } from "undici";
import type { Logger } from "../log.ts";
import type { ProbeResult } from "./api-availability.ts";
import { SlackApiError, type SlackIdentity } from "./slack-api.ts";
import { UndiciSlackApi } from "./slack-web-api.ts";

/**
 * auth.test answers that mean the token itself is wrong (https://docs.slack.dev/reference/methods/auth.test):
 * retrying cannot help, the operator has to fix SLACK_BOT_TOKEN. Every other failure (network, timeout, 5xx,
 * rate limit, an unknown answer) is an outage the bot waits out.
 */
const REFUSED = new Set([
  "not_authed",
  "invalid_auth",
  "account_inactive",
  "token_revoked",
  "token_expired",
  "not_allowed_token_type",
  "no_permission",
  "ekm_access_denied",
  "team_access_not_granted",
  "org_login_required",
]);

/** Whether a Slack call failed because Slack cannot be used right now (worth waiting for), not because of us. */
export function isSlackOutage(err: unknown): boolean {
  if (!(err instanceof SlackApiError)) return false;
  return err.retryable || err.code.startsWith("http_5") || err.code === "network";
}

/** `refused` when Slack says the token is wrong; `unreachable` for anything a later try can fix. */
export function classifySlackAuthFailure(err: unknown): ProbeResult {
  if (err instanceof SlackApiError && REFUSED.has(err.code)) return { state: "refused", reason: err.code };
  const reason = err instanceof SlackApiError ? err.code : err instanceof Error ? err.message : String(err);
  return { state: "unreachable", reason };
}

export interface SlackAuthProbeOptions {
  token: string;
  apiUrl?: string | undefined;
  log: Logger;
  dispatcher?: Dispatcher;
  /** One try per probe, this long at most: the probe runs at boot, which must not wait for a dead Slack. */
  timeoutMs?: number;
}

export interface SlackAuthProbe {
  /** One auth.test, no retries (the caller paces the probes). */
  probe(): Promise<ProbeResult>;
  /** Who the token belongs to, once a probe succeeded. */
  identity(): SlackIdentity | undefined;
}

/** auth.test as a probe: a fresh client each time, because UndiciSlackApi remembers a successful identity. */
export function slackAuthProbe(options: SlackAuthProbeOptions): SlackAuthProbe {
  let known: SlackIdentity | undefined;
  return {
    identity: () => known,
    async probe() {
      const api = new UndiciSlackApi({
        token: options.token,
        apiUrl: options.apiUrl,
        log: options.log,
        maxAttempts: 1,
        timeoutMs: options.timeoutMs ?? 5_000,
        ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
      });
      try {
        known = await api.identity();
        return { state: "up" };
      } catch (err) {
        return classifySlackAuthFailure(err);
      }
    },
  };
}

/** Start-up refuses a token Slack refuses: exit 1 with one line naming the variable, as for a missing secret. */
export class SlackTokenRefusedError extends Error {
  constructor(code: string) {
    super(`Slack refused SLACK_BOT_TOKEN (${code}): set a valid bot token (xoxb-…) for this workspace`);
    this.name = "SlackTokenRefusedError";
  }
}
