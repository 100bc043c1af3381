import type { FormationView, ScaleResult, ScaleStatus } from "../../commands/scale.ts";
import { slugSchema } from "../domain/validation.ts";
import { parseDuration } from "./duration.ts";
import { EXIT } from "./exit-codes.ts";
import { abortableSleep } from "./follow.ts";
import { json, type Output } from "./output.ts";
import { FieldError, field, type Spec } from "./spec.ts";

/**
 * `tussilago scale <app> [TYPE=COUNT…]` (docs/python-apps.md, "Scale"): without counts it shows the formation; with
 * them it records the new one and follows the job that applies it (the same on the bot's host and over the operator
 * API; only how the request is sent and its outcome read differ).
 */
export type ScaleCommand = {
  kind: "scale";
  app: string;
  args: string[];
  follow: boolean;
  timeoutMs: number;
  json: boolean;
};

const DEFAULT_SCALE_FOLLOW_MS = 10 * 60_000;

export const SCALE_SPECS: Readonly<Record<string, Spec<ScaleCommand>>> = {
  scale: {
    usage: "tussilago scale <app> [web=2 worker=1 …] [--no-follow] [--timeout 10m] [--json]",
    options: {
      follow: { type: "boolean", default: true },
      timeout: { type: "string" },
      json: { type: "boolean", default: false },
    },
    positionals: { required: ["app"], optional: [], rest: "TYPE=COUNT" },
    build(values, [app, ...args]) {
      let timeoutMs = DEFAULT_SCALE_FOLLOW_MS;
      if (typeof values.timeout === "string") {
        const ms = parseDuration(values.timeout);
        if (ms === undefined) throw new FieldError(`--timeout ${JSON.stringify(values.timeout)}: use e.g. 90s or 10m`);
        timeoutMs = ms;
      }
      return {
        kind: "scale",
        app: field("app", slugSchema, app),
        args,
        follow: values.follow !== false,
        timeoutMs,
        json: values.json === true,
      };
    },
  },
};

export function formatFormation(view: FormationView): string {
  const release = view.release === null ? "no release yet" : view.release;
  const lines = view.formation.map((f) => `  ${f.type.padEnd(12)} ${f.count}`);
  return `${view.app} (${release})\n${lines.join("\n")}\n`;
}

function formatRequested(result: ScaleResult): string {
  const changes =
    result.changes.length === 0 ? "no change" : result.changes.map((c) => `${c.type} ${c.from} → ${c.to}`).join(", ");
  const next = result.applying ? "applying now" : "no release yet: the first deployment starts it";
  return `${result.app}: ${changes} recorded (request ${result.request}); ${next}\n`;
}

/** How a transport (the database on the host, the API elsewhere) shows, requests and reads a scale. */
export interface ScaleTransport {
  show(app: string): FormationView | Promise<FormationView>;
  request(app: string, args: readonly string[]): Promise<ScaleResult>;
  status(app: string, request: string): ScaleStatus | Promise<ScaleStatus>;
}

export async function executeScale(
  command: ScaleCommand,
  transport: ScaleTransport,
  options: {
    output: Output;
    onInterrupt: (handler: () => void) => () => void;
    now?: (() => number) | undefined;
    intervalMs?: number | undefined;
  },
): Promise<number> {
  const { output } = options;
  if (command.args.length === 0) {
    const view = await transport.show(command.app);
    output.out(command.json ? json(view) : formatFormation(view));
    return EXIT.ok;
  }
  const result = await transport.request(command.app, command.args);
  if (!command.follow || !result.applying) {
    output.out(command.json ? json({ ...result, outcome: null }) : formatRequested(result));
    return EXIT.ok;
  }
  if (!command.json) output.out(formatRequested(result));
  const now = options.now ?? Date.now;
  const deadline = now() + command.timeoutMs;
  const controller = new AbortController();
  const off = options.onInterrupt(() => controller.abort());
  try {
    for (;;) {
      const status = await transport.status(command.app, result.request);
      if (status.state !== "waiting") {
        if (command.json) output.out(json({ ...result, outcome: status }));
        else if (status.state === "succeeded") output.out(`${status.message}\n`);
        else output.err(`error: ${status.message}\n`);
        return status.state === "succeeded" ? EXIT.ok : EXIT.error;
      }
      if (controller.signal.aborted) {
        output.err(`stopped following; the scale goes on (check it with: tussilago status ${command.app})\n`);
        return EXIT.interrupted;
      }
      if (now() >= deadline) {
        output.err(
          `error: the scale of ${command.app} was not applied yet (a deployment may be running); it goes on\n`,
        );
        return EXIT.error;
      }
      await abortableSleep(options.intervalMs ?? 500, controller.signal);
    }
  } finally {
    off();
  }
}
