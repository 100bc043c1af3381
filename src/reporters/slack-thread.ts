import type { Db } from "../db/client.ts";
import { getAppByUuid } from "../domain/apps.ts";
import { getDeployment } from "../domain/deployments.ts";
import { currentRelease } from "../domain/releases.ts";
import { findDeploymentThread, recordDeploymentThread } from "../domain/slack-threads.ts";
import { compareSlackTs, escapeSlack, type SlackApi, type SlackMetadata } from "../infra/slack-api.ts";
import type { Logger } from "../log.ts";
import {
  type DeploymentEvent,
  type PipelineEvent,
  type PipelineEvents,
  STAGES,
  type StageName,
} from "../pipeline/events.ts";
import { stripControl } from "./slack-logs.ts";
import { commitRef } from "./slack-notices.ts";

export { linkDeploymentChannel } from "../domain/slack-threads.ts";

export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: Timers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface SlackThreadOptions {
  events: PipelineEvents;
  db: Db;
  slack: SlackApi;
  log: Logger;
  now?: () => number;
  timers?: Timers;
  /**
   * Minimum gap between two writes for one deployment. Slack allows about one message per second per channel and
   * ~50 chat.update per minute per workspace (Tier 3); 1 s per deployment keeps a few parallel deploys inside it.
   */
  minIntervalMs?: number;
}

export interface SlackThreadReporter {
  /** Resolves when nothing is scheduled or in flight (tests, shutdown). */
  idle(): Promise<void>;
  stop(): void;
}

/** The metadata `event_type` on every parent message; its payload names the deployment (public UUID). */
export const PARENT_EVENT_TYPE = "tussilago_deployment";
/** The history search starts this long before the deployment was created: our clock and Slack's may differ. */
export const HISTORY_MARGIN_MS = 60_000;
/** One page of `conversations.history`: the parent is among the channel's last 100 messages or is not looked for. */
export const HISTORY_LIMIT = 100;

function parentMetadata(deploymentUuid: string): SlackMetadata {
  return { event_type: PARENT_EVENT_TYPE, event_payload: { deployment: deploymentUuid } };
}

/** Epoch milliseconds as a Slack `ts` bound ("seconds.micros"). */
function slackTs(ms: number): string {
  return (Math.max(0, ms) / 1_000).toFixed(6);
}

interface StageState {
  status: "started" | "succeeded" | "failed" | "skipped";
  durationMs?: number | undefined;
}

interface ThreadState {
  uuid: string;
  appUuid: string;
  appSlug: string;
  stages: Map<StageName, StageState>;
  failedStage?: StageName;
  failedExcerpt?: string | undefined;
  final?: DeploymentEvent;
  dirty: boolean;
  timer: unknown;
  inFlight: Promise<void> | undefined;
  lastSentAt: number | undefined;
  repliesSent: boolean;
  /** The parent's ts once known here: edits keep going to it even if storing it on the row failed. */
  ts: string | undefined;
  /** A `started` event said an earlier attempt (maybe another process) started it: it may have posted a parent. */
  resumed: boolean;
}

export const MAX_LOG_TAIL_CHARS = 2_500;

export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const s = Math.round(ms / 1_000);
  return `${Math.floor(s / 60)}m ${s % 60}s`;
}

const ICON: Record<StageState["status"] | "pending", string> = {
  pending: ":white_small_square:",
  started: ":arrows_counterclockwise:",
  succeeded: ":white_check_mark:",
  failed: ":x:",
  skipped: ":heavy_minus_sign:",
};

/** Bounded and inert: the tail of the text (where the error is), with Slack's control characters escaped. */
export function logTail(text: string, max = MAX_LOG_TAIL_CHARS): string {
  // Terminal escapes and bidi overrides out first (build tools colour their output), as for /tussilago logs.
  const clean = stripControl(text);
  const tail = clean.length > max ? `…${clean.slice(-max)}` : clean;
  return escapeSlack(tail);
}

/**
 * One parent message per deployment, edited in place as a stage checklist; details go in thread replies. Updates
 * are coalesced per deployment (the last state wins, the final state is always sent), the parent's ts is stored on
 * the deployment row before any update so a retried job edits it instead of posting another, and every Slack error
 * stays here: the pipeline never waits for Slack and never fails because of it.
 *
 * A process can die after chat.postMessage succeeded and before the ts was stored. The parent therefore carries
 * message metadata naming the deployment, and before posting one for a deployment that an earlier attempt or an
 * earlier process may have reported (the `started` event says `resumed`, or the deployment began before this
 * reporter was attached), the channel's recent history is searched for it: a parent posted by this bot for this
 * deployment is adopted. Fresh deployments, the common case, cost no extra call. If the search fails (missing
 * `channels:history` / `groups:history`, the bot not in the channel, Slack down), a warning is logged and a new
 * parent is posted: a duplicate is better than no thread.
 */
export function attachSlackThreadReporter(options: SlackThreadOptions): SlackThreadReporter {
  const { db, slack, log } = options;
  const now = options.now ?? Date.now;
  const timers = options.timers ?? realTimers;
  const minInterval = options.minIntervalMs ?? 1_000;
  // Deployments that began before this instant may have been reported by an earlier process.
  const attachedAt = now();
  const states = new Map<string, ThreadState>();
  const waiters = new Set<() => void>();

  const settleIfIdle = () => {
    for (const s of states.values()) if (s.inFlight || s.timer !== undefined) return;
    for (const w of waiters) w();
    waiters.clear();
  };

  const schedule = (s: ThreadState) => {
    if (s.inFlight || s.timer !== undefined) return;
    const wait = s.lastSentAt === undefined ? 0 : Math.max(0, s.lastSentAt + minInterval - now());
    if (wait === 0) return flush(s);
    s.timer = timers.set(() => {
      s.timer = undefined;
      flush(s);
    }, wait);
  };

  const flush = (s: ThreadState) => {
    s.dirty = false;
    s.inFlight = send(s)
      .catch((err: unknown) => log.warn({ err, deploymentId: s.uuid }, "Slack thread update failed"))
      .finally(() => {
        s.inFlight = undefined;
        s.lastSentAt = now();
        if (s.dirty) schedule(s);
        else if (s.final) states.delete(s.uuid);
        settleIfIdle();
      });
  };

  const send = async (s: ThreadState) => {
    const thread = findDeploymentThread(db, s.uuid);
    const channel = thread?.channel;
    if (!thread || !channel) return; // no linked or invoking channel: nothing to report to
    const message = render(db, s);
    let ts = s.ts ?? thread.ts;
    if (!ts && (s.resumed || (thread.startedAt ?? thread.createdAt).getTime() < attachedAt)) {
      ts = await findParent(s.uuid, channel, thread.createdAt);
      if (ts) {
        s.ts = ts;
        recordDeploymentThread(db, s.uuid, channel, ts);
      }
    }
    if (ts) {
      s.ts = ts;
      await slack.updateMessage({ channel, ts, ...message });
    } else {
      const posted = await slack.postMessage({ channel, ...message, metadata: parentMetadata(s.uuid) });
      ts = posted.ts;
      s.ts = ts;
      recordDeploymentThread(db, s.uuid, channel, ts);
    }
    if (s.final && !s.repliesSent) {
      s.repliesSent = true;
      for (const text of replies(db, s)) await slack.postMessage({ channel, text, threadTs: ts });
    }
  };

  /** The ts of the parent this bot posted for the deployment, from the channel's history; never throws. */
  const findParent = async (uuid: string, channel: string, createdAt: Date): Promise<string | undefined> => {
    try {
      const messages = await slack.history({
        channel,
        oldest: slackTs(createdAt.getTime() - HISTORY_MARGIN_MS),
        limit: HISTORY_LIMIT,
      });
      const named = messages.filter(
        (m) => m.metadata?.event_type === PARENT_EVENT_TYPE && m.metadata.event_payload.deployment === uuid,
      );
      if (named.length === 0) return undefined;
      const me = await slack.identity();
      const ours = named
        .filter((m) => (me.botId !== undefined && m.botId === me.botId) || m.user === me.userId)
        .sort((a, b) => compareSlackTs(a.ts, b.ts));
      const first = ours[0];
      if (first)
        log.info({ deploymentId: uuid, channel, ts: first.ts }, "Slack thread: adopted the parent posted earlier");
      return first?.ts;
    } catch (err) {
      log.warn(
        { err, deploymentId: uuid, channel },
        "Slack thread: could not look for a parent posted earlier (needs channels:history / groups:history and the bot in the channel); posting a new one",
      );
      return undefined;
    }
  };

  const unsubscribe = options.events.subscribe((event: PipelineEvent) => {
    let s = states.get(event.deploymentUuid);
    if (!s) {
      s = {
        uuid: event.deploymentUuid,
        appUuid: event.appUuid,
        appSlug: event.appSlug,
        stages: new Map(),
        dirty: false,
        timer: undefined,
        inFlight: undefined,
        lastSentAt: undefined,
        repliesSent: false,
        ts: undefined,
        resumed: false,
      };
      states.set(s.uuid, s);
    }
    if (event.type === "stage") {
      s.stages.set(event.stage, { status: event.status, durationMs: event.durationMs });
      if (event.status === "failed") {
        s.failedStage = event.stage;
        s.failedExcerpt = event.excerpt;
      }
    } else if (event.status === "started") {
      // A retried job starts over: the checklist restarts with it, the parent message stays the same.
      if (event.resumed) s.resumed = true;
      s.stages.clear();
      delete s.failedStage;
      delete s.failedExcerpt;
    } else {
      s.final = event;
    }
    s.dirty = true;
    schedule(s);
  });

  return {
    idle: () =>
      new Promise<void>((resolve) => {
        waiters.add(resolve);
        settleIfIdle();
      }),
    stop: () => {
      unsubscribe();
      for (const s of states.values()) if (s.timer !== undefined) timers.clear(s.timer);
    },
  };
}

function render(db: Db, s: ThreadState): { text: string; blocks: Record<string, unknown>[] } {
  const d = getDeployment(db, s.uuid);
  const what = d.trigger === "rollback" ? `rollback to ${escapeSlack(d.ref)}` : `deploy \`${escapeSlack(d.ref)}\``;
  const state = s.final
    ? s.final.status === "succeeded"
      ? `:white_check_mark: live in ${formatDuration(s.final.durationMs ?? 0)}`
      : s.final.status === "failed"
        ? `:x: failed${s.failedStage ? ` at ${s.failedStage}` : ""}`
        : ":fast_forward: superseded by a newer deployment"
    : ":hourglass_flowing_sand: in progress";
  const title = `*${s.appSlug}* · ${what} · ${state}`;
  const source = d.trigger === "push" ? pushSource(db, s.appUuid, d) : undefined;
  const checklist = STAGES.map((name) => {
    const st = s.stages.get(name);
    const time = st?.durationMs === undefined ? "" : ` ${formatDuration(st.durationMs)}`;
    return `${ICON[st?.status ?? "pending"]} ${name}${time}`;
  }).join("\n");
  return {
    text: source ? `${title}\n${source}` : title,
    blocks: [
      { type: "section", text: { type: "mrkdwn", text: source ? `${title}\n${source}` : title } },
      { type: "section", text: { type: "mrkdwn", text: checklist } },
      { type: "context", elements: [{ type: "mrkdwn", text: `Deployment ${s.uuid}` }] },
    ],
  };
}

/** "Pushed by alice · <commit link>": who set a push deployment off, and what it builds. */
function pushSource(
  db: Db,
  appUuid: string,
  d: { author: string | null; commitSha: string | null },
): string | undefined {
  if (!d.author && !d.commitSha) return undefined;
  const by = d.author ? `Pushed by ${escapeSlack(d.author)}` : "Pushed";
  if (!d.commitSha) return by;
  const repo = getAppByUuid(db, appUuid).githubRepo;
  return `${by} · commit ${commitRef(repo, d.commitSha)}`;
}

function replies(db: Db, s: ThreadState): string[] {
  const final = s.final;
  if (!final) return [];
  if (final.status === "succeeded") {
    return [`Live at ${escapeSlack(final.url ?? "")} after ${formatDuration(final.durationMs ?? 0)}.`];
  }
  if (final.status !== "failed") return [];
  const out: string[] = [];
  const reason = escapeSlack(final.reason ?? "unknown reason");
  out.push(
    s.failedStage === "health"
      ? `Health check failed: ${reason}`
      : `Failed at ${s.failedStage ?? "an unknown stage"}: ${reason}`,
  );
  if (s.failedExcerpt && s.failedExcerpt !== final.reason)
    out.push(`Log tail:\n\`\`\`${logTail(s.failedExcerpt)}\`\`\``);
  const serving = currentRelease(db, s.appUuid);
  out.push(
    serving && serving.deploymentUuid !== s.uuid
      ? `The previous release v${serving.version} keeps serving.`
      : "No earlier release was serving, so the app stays down until a deployment succeeds.",
  );
  return out;
}
