import type { StageTiming } from "../db/schema.ts";
import type { DeploymentView } from "../domain/deployments.ts";
import { STAGES } from "../pipeline/events.ts";
import { formatElapsed } from "./duration.ts";
import { escapeTerminal, type Output } from "./output.ts";

/** What the display needs from a deployment row: the follower polls it with getDeployment. */
export type ProgressState = Pick<
  DeploymentView,
  "status" | "stageTimings" | "failureReason" | "createdAt" | "startedAt" | "finishedAt"
> &
  Partial<Pick<DeploymentView, "pythonVersion">>;

type StageStatus = StageTiming["status"] | "pending";

const STAGE_WIDTH = Math.max(...STAGES.map((s) => s.length));

function stageStatus(state: ProgressState, stage: string): StageStatus {
  return state.stageTimings[stage]?.status ?? "pending";
}

function stageElapsed(timing: StageTiming | undefined, now: number): string {
  if (!timing) return "";
  return formatElapsed((timing.finishedAt ?? now) - timing.startedAt);
}

function deploymentElapsed(state: ProgressState, now: number): string {
  const from = (state.startedAt ?? state.createdAt).getTime();
  return formatElapsed((state.finishedAt?.getTime() ?? now) - from);
}

/** One line per stage plus a status line; a pure function of the row and the clock, so tests feed it states. */
export function renderFrame(state: ProgressState, now: number): string[] {
  const lines = STAGES.map((stage) => {
    const timing = state.stageTimings[stage];
    const status = stageStatus(state, stage);
    // The build stage records the Python version it chose (docs/python-apps.md): shown once it is known.
    const python = stage === "build" && state.pythonVersion ? `  Python ${state.pythonVersion}` : "";
    return `  ${stage.padEnd(STAGE_WIDTH)}  ${status.padEnd(9)}  ${stageElapsed(timing, now).padEnd(6)}${python}`.trimEnd();
  });
  lines.push(`  ${"status".padEnd(STAGE_WIDTH)}  ${state.status.padEnd(9)}  ${deploymentElapsed(state, now)}`);
  return lines;
}

/**
 * Draws deployment progress. On a terminal it redraws the same block in place (cursor up, clear line); into a
 * pipe or file it prints one line per change, so logs of CI jobs stay readable.
 */
export class ProgressDisplay {
  readonly #output: Output;
  #drawnLines = 0;
  #seen = new Map<string, string>();

  constructor(output: Output) {
    this.#output = output;
  }

  update(state: ProgressState, now: number): void {
    if (this.#output.isTTY) this.#redraw(state, now);
    else this.#printChanges(state, now);
  }

  #redraw(state: ProgressState, now: number): void {
    const frame = renderFrame(state, now);
    const up = this.#drawnLines > 0 ? `\x1b[${this.#drawnLines}A` : "";
    this.#output.out(up + frame.map((line) => `\x1b[2K${line}\n`).join(""));
    this.#drawnLines = frame.length;
  }

  #printChanges(state: ProgressState, now: number): void {
    for (const stage of STAGES) {
      const status = stageStatus(state, stage);
      if (status === "pending" || this.#seen.get(stage) === status) continue;
      this.#seen.set(stage, status);
      const elapsed = status === "running" ? "" : ` (${stageElapsed(state.stageTimings[stage], now)})`;
      this.#output.out(`${stage} ${status}${elapsed}\n`);
    }
    if (this.#seen.get("") !== state.status) {
      this.#seen.set("", state.status);
      this.#output.out(`deployment ${state.status}\n`);
    }
  }
}

/** The closing line after the follower stops; the failure reason comes from the pipeline, possibly tenant text. */
export function summaryLine(state: ProgressState, now: number): string {
  const elapsed = deploymentElapsed(state, now);
  switch (state.status) {
    case "succeeded":
      return `deployed in ${elapsed}`;
    case "failed":
      return `deployment failed after ${elapsed}: ${escapeTerminal(state.failureReason ?? "no reason recorded")}`;
    case "cancelled":
      // The reason names who cancelled: "cancelled by @alice".
      return `deployment ${escapeTerminal(state.failureReason ?? "cancelled")}`;
    case "superseded":
      return `deployment ${state.status}${state.failureReason ? `: ${escapeTerminal(state.failureReason)}` : ""}`;
    default:
      return `deployment ${state.status}`;
  }
}
