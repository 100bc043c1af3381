import type { AppView } from "../../domain/apps.ts";
import { describeCounts, type WantedContainer } from "../../domain/formation.ts";
import type { PipelineDeps } from "../deps.ts";
import { TenantError } from "../errors.ts";
import { runProcess } from "./run-health.ts";

/**
 * processes: the release's other process types (`worker`, `beat`, …), after its web containers answered their health
 * check and before the route switches (docs/python-apps.md, "Process types"). Each container starts with the web
 * container's confinement; then, after `processSettleMs`, every one must still be running. A process that exited by
 * then (a missing setting, a broker it cannot reach, a typo in the command) fails the deployment with its log tail:
 * nothing has switched, and the old release's processes keep running. One that dies later is the exit watcher's.
 */
export async function processesStage(
  deps: PipelineDeps,
  app: AppView,
  deploymentUuid: string,
  image: string,
  wanted: readonly WantedContainer[],
  signal?: AbortSignal,
): Promise<{ excerpt: string; containers: string[] }> {
  const results = await Promise.allSettled(wanted.map((w) => runProcess(deps, app, deploymentUuid, image, w)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  const started = results.map((r) => (r as PromiseFulfilledResult<{ container: string }>).value);
  const settle = deps.settings.processSettleMs;
  if (settle > 0) await deps.sleep(settle, signal);
  for (const [i, { container }] of started.entries()) {
    const state = await deps.engine.inspectContainer(container);
    if (state?.running) continue;
    const w = wanted[i];
    const what = w ? `${w.type}.${w.index}` : container;
    const logs = await deps.engine.containerLogs(container, 40).catch((err: unknown) => {
      deps.log.warn({ err, container }, "cannot read the exited process's log");
      return "";
    });
    deps.log.info({ container, status: state?.status ?? "missing" }, "process exited before the route switch");
    throw new TenantError(
      "processes",
      `${what} exited within ${formatSeconds(settle)} of starting (${state?.status ?? "gone"}); nothing was switched, the previous release keeps running`,
      logs,
    );
  }
  const counts: Record<string, number> = {};
  for (const w of wanted) counts[w.type] = (counts[w.type] ?? 0) + 1;
  return {
    excerpt: `${describeCounts(counts)} running after ${formatSeconds(settle)}`,
    containers: started.map((s) => s.container),
  };
}

function formatSeconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}
