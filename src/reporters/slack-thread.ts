import type { Db } from "../db/client.ts";
import { getAppByUuid } from "../domain/apps.ts";
import { getDeployment } from "../domain/deployments.ts";
import { currentRelease } from "../domain/releases.ts";
import {
  findDeploymentThread,
  recordDeploymentThread,
  type UnpostedThread,
  unpostedFinishedThreads,
} from "../domain/slack-threads.ts";
import type { ApiAvailability } from "../infra/api-availability.ts";
import type { SlackApi } from "../infra/slack-api.ts";
import { isSlackOutage } from "../infra/slack-availability.ts";
import type { Logger } from "../log.ts";
import {
  type DeploymentEvent,
  type PipelineEvent,
  type PipelineEvents,
  STAGES,
  type StageName,
} from "../pipeline/events.ts";
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
   * Slack's availability as the bot sees it. With it, an update that fails because Slack is down (network error,
   * timeout, 5xx) is kept and sent once Slack is back, instead of being dropped; without it, it is dropped.
   */
  availability?: Pick<ApiAvailability, "usable" | "onUp" | "reportUnreachable" | "reportUp"> | undefined;
  /** Deployments whose thread waits for Slack at most; past it the oldest one's updates are dropped (logged). */
  maxWaiting?: number;
  /**
   * At attach, deployments that finished within this window with a channel but no stored parent get their thread
   * posted from their recorded state (SQLite): what an earlier process kept in memory for a Slack outage and lost
   * when it stopped. 0 (the default) turns it off; the bot uses CATCH_UP_WINDOW_MS.
   */
  catchUpWindowMs?: number;
  /**
   * Asked after a failed deployment when an older release is current: is the app served right now (a probe through
   * the proxy, src/pipeline/serving-check.ts)? Without it the thread claims nothing about serving.
   */
  servingCheck?: ((appUuid: string) => Promise<{ serving: boolean; reason?: string | undefined }>) | undefined;
}

/** How far back a starting bot looks for threads an earlier process could not post (Slack down, then a restart). */
export const CATCH_UP_WINDOW_MS = 6 * 60 * 60 * 1000;

/** Deployments kept waiting for Slack by default: each holds one coalesced view, so memory stays small. */
export const MAX_WAITING_THREADS = 500;

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
  /** How many of the final replies Slack has taken: a retry after an outage goes on from there, never again. */
  repliesPosted: number;
  /** The serving check's answer for a failed deployment's last reply, once asked. */
  servingChecked?: { serving: boolean; reason?: string | undefined } | undefined;
  /** Waiting for Slack to come back (not scheduled, not in flight). */
  waiting: boolean;
  /** A chat.postMessage of the parent failed in a way that may still have posted it (timeout, 5xx). */
  mayHavePosted: boolean;
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
 *
 * While Slack is down (`availability`), a deployment's thread waits instead of losing its updates: no calls, the
 * latest state kept, and once the availability's probe finds Slack back, the parent is posted or edited and the
 * replies Slack has not taken yet follow, in order (docs/slack.md, *When Slack is down*).
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
  const availability = options.availability;
  const maxWaiting = options.maxWaiting ?? MAX_WAITING_THREADS;
  // In the order they started waiting: once Slack is back, the oldest deployment's thread is caught up first.
  const waiting = new Set<ThreadState>();

  const park = (s: ThreadState) => {
    if (s.waiting) return;
    s.waiting = true;
    waiting.add(s);
    if (waiting.size > maxWaiting) {
      const [oldest] = waiting;
      if (oldest) {
        waiting.delete(oldest);
        states.delete(oldest.uuid);
        log.warn({ deploymentId: oldest.uuid }, "Slack down too long: this deployment's thread updates are dropped");
      }
    }
  };
  const stopWatching = availability?.onUp(() => {
    const ready = [...waiting];
    waiting.clear();
    for (const s of ready) {
      s.waiting = false;
      if (s.dirty) schedule(s);
    }
  });

  const settleIfIdle = () => {
    for (const s of states.values()) if (s.inFlight || s.timer !== undefined) return;
    for (const w of waiters) w();
    waiters.clear();
  };

  const schedule = (s: ThreadState) => {
    if (s.inFlight || s.timer !== undefined || s.waiting) return;
    if (availability && !availability.usable) return park(s);
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
      .then(
        () => availability?.reportUp(),
        (err: unknown) => {
          if (availability && isSlackOutage(err)) {
            // Kept, not dropped: the state is sent again (coalesced) once Slack answers.
            s.dirty = true;
            availability.reportUnreachable(err instanceof Error ? err.message : String(err));
            log.info({ deploymentId: s.uuid }, "Slack unreachable: thread update kept until it is back");
          } else {
            log.warn({ err, deploymentId: s.uuid }, "Slack thread update failed");
          }
        },
      )
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
    if (!ts && (s.resumed || s.mayHavePosted || (thread.startedAt ?? thread.createdAt).getTime() < attachedAt)) {
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
      let posted: { ts: string };
      try {
        posted = await slack.postMessage({ channel, ...message, metadata: parentMetadata(s.uuid) });
      } catch (err) {
        // A timeout or a 5xx may come after Slack posted it: the next try looks for it before posting.
        if (isSlackOutage(err)) s.mayHavePosted = true;
        throw err;
      }
      ts = posted.ts;
      s.ts = ts;
      recordDeploymentThread(db, s.uuid, channel, ts);
    }
    if (s.final) {
      const serving =
        s.final.status === "failed" || s.final.status === "cancelled" ? currentRelease(db, s.appUuid) : undefined;
      // Checked once per deployment (a retry after a Slack outage reuses it): what the thread says about serving is
      // what a probe through the proxy said, never an assumption.
      if (s.servingChecked === undefined && serving && serving.deploymentUuid !== s.uuid && options.servingCheck) {
        s.servingChecked = await options.servingCheck(s.appUuid).catch((err: unknown) => {
          log.warn({ err, appId: s.appUuid }, "serving check failed");
          return { serving: false, reason: "the check itself failed" };
        });
      }
      const replies = renderReplies(s, serving, s.servingChecked);
      // In order, each once: the count moves only after Slack took the reply, so a retry starts at the first one
      // it did not take.
      while (s.repliesPosted < replies.length) {
        await slack.postMessage({ channel, text: replies[s.repliesPosted] as string, threadTs: ts });
        s.repliesPosted += 1;
      }
    }
  };

  const newState = (uuid: string, appUuid: string, appSlug: string): ThreadState => {
    const s: ThreadState = {
      uuid,
      appUuid,
      appSlug,
      stages: new Map(),
      dirty: false,
      timer: undefined,
      inFlight: undefined,
      lastSentAt: undefined,
      repliesPosted: 0,
      waiting: false,
      mayHavePosted: false,
      ts: undefined,
      resumed: false,
    };
    states.set(uuid, s);
    return s;
  };

  const PROCESS_STAGES: ReadonlySet<StageName> = new Set(["run", "processes"]);
  const unsubscribe = options.events.subscribe((event: PipelineEvent) => {
    const s = states.get(event.deploymentUuid) ?? newState(event.deploymentUuid, event.appUuid, event.appSlug);
    if (event.type === "drain") {
      s.drained = { stopped: event.stopped, graceSeconds: event.graceSeconds };
    } else if (event.type === "stage") {
      // The process stages' excerpt is platform text (counts of validated process type names), shown beside them.
      const detail = PROCESS_STAGES.has(event.stage) && event.status === "succeeded" ? event.excerpt : undefined;
      s.stages.set(event.stage, { status: event.status, durationMs: event.durationMs, detail });
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

  const window = options.catchUpWindowMs ?? 0;
  if (window > 0) {
    const unposted = unpostedFinishedThreads(db, new Date(attachedAt - window), maxWaiting);
    for (const d of unposted) {
      if (states.has(d.uuid)) continue;
      const s = newState(d.uuid, d.appUuid, d.appSlug);
      recordedView(s, d);
      // An earlier process may have posted the parent and died before storing its ts: look for it first.
      s.resumed = true;
      s.dirty = true;
      schedule(s);
    }
    if (unposted.length > 0) log.info({ count: unposted.length }, "Slack threads of earlier deployments to post");
  }

  return {
    idle: () =>
      new Promise<void>((resolve) => {
        waiters.add(resolve);
        settleIfIdle();
      }),
    stop: () => {
      unsubscribe();
      stopWatching?.();
      for (const s of states.values()) if (s.timer !== undefined) timers.clear(s.timer);
    },
  };
}

/** The view of a finished deployment from its row: stage timings, outcome, reason (no log tail: it is not stored). */
function recordedView(s: ThreadState, d: UnpostedThread): void {
  for (const [name, timing] of Object.entries(d.stageTimings)) {
    if (!(STAGES as readonly string[]).includes(name)) continue;
    const stage = name as StageName;
    const status = timing.status === "running" ? "started" : timing.status;
    const durationMs = timing.finishedAt !== undefined ? timing.finishedAt - timing.startedAt : undefined;
    s.stages.set(stage, { status, durationMs });
    if (status === "failed") s.failedStage = stage;
  }
  const final: DeploymentEvent = {
    type: "deployment",
    deploymentUuid: d.uuid,
    appUuid: d.appUuid,
    appSlug: d.appSlug,
    status: d.status,
    at: d.finishedAt.getTime(),
  };
  if (d.startedAt) final.durationMs = d.finishedAt.getTime() - d.startedAt.getTime();
  if (d.failureReason) final.reason = d.failureReason;
  if (d.status === "succeeded") final.url = `http://${d.domain}`;
  s.final = final;
}

function render(db: Db, s: ThreadState): { text: string; blocks: Record<string, unknown>[] } {
  const d = getDeployment(db, s.uuid);
  return renderParent(s, d, showsCommit(d) ? getAppByUuid(db, s.appUuid).githubRepo : undefined);
}
