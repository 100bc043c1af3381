import { readFile, stat } from "node:fs/promises";
import type { DeployResult } from "../../commands/deploy.ts";
import type { EnvAssignment } from "../../commands/env-operator.ts";
import type { Env } from "../config.ts";
import { DotenvError, parseDotenv } from "../lib/dotenv.ts";
import type { Logger } from "../log.ts";
import type { OneOffDeps } from "../pipeline/one-off.ts";
import { formatElapsed } from "./duration.ts";
import { CliEnvError } from "./env-error.ts";
import type { EnvRunCommand } from "./env-run-args.ts";
import { EXIT } from "./exit-codes.ts";
import { formatEnqueued } from "./format.ts";
import { escapeTerminal, json, type Output, table } from "./output.ts";
import type { CliResources } from "./resources.ts";

/** The actor audit rows name for CLI actions (README "Operator setup"). */
const ACTOR = "cli";
const MAX_ENV_FILE_BYTES = 1024 * 1024;
/** A one-off's output beyond this kills it: the terminal is not a log store. */
export const RUN_MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

export interface EnvRunOptions {
  output: Output;
  env: Env;
  onInterrupt: (handler: () => void) => () => void;
  /** execute.ts's follower, passed in (importing execute.ts from here would be a cycle). */
  follow: (result: DeployResult, app: string, timeoutMs: number) => Promise<number>;
  /** Whether stdin is a terminal: `run --tty` needs one. Default: this process's stdin. */
  stdinIsTTY?: boolean | undefined;
  /** What `run` runs with; default: the bot's engine and settings from `env` (src/cli/run-engine.ts). Tests pass fakes. */
  oneOffDeps?: (() => Promise<OneOffDeps>) | undefined;
}

/** `--from-file`: strict dotenv (src/lib/dotenv.ts); errors name the file and line, never a value. */
export async function readEnvFile(path: string): Promise<EnvAssignment[]> {
  let text: string;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new CliEnvError(`--from-file ${path}: not a regular file`);
    if (info.size > MAX_ENV_FILE_BYTES) throw new CliEnvError(`--from-file ${path}: larger than 1 MiB`);
    text = await readFile(path, "utf8");
  } catch (err) {
    if (err instanceof CliEnvError) throw err;
    throw new CliEnvError(`--from-file ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    return parseDotenv(text).map((e) => ({ key: e.key, value: e.value, source: `${path} line ${e.line}` }));
  } catch (err) {
    if (err instanceof DotenvError) throw new CliEnvError(`--from-file ${path}: ${err.message}`);
    throw err;
  }
}

export const policyNote = (app: string, actor = ACTOR) =>
  `note: ${app}'s approval policy gates env changes in Slack; the CLI acts as the operator and applied it directly (audited as "${actor}")\n`;

export async function executeEnvRun(
  command: EnvRunCommand,
  res: CliResources,
  log: Logger,
  options: EnvRunOptions,
): Promise<number> {
  const { output } = options;
  switch (command.kind) {
    case "env-list": {
      const { operatorEnvList } = await import("../../commands/env-operator.ts");
      const { app, vars } = operatorEnvList({ db: res.db() }, { app: command.app });
      if (command.json) {
        output.out(json({ app: app.slug, vars: vars.map((v) => ({ key: v.key, updatedAt: v.updatedAt })) }));
      } else if (vars.length === 0) {
        output.out(`${app.slug} has no env vars\n`);
      } else {
        output.out(`${table([["KEY", "UPDATED"], ...vars.map((v) => [v.key, v.updatedAt.toISOString()])])}\n`);
      }
      return EXIT.ok;
    }
    case "env-set":
    case "env-unset":
      return envChange(command, res, log, options);
    case "run":
      return runOneOffCli(command, res, log, options);
  }
}

async function envChange(
  command: Extract<EnvRunCommand, { kind: "env-set" | "env-unset" }>,
  res: CliResources,
  log: Logger,
  options: EnvRunOptions,
): Promise<number> {
  const { output } = options;
  const { operatorEnvSet, operatorEnvUnset, operatorRestart, restartTarget } = await import(
    "../../commands/env-operator.ts"
  );
  const fromFile =
    command.kind === "env-set" && command.fromFile !== undefined ? await readEnvFile(command.fromFile) : [];
  // Redis first when restarting: a change whose restart cannot be enqueued should not be half done.
  const queue = command.restart ? await res.queue() : undefined;
  const db = res.db();
  if (command.restart) restartTarget({ db }, command.app);
  let app: string;
  if (command.kind === "env-set") {
    const secrets = res.secrets("env set");
    const result = operatorEnvSet(
      { db, secrets, log },
      { app: command.app, vars: [...command.pairs, ...fromFile], actorLabel: ACTOR },
    );
    app = result.app.slug;
    output.out(`set ${result.keys.join(", ")} on ${app} (values not shown)\n`);
    if (result.gatedInSlack) output.err(policyNote(app));
  } else {
    const result = operatorEnvUnset({ db, log }, { app: command.app, keys: command.keys, actorLabel: ACTOR });
    app = result.app.slug;
    const removed = result.keys.filter((k) => !result.missing.includes(k));
    output.out(
      `${removed.length > 0 ? `unset ${removed.join(", ")} on ${app}` : `nothing to unset on ${app}`}` +
        `${result.missing.length > 0 ? ` (not set: ${result.missing.join(", ")})` : ""}\n`,
    );
    if (result.gatedInSlack) output.err(policyNote(app));
  }
  if (queue === undefined) {
    output.out(`takes effect on ${app}'s next deploy; --restart applies it now\n`);
    return EXIT.ok;
  }
  const result = await operatorRestart({ db, queue, log }, { app, actorLabel: ACTOR });
  await res.closeQueue();
  output.out(formatEnqueued(result, app));
  if (!command.follow) return EXIT.ok;
  return options.follow(result, app, command.timeoutMs);
}

async function runOneOffCli(
  command: Extract<EnvRunCommand, { kind: "run" }>,
  res: CliResources,
  log: Logger,
  options: EnvRunOptions,
): Promise<number> {
  const { output } = options;
  if (command.tty && !(options.stdinIsTTY ?? process.stdin.isTTY === true)) {
    throw new CliEnvError("--tty needs a terminal on stdin; run it without --tty to stream the output instead");
  }
  const [{ runCommand }, { oneOffDeps }] = await Promise.all([
    import("../../commands/run.ts"),
    import("./run-engine.ts"),
  ]);
  const deps = options.oneOffDeps ? await options.oneOffDeps() : await oneOffDeps(options.env, res, log);
  const controller = new AbortController();
  const off = options.onInterrupt(() => controller.abort());
  // The command's output is the tenant's: on a terminal, control sequences could rewrite the operator's screen;
  // piped (`tussilago run shop -- pg_dump > dump.sql`) it passes unchanged.
  const write = output.isTTY
    ? (chunk: string) => output.out(escapeTerminal(chunk))
    : (chunk: string) => output.out(chunk);
  let outcome: Awaited<ReturnType<typeof runCommand>>;
  try {
    outcome = await runCommand(deps, {
      app: command.app,
      command: command.command,
      timeoutMs: command.timeoutMs,
      memoryMb: command.memoryMb,
      actorLabel: ACTOR,
      onOutput: write,
      signal: controller.signal,
      maxOutputBytes: RUN_MAX_OUTPUT_BYTES,
      tty: command.tty,
    });
  } finally {
    off();
  }
  const { run } = outcome;
  if (run.outcome === "timeout") {
    output.err(
      `error: ${command.app}: the command ran longer than ${formatElapsed(command.timeoutMs)}; killed and removed\n`,
    );
  } else if (run.outcome === "aborted") {
    output.err(`stopped: ${command.app}: the command was killed and its container removed\n`);
  }
  return Math.max(0, Math.min(255, run.exitCode));
}
