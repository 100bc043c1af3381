import type { Logger } from "../log.ts";
import type { PipelineEvent, PipelineEvents } from "../pipeline/events.ts";

/** The first reporter: every pipeline event as one structured log line, with the deployment's ids. */
export function attachLogReporter(events: PipelineEvents, log: Logger): () => void {
  return events.subscribe((event: PipelineEvent) => {
    const ctx = { appId: event.appUuid, deploymentId: event.deploymentUuid, app: event.appSlug };
    if (event.type === "stage") {
      const level = event.status === "failed" ? "warn" : "info";
      log[level](
        { ...ctx, stage: event.stage, status: event.status, durationMs: event.durationMs, excerpt: event.excerpt },
        `stage ${event.stage} ${event.status}`,
      );
    } else if (event.type === "drain") {
      log.info(
        { ...ctx, stopped: event.stopped, graceSeconds: event.graceSeconds },
        "old release's containers stopped",
      );
    } else {
      const level = event.status === "failed" ? "warn" : "info";
      log[level](
        { ...ctx, status: event.status, durationMs: event.durationMs, reason: event.reason, url: event.url },
        `deployment ${event.status}`,
      );
    }
  });
}
