import { type AppView, getAppByUuid } from "../domain/apps.ts";
import { listDeployments } from "../domain/deployments.ts";
import { wantedContainers } from "../domain/formation.ts";
import { openIncident } from "../domain/incidents.ts";
import { currentRelease, type ReleaseView } from "../domain/releases.ts";
import type { ContainerExit, ExitWatch } from "../infra/container-engine.ts";
import { cappedExponentialDelay } from "../lib/backoff.ts";
import { repairAppRedisOf } from "./app-redis-reconcile.ts";
import { describeRestoreFailure, restoreApp } from "./app-restore.ts";
import { type DataPlaneHooks, reportIncident, reportRecovered } from "./data-plane.ts";
import type { PipelineDeps } from "./deps.ts";
import type { PipelineEvents } from "./events.ts";
import { checkServing } from "./serving-check.ts";
import { LABELS, names } from "./settings.ts";

export interface WatcherSettings {
  /** Restart delays after the first (immediate) one: base·2^(n-2), capped, full jitter (src/lib/backoff.ts). */
  backoff: { baseMs: number; maxMs: number };
  /** Deaths in a row, each before `stableMs` of uptime, that make a crash loop (reported once per incident). */
  crashLoopAfter: number;
  /** Uptime after which a death counts as a new first one, and a crash loop is over. */
  stableMs: number;
  /** How many of the app's last lines the crash report carries. */
  logLines: number;
  /**
   * How long after an app Redis container's death the watcher looks at it: a container a drop or destroy removed
   * (`rm --force` also reports `died`) is gone by then and stays gone; only one still there, stopped, is restarted.
   */
  redisSettleMs: number;
}

export const DEFAULT_WATCHER_SETTINGS: WatcherSettings = {
  backoff: { baseMs: 1_000, maxMs: 60_000 },
  crashLoopAfter: 3,
  stableMs: 60_000,
  logLines: 20,
  redisSettleMs: 1_000,
};

/**
 * One per app and process type: a worker that keeps dying backs off on its own, and a web container that dies
 * meanwhile is restarted at once (with one state per app, the worker's backoff held the web restart back).
 */
interface AppState {
  /** Deaths in a row, none followed by `stableMs` of uptime. */
  deaths: number;
  /** When the app was last brought back (health-checked), for the stable-uptime rule. */
  upSince: number | undefined;
  busy: boolean;
  /** The last lines before the latest death, for the crash-loop report. */
  lastTail: string;
}

/** An app's private Redis server, as the watcher restarts it (app-redis-reconcile.ts does the work). */
interface RedisState {
  deaths: number;
  upSince: number | undefined;
  busy: boolean;
}

/** The `io.tussilago.managed` value of an app's private Redis container (src/infra/app-redis.ts). */
const APP_REDIS_MANAGED = "app-redis";

/**
 * Fast restarts of dead app processes. `podman events` reports every app container's exit at once (instead of the
 * next periodic reconcile, up to its interval later); the current release's container is brought back through the
 * same path as reconcile (app-restore.ts): immediately the first time, then with capped exponential backoff while it
 * keeps dying. A crash loop, an image gone, an engine that refuses are incidents: recorded, reported once with the
 * app's last lines, shown by `status` and counted by `/readyz`. The stream is a subprocess that may end; it is
 * reopened with capped backoff, and `onStreamGap` (a reconcile pass) covers what it missed meanwhile.
 */
export class DataPlaneWatcher {
  readonly #deps: PipelineDeps;
  readonly #hooks: DataPlaneHooks;
  readonly #settings: WatcherSettings;
  readonly #onStreamGap: (() => void) | undefined;
  readonly #onRestarted: (() => void) | undefined;
  /** Keyed by app uuid, then process type. */
  readonly #apps = new Map<string, Map<string, AppState>>();
  /** Apps reconcile is fixing (`exclusive`): their exits are its own health checks' business. */
  readonly #exclusive = new Set<string>();
  readonly #redis = new Map<string, RedisState>();
  readonly #pending = new Set<Promise<void>>();
  readonly #stop = new AbortController();
  #watch: ExitWatch | undefined;
  #loop: Promise<void> | undefined;

  constructor(
    deps: PipelineDeps,
    options: {
      hooks?: DataPlaneHooks;
      settings?: Partial<WatcherSettings>;
      onStreamGap?: () => void;
      /** Each time a dead app container runs again (the restart counter of `/metrics`). */
      onRestarted?: () => void;
    } = {},
  ) {
    this.#deps = { ...deps, log: deps.log.child({ component: "watcher" }) };
    this.#hooks = options.hooks ?? {};
    this.#settings = { ...DEFAULT_WATCHER_SETTINGS, ...options.settings };
    this.#onStreamGap = options.onStreamGap;
    this.#onRestarted = options.onRestarted;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#watch?.stop();
    await this.#loop;
    await this.idle();
  }

  /** Resolves once no restart is scheduled or running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /**
   * A deployment that succeeded put a health-checked release behind the route; once the proxy confirms it, the app's
   * incident (if any) is over. Returns the unsubscribe function.
   */
  followDeployments(events: PipelineEvents): () => void {
    return events.subscribe((event) => {
      if (event.type !== "deployment" || event.status !== "succeeded") return;
      for (const state of this.#apps.get(event.appUuid)?.values() ?? []) state.deaths = 0;
      if (!openIncident(this.#deps.db, event.appUuid)) return;
      this.#track(
        (async () => {
          const app = getAppByUuid(this.#deps.db, event.appUuid);
          const check = await checkServing(this.#deps, app);
          if (check.serving) {
            reportRecovered(this.#deps, this.#hooks, app.uuid, `${app.domain} answered through the proxy just now`);
          }
        })(),
      );
    });
  }

  /**
   * Runs `fn` (reconcile's fix of one app) unless the watcher is bringing the app back right now (then false). While
   * it runs, exits of the app's container are left to `fn`'s own health check, as during the watcher's restarts.
   */
  async exclusive(appUuid: string, fn: () => Promise<void>): Promise<boolean> {
    const states = [...(this.#apps.get(appUuid)?.values() ?? [])];
    if (this.#exclusive.has(appUuid) || states.some((s) => s.busy)) return false;
    this.#exclusive.add(appUuid);
    try {
      await fn();
    } finally {
      this.#exclusive.delete(appUuid);
    }
    return true;
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stop.signal.aborted) {
      const opened = this.#deps.now();
      // Every container of this bot: app containers (`managed=app`) and the apps' private Redis servers
      // (`managed=app-redis`); handleExit tells them apart and ignores the rest (builds, one-offs).
      this.#watch = this.#deps.engine.watchExits({ [LABELS.instance]: this.#deps.settings.instance }, (e) =>
        this.handleExit(e),
      );
      await this.#watch.ended;
      if (this.#stop.signal.aborted) break;
      failures = this.#deps.now() - opened > this.#settings.stableMs ? 1 : failures + 1;
      const delay = cappedExponentialDelay(failures, { baseMs: 1_000, maxMs: 30_000 });
      this.#deps.log.warn({ delayMs: delay }, "container event stream ended; reopening it");
      try {
        await this.#deps.sleep(delay, this.#stop.signal);
      } catch {
        break;
      }
      this.#onStreamGap?.();
    }
  }

  /**
   * One exit reported by the engine: the current release's container of a live, idle app is restarted, and so is an
   * app's private Redis (its apps reconnect); anything else is ignored.
   */
  handleExit(exit: ContainerExit): void {
    const appUuid = exit.labels[LABELS.app];
    if (appUuid === undefined || this.#stop.signal.aborted) return;
    const managed = exit.labels[LABELS.managed];
    if (managed === APP_REDIS_MANAGED) {
      this.#redisDied(appUuid, exit.name);
      return;
    }
    if (managed !== "app") return;
    const target = this.#target(appUuid, exit.name);
    if (!target) return;
    const state = this.#state(appUuid, exit.labels[LABELS.process] ?? "web");
    // Its own health check sees a death during a restart; a second restart would race it.
    if (state.busy || this.#exclusive.has(appUuid)) return;
    const log = this.#deps.log.child({ appId: appUuid, tenantId: target.app.tenantUuid });
    log.info({ container: exit.name, exitCode: exit.exitCode }, "app container died");
    this.#track(this.#afterDeath(target.app, target.release, state, exit.name));
  }

  #target(appUuid: string, container: string): { app: AppView; release: ReleaseView } | undefined {
    let app: AppView;
    try {
      app = getAppByUuid(this.#deps.db, appUuid);
    } catch {
      return undefined; // destroyed: reconcile removes what is left
    }
    const release = currentRelease(this.#deps.db, app.uuid);
    if (!release) return undefined;
    // Any process type's container the formation asks for (web-1, worker-2, …); one beyond it was scaled away.
    const wanted = wantedContainers(release, app.formation).map((w) =>
      names.container(app.uuid, release.deploymentUuid, w.type, w.index),
    );
    if (!wanted.includes(container)) return undefined;
    // A deployment in progress replaces or restarts the app itself; restarting here would race its route switch.
    if (listDeployments(this.#deps.db, app.uuid, 1)[0]?.status === "running") return undefined;
    return { app, release };
  }

  /**
   * An app's private Redis died: started again (same container, data volume and password) after `redisSettleMs`,
   * unless it was removed meanwhile (a drop or destroy) or runs already; while it keeps dying within `stableMs`,
   * with the same capped backoff as app restarts. A failure is logged; reconcile's pass (30 s) tries again.
   */
  #redisDied(appUuid: string, container: string): void {
    if (!this.#deps.appRedis) return;
    let state = this.#redis.get(appUuid);
    if (!state) {
      state = { deaths: 0, upSince: undefined, busy: false };
      this.#redis.set(appUuid, state);
    }
    if (state.busy) return;
    const s = state;
    s.busy = true;
    const log = this.#deps.log.child({ appId: appUuid });
    log.info({ container }, "app redis died");
    this.#track(
      (async () => {
        try {
          const now = this.#deps.now();
          if (s.upSince !== undefined && now - s.upSince >= this.#settings.stableMs) s.deaths = 0;
          s.deaths++;
          const backoff = s.deaths <= 1 ? 0 : cappedExponentialDelay(s.deaths - 1, this.#settings.backoff, () => 1);
          try {
            await this.#deps.sleep(this.#settings.redisSettleMs + backoff, this.#stop.signal);
          } catch {
            return;
          }
          const info = await this.#deps.engine.inspectContainer(container);
          if (!info || info.running) return;
          const action = await repairAppRedisOf(this.#deps, appUuid);
          if (action === "not-wanted") return;
          s.upSince = this.#deps.now();
          log.info({ action, deaths: s.deaths }, "watcher: app redis restarted");
          this.#onRestarted?.();
        } catch (err) {
          log.warn({ err }, "watcher: could not bring the app's redis back; reconcile tries again");
        } finally {
          s.busy = false;
        }
      })(),
    );
  }

  #state(appUuid: string, processType: string): AppState {
    let types = this.#apps.get(appUuid);
    if (!types) {
      types = new Map();
      this.#apps.set(appUuid, types);
    }
    let s = types.get(processType);
    if (!s) {
      s = { deaths: 0, upSince: undefined, busy: false, lastTail: "" };
      types.set(processType, s);
    }
    return s;
  }

  #track(p: Promise<void>): void {
    const tracked = p.catch((err: unknown) => this.#deps.log.error({ err }, "watcher: restart failed unexpectedly"));
    this.#pending.add(tracked);
    void tracked.finally(() => this.#pending.delete(tracked));
  }

  async #afterDeath(app: AppView, release: ReleaseView, state: AppState, container: string): Promise<void> {
    state.busy = true;
    try {
      // Read before anything restarts it: these are the lines that explain the death.
      const raw = await this.#deps.engine.containerLogs(container, this.#settings.logLines).catch(() => "");
      state.lastTail = raw;
      this.#countDeath(state);
      if (!(await this.#restoreWithBackoff(app, release, state, container))) return;
    } finally {
      state.busy = false;
    }
    this.#track(this.#confirm(app, state));
  }

  #countDeath(state: AppState): void {
    const now = this.#deps.now();
    if (state.upSince !== undefined && now - state.upSince >= this.#settings.stableMs) state.deaths = 0;
    state.deaths++;
    state.upSince = undefined;
  }

  /** True once the app runs again (health-checked); false when it gave up (image gone, stopped, moved on). */
  async #restoreWithBackoff(app: AppView, release: ReleaseView, state: AppState, container: string): Promise<boolean> {
    const log = this.#deps.log.child({ appId: app.uuid, tenantId: app.tenantUuid });
    const deps = { ...this.#deps, log };
    while (!this.#stop.signal.aborted) {
      if (state.deaths >= this.#settings.crashLoopAfter) {
        await reportIncident(deps, this.#hooks, app, release, {
          kind: "crash_loop",
          reason: `its process died ${state.deaths} times in a row within ${Math.round(this.#settings.stableMs / 1_000)} s of starting; restarts back off`,
          logTail: state.lastTail,
        });
      }
      const delay = state.deaths <= 1 ? 0 : cappedExponentialDelay(state.deaths - 1, this.#settings.backoff, () => 1);
      if (delay > 0) {
        log.info({ delayMs: delay, deaths: state.deaths }, "watcher: restart backs off");
        try {
          await this.#deps.sleep(delay, this.#stop.signal);
        } catch {
          return false;
        }
      }
      // The world may have moved on while we waited: a new release, a deployment started, the app destroyed.
      const target = this.#target(app.uuid, container);
      if (!target) return false;
      const started = this.#deps.now();
      try {
        // The app as it is now: a `scale` while we waited changes what is restored.
        await restoreApp(deps, target.app, release);
      } catch (err) {
        const failure = describeRestoreFailure(err);
        log.warn({ err, kind: failure.kind }, "watcher: could not bring the app back");
        if (failure.kind === "image_missing") {
          await reportIncident(deps, this.#hooks, app, release, { ...failure, logTail: state.lastTail });
          return false; // nothing to restart from: a rebuild (or a person) brings it back
        }
        if (failure.logTail !== "") state.lastTail = failure.logTail;
        if (failure.kind === "engine") await reportIncident(deps, this.#hooks, app, release, failure);
        this.#countDeath(state);
        continue;
      }
      state.upSince = this.#deps.now();
      log.info({ restartMs: state.upSince - started, deaths: state.deaths }, "watcher: app restarted");
      this.#onRestarted?.();
      return true;
    }
    return false;
  }

  /**
   * After a restart the app is checked through the proxy (as a visitor reaches it) before anything says it serves;
   * a crash loop is over only after `stableMs` of uptime, checked again then.
   */
  async #confirm(app: AppView, state: AppState): Promise<void> {
    const incident = openIncident(this.#deps.db, app.uuid);
    if (!incident) return;
    const upSince = state.upSince;
    if (incident.kind === "crash_loop") {
      try {
        await this.#deps.sleep(this.#settings.stableMs, this.#stop.signal);
      } catch {
        return;
      }
      // It died again meanwhile (#countDeath cleared upSince): the loop goes on.
      if (state.upSince !== upSince) return;
    }
    const check = await checkServing(this.#deps, app);
    if (!check.serving) {
      this.#deps.log.warn({ appId: app.uuid, reason: check.reason }, "watcher: restarted, but not served yet");
      return;
    }
    state.deaths = 0;
    // Another process type of the app still in its crash loop keeps the incident open (the site answering says
    // nothing about a worker that keeps dying).
    const looping = [...(this.#apps.get(app.uuid)?.values() ?? [])].some(
      (s) => s !== state && s.deaths >= this.#settings.crashLoopAfter,
    );
    if (looping) return;
    reportRecovered(this.#deps, this.#hooks, app.uuid, `${app.domain} answered through the proxy just now`);
  }
}
