import type { Metrics } from "../lib/metrics.ts";
import type { PipelineEvent, PipelineEvents } from "../pipeline/events.ts";

/** The deployment's trigger (`manual`, `push`, …) from its uuid; `unknown` when it cannot be read. */
export type TriggerOf = (deploymentUuid: string) => string | undefined;

/**
 * Counts finished deployments by outcome and trigger and observes each stage's duration, from the same events as the
 * log reporter. Labels carry no app slug: their number of values must stay bounded (src/lib/metrics.ts).
 */
export function attachMetricsReporter(events: PipelineEvents, metrics: Metrics, triggerOf: TriggerOf): () => void {
  return events.subscribe((event: PipelineEvent) => {
    if (event.type === "stage") {
      if (event.status === "started" || event.durationMs === undefined) return;
      metrics.stageDuration.observe({ stage: event.stage, status: event.status }, event.durationMs / 1_000);
      return;
    }
    if (event.type === "drain" || event.status === "started") return;
    let trigger: string | undefined;
    try {
      trigger = triggerOf(event.deploymentUuid);
    } catch {
      trigger = undefined;
    }
    metrics.deployments.inc({ outcome: event.status, trigger: trigger ?? "unknown" });
  });
}
