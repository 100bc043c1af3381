import type { Db } from "../db/client.ts";
import { type DashboardDeployment, dashboardDeployment } from "../domain/dashboard.ts";
import { activeDeployments } from "../domain/deployments.ts";
import type { Logger } from "../log.ts";
import type { PipelineEvent, PipelineEvents } from "../pipeline/events.ts";
import { deploymentDetail, deploymentRow, type LogLine } from "./dashboard-views.ts";

/** One open Server-Sent Events stream: what its user may see, and where to write. */
export interface LiveClient {
  visible: (tenantSlug: string) => boolean;
  send: (event: string, data: string) => void;
  close: () => void;
}

export interface DashboardLiveDeps {
  db: Db;
  events: PipelineEvents;
  log: Logger;
  /**
   * How often the active deployments are compared while someone watches. Pipeline events of this process update
   * pages at once; the poll catches what other processes write (the CLI's `tussilago deploy` queues a deployment,
   * `tussilago cancel` cancels one) and anything an event did not cover.
   */
  pollMs?: number;
}

/** Deployments whose events are kept, and lines per deployment: bounded memory whatever the traffic. */
const MAX_LOGS = 200;
const MAX_LINES = 300;

/**
 * Live updates of the dashboard. Subscribes to the pipeline's events, keeps a bounded in-memory log of each
 * deployment's events (stage transitions and their excerpts: the build output tail of a failure), and pushes the
 * re-rendered row and detail of a changed deployment to every open stream whose user may see its tenant.
 */
export class DashboardLive {
  readonly #deps: DashboardLiveDeps;
  readonly #clients = new Set<LiveClient>();
  readonly #logs = new Map<string, LogLine[]>();
  readonly #unsubscribe: () => void;
  #poll: NodeJS.Timeout | undefined;
  #seen = new Map<string, string>();

  constructor(deps: DashboardLiveDeps) {
    this.#deps = deps;
    this.#unsubscribe = deps.events.subscribe((event) => this.#onEvent(event));
  }

  logOf(deploymentUuid: string): readonly LogLine[] {
    return this.#logs.get(deploymentUuid) ?? [];
  }

  /** Registers a stream; the returned function unregisters it. */
  add(client: LiveClient): () => void {
    this.#clients.add(client);
    if (this.#poll === undefined) {
      this.#seen = this.#fingerprints();
      this.#poll = setInterval(() => this.#pollOnce(), this.#deps.pollMs ?? 2_000);
      this.#poll.unref();
    }
    return () => {
      this.#clients.delete(client);
      if (this.#clients.size === 0 && this.#poll !== undefined) {
        clearInterval(this.#poll);
        this.#poll = undefined;
      }
    };
  }

  get clients(): number {
    return this.#clients.size;
  }

  /** Ends every open stream (the HTTP server cannot close while they are open) and stops listening. */
  close(): void {
    this.#unsubscribe();
    for (const client of [...this.#clients]) client.close();
    this.#clients.clear();
    if (this.#poll !== undefined) clearInterval(this.#poll);
    this.#poll = undefined;
  }

  #onEvent(event: PipelineEvent): void {
    this.#append(event.deploymentUuid, { at: event.at, text: lineOf(event) });
    this.publish(event.deploymentUuid);
  }

  #append(uuid: string, line: LogLine): void {
    let lines = this.#logs.get(uuid);
    if (!lines) {
      if (this.#logs.size >= MAX_LOGS) {
        const oldest = this.#logs.keys().next().value;
        if (oldest !== undefined) this.#logs.delete(oldest);
      }
      lines = [];
      this.#logs.set(uuid, lines);
    }
    lines.push(line);
    if (lines.length > MAX_LINES) lines.splice(0, lines.length - MAX_LINES);
  }

  /** Sends the deployment's current row and detail to every stream allowed to see it. */
  publish(uuid: string): void {
    if (this.#clients.size === 0) return;
    let d: DashboardDeployment;
    try {
      d = dashboardDeployment(this.#deps.db, uuid);
    } catch (err) {
      this.#deps.log.warn({ err, deploymentId: uuid }, "dashboard: could not load a changed deployment");
      return;
    }
    const data = JSON.stringify({
      uuid: d.uuid,
      app: d.appSlug,
      status: d.status,
      row: deploymentRow(d).value,
      detail: deploymentDetail(d, this.logOf(uuid)).value,
    });
    for (const client of this.#clients) {
      try {
        if (client.visible(d.tenantSlug)) client.send("deployment", data);
      } catch (err) {
        this.#deps.log.warn({ err }, "dashboard: a live stream failed");
      }
    }
  }

  #fingerprints(): Map<string, string> {
    return new Map(
      activeDeployments(this.#deps.db).map((d) => [d.uuid, `${d.status} ${JSON.stringify(d.stageTimings)}`]),
    );
  }

  #pollOnce(): void {
    try {
      const now = this.#fingerprints();
      // New or changed active deployments, and those that left the active set (finished, cancelled, superseded).
      for (const [uuid, fp] of now) if (this.#seen.get(uuid) !== fp) this.publish(uuid);
      for (const uuid of this.#seen.keys()) if (!now.has(uuid)) this.publish(uuid);
      this.#seen = now;
    } catch (err) {
      this.#deps.log.warn({ err }, "dashboard: polling deployments failed");
    }
  }
}

function lineOf(event: PipelineEvent): string {
  if (event.type === "drain") {
    const stopped = Object.entries(event.stopped).map(([type, n]) => `${type} ×${n}`);
    return `old release stopped: ${stopped.join(", ") || "nothing"} (SIGTERM, ${event.graceSeconds} s grace)`;
  }
  const took = event.durationMs === undefined ? "" : ` in ${(event.durationMs / 1000).toFixed(1)} s`;
  if (event.type === "stage") {
    return `${event.stage} ${event.status}${took}${event.excerpt ? `: ${event.excerpt}` : ""}`;
  }
  const extra = event.reason ?? event.url;
  return `deployment ${event.status}${took}${extra ? `: ${extra}` : ""}`;
}
