import { type AppView, getAppBySlug } from "../src/domain/apps.ts";
import { type AuditActor, type AuditEntry, recordAudit } from "../src/domain/audit.ts";
import { DomainError, invalidError } from "../src/domain/errors.ts";
import { currentRelease, type ReleaseView } from "../src/domain/releases.ts";
import { type OneOffDeps, type OneOffRun, runOneOff } from "../src/pipeline/one-off.ts";

/**
 * `run <app> -- <cmd…>`: a one-off command in a fresh sandboxed container of the current release
 * (src/pipeline/one-off.ts), audited before it starts and when it ends. The audit names the program, not its
 * arguments: those may hold secrets (`python -c "…password…"`).
 */

export const MAX_RUN_WORDS = 256;
export const MAX_RUN_BYTES = 32 * 1024;

export interface RunInput {
  app: string;
  command: readonly string[];
  timeoutMs: number;
  memoryMb?: number | undefined;
  /** A Slack user; without one the audit says `actorLabel` ("cli"). */
  actor?: AuditActor | undefined;
  actorLabel?: string | undefined;
  correlationId?: string | undefined;
  /** Merged into the audit rows' details (the Slack job adds its id, so a restarted job sees it already ran). */
  auditDetails?: Record<string, unknown> | undefined;
  onOutput?: ((chunk: string) => void) | undefined;
  signal?: AbortSignal | undefined;
  maxOutputBytes?: number | undefined;
  /** `tussilago run --tty` only. */
  tty?: boolean | undefined;
}

export interface RunOutcome {
  app: AppView;
  release: ReleaseView;
  run: OneOffRun;
}

/** What a `run` approval's response_url is sealed to: it opens for this app's run only. */
export function runUrlBinding(appUuid: string): string {
  return `run-response-url:${appUuid}`;
}

/** argv words: no NUL (execve cannot pass one), bounded count and size. */
export function checkRunCommand(command: readonly string[]): string[] {
  if (command.length === 0) throw invalidError("give the command to run after --");
  if (command.length > MAX_RUN_WORDS) throw invalidError(`the command may have at most ${MAX_RUN_WORDS} words`);
  if (command.some((w) => w.includes("\u0000"))) throw invalidError("the command must not contain NUL characters");
  if (Buffer.byteLength(command.join(" ")) > MAX_RUN_BYTES) throw invalidError("the command is too long");
  if (command[0] === "") throw invalidError("the command must not start with an empty word");
  return [...command];
}

/** The first word, bounded, for the audit: enough to tell `manage.py migrate` from `bash`. */
function program(command: readonly string[]): string {
  const words = command.slice(0, 2).join(" ");
  return words.length > 80 ? `${words.slice(0, 80)}…` : words;
}

/** The app and its current release, or a 404 the user understands. */
export function runTarget(deps: Pick<OneOffDeps, "db">, slug: string): { app: AppView; release: ReleaseView } {
  const app = getAppBySlug(deps.db, slug);
  const release = currentRelease(deps.db, app.uuid);
  if (!release) throw new DomainError(404, "not_found", `${app.slug} has no release to run a command in yet`);
  return { app, release };
}

export async function runCommand(deps: OneOffDeps, input: RunInput): Promise<RunOutcome> {
  const command = checkRunCommand(input.command);
  const { app, release } = runTarget(deps, input.app);
  const who: Pick<AuditEntry, "actor" | "actorLabel"> =
    input.actor === undefined ? { actorLabel: input.actorLabel ?? "cli" } : { actor: input.actor };
  const base = { ...who, action: "run", appUuid: app.uuid, correlationId: input.correlationId };
  recordAudit(deps.db, {
    ...base,
    outcome: "allowed",
    details: {
      ...input.auditDetails,
      release: `v${release.version}`,
      program: program(command),
      words: command.length,
    },
  });
  let run: OneOffRun;
  try {
    run = await runOneOff(deps, {
      app,
      release,
      command,
      timeoutMs: input.timeoutMs,
      memoryMb: input.memoryMb,
      onOutput: input.onOutput,
      signal: input.signal,
      maxOutputBytes: input.maxOutputBytes,
      tty: input.tty,
    });
  } catch (err) {
    recordAudit(deps.db, {
      ...base,
      outcome: "failed",
      details: { ...input.auditDetails, release: `v${release.version}`, program: program(command), error: "engine" },
    });
    throw err;
  }
  recordAudit(deps.db, {
    ...base,
    outcome: run.exitCode === 0 ? "succeeded" : "failed",
    details: {
      ...input.auditDetails,
      run: run.runUuid,
      release: `v${release.version}`,
      program: program(command),
      exitCode: run.exitCode,
      ended: run.outcome,
    },
  });
  return { app, release, run };
}
