import { EventEmitter } from "node:events";

/**
 * `release` runs the app's `release:` command (migrations) once, after the build and before any new process. `run`
 * and `health` are the web containers; `processes` starts the other process types (worker, beat, …) once the web
 * ones are healthy, before the route switch. The drain of the replaced release is no stage: it runs after the
 * deployment succeeded (stages/route-drain.ts) and is reported by a DrainEvent.
 */
export const STAGES = ["source", "build", "release", "run", "health", "processes", "route"] as const;
export type StageName = (typeof STAGES)[number];

/** What reporters (the log, the Slack deployment thread, GitHub commit statuses) consume. Public UUIDs only. */
export interface StageEvent {
  type: "stage";
  deploymentUuid: string;
  appUuid: string;
  appSlug: string;
  stage: StageName;
  /** `cancelled`: a cancel stopped the deployment in (or just before) this stage. */
  status: "started" | "succeeded" | "failed" | "skipped" | "cancelled";
  at: number;
  durationMs?: number;
  /** Short human text: the commit, the image, the URL, or a bounded log excerpt on failure. */
  excerpt?: string;
}

export interface DeploymentEvent {
  type: "deployment";
  deploymentUuid: string;
  appUuid: string;
  appSlug: string;
  status: "started" | "succeeded" | "failed" | "superseded" | "cancelled";
  at: number;
  durationMs?: number;
  /** Why it failed, or who cancelled it ("cancelled by @alice"). */
  reason?: string;
  url?: string;
  /** On `started`: an earlier attempt, maybe in another process, already started this deployment. */
  resumed?: boolean;
}

/**
 * The replaced releases' containers a succeeded deployment stopped (SIGTERM, then `graceSeconds` before SIGKILL),
 * counted per process type; sent once the drain is over. Nothing stopped → no event.
 */
export interface DrainEvent {
  type: "drain";
  deploymentUuid: string;
  appUuid: string;
  appSlug: string;
  stopped: Record<string, number>;
  graceSeconds: number;
  at: number;
}

export type PipelineEvent = StageEvent | DeploymentEvent | DrainEvent;

/**
 * The pipeline emits; reporters subscribe. The pipeline does not know Slack or GitHub exist, and a reporter that
 * throws never breaks a deployment (its error is contained here).
 */
export class PipelineEvents {
  readonly #emitter = new EventEmitter();
  readonly #onReporterError: (err: unknown) => void;

  constructor(onReporterError: (err: unknown) => void = () => {}) {
    this.#onReporterError = onReporterError;
  }

  emit(event: PipelineEvent): void {
    for (const listener of this.#emitter.listeners("event")) {
      try {
        const result = (listener as (e: PipelineEvent) => unknown)(event);
        if (result instanceof Promise) result.catch(this.#onReporterError);
      } catch (err) {
        this.#onReporterError(err);
      }
    }
  }

  subscribe(listener: (event: PipelineEvent) => void | Promise<void>): () => void {
    this.#emitter.on("event", listener);
    return () => this.#emitter.off("event", listener);
  }
}
