import type { Db } from "../db/client.ts";
import { getAppByUuid } from "../domain/apps.ts";
import { getDeployment } from "../domain/deployments.ts";
import { currentRelease } from "../domain/releases.ts";
import { findDeploymentThread, recordDeploymentThread } from "../domain/slack-threads.ts";
import type { SlackApi } from "../infra/slack-api.ts";
import type { Logger } from "../log.ts";
import type { PipelineEvent, PipelineEvents } from "../pipeline/events.ts";
import { renderParent, renderReplies, showsCommit, type ThreadView } from "./slack-thread-format.ts";
import { findParentMessage, parentMetadata } from "./slack-thread-parent.ts";

// The text and the parent adoption live in their own modules; their public names stay importable from here.
export { linkDeploymentChannel } from "../domain/slack-threads.ts";
export { formatDuration, logTail, MAX_LOG_TAIL_CHARS } from "./slack-thread-format.ts";
export { HISTORY_LIMIT, HISTORY_MARGIN_MS, PARENT_EVENT_TYPE } from "./slack-thread-parent.ts";

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
  /**
   * Asked after a failed deployment when an older release is current: is the app served right now (a probe through
   * the proxy, src/pipeline/serving-check.ts)? Without it the thread claims nothing about serving.
   */
  servingCheck?: ((appUuid: string) => Promise<{ serving: boolean; reason?: string | undefined }>) | undefined;
}

export interface SlackThreadReporter {
  /** Resolves when nothing is scheduled or in flight (tests, shutdown). */
  idle(): Promise<void>;
  stop(): void;
}

interface ThreadState extends ThreadView {
  appUuid: string;
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
 * deployment is adopted (slack-thread-parent.ts). Fresh deployments, the common case, cost no extra call.
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
      ts = await findParentMessage({ slack, log }, s.uuid, channel, thread.createdAt);
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
      const serving = s.final.status === "failed" ? currentRelease(db, s.appUuid) : undefined;
      const check =
        serving && serving.deploymentUuid !== s.uuid && options.servingCheck
          ? await options.servingCheck(s.appUuid).catch((err: unknown) => {
              log.warn({ err, appId: s.appUuid }, "serving check failed");
              return { serving: false, reason: "the check itself failed" };
            })
          : undefined;
      for (const text of renderReplies(s, serving, check)) await slack.postMessage({ channel, text, threadTs: ts });
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
  return renderParent(s, d, showsCommit(d) ? getAppByUuid(db, s.appUuid).githubRepo : undefined);
}
