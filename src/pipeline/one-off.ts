import { randomUUID } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Db } from "../db/client.ts";
import type { AppView } from "../domain/apps.ts";
import type { SecretBox } from "../domain/crypto.ts";
import type { ReleaseView } from "../domain/releases.ts";
import type { ContainerEngine, OneOffResult } from "../infra/container-engine.ts";
import type { Logger } from "../log.ts";
import { LABELS, names, type PipelineSettings } from "./settings.ts";
import { writeEnvFileIn } from "./stages/run-health.ts";

/**
 * One-off commands (`tussilago run`, `/tussilago run`): a fresh container from the current release's image with the
 * app's env and store access, confined exactly like the web container (src/infra/podman-args.ts `oneOffArgs`), but
 * never published and never routed. Its label `io.tussilago.managed=run` keeps drain and reconcile (which look at
 * `managed=app`) away from it.
 */

export interface OneOffDeps {
  db: Db;
  secrets: SecretBox;
  engine: ContainerEngine;
  settings: Pick<PipelineSettings, "workRoot" | "appPort" | "tmpfsMb" | "instance">;
  log: Logger;
}

export interface OneOffInput {
  app: AppView;
  release: ReleaseView;
  /** argv, run from /app; passed to `sh` as positional parameters, so no word of it is shell-interpreted. */
  command: readonly string[];
  timeoutMs: number;
  /** Defaults to the app's own memory limit. */
  memoryMb?: number | undefined;
  onOutput?: ((chunk: string) => void) | undefined;
  signal?: AbortSignal | undefined;
  maxOutputBytes?: number | undefined;
  /** The caller's terminal is the command's (`tussilago run --tty`); output then bypasses `onOutput`. */
  tty?: boolean | undefined;
}

export interface OneOffRun extends OneOffResult {
  runUuid: string;
}

/** How long to wait for podman to create the container (it has read the env file by then) before deleting the file. */
const ENV_FILE_POLL_MS = 200;

/** Same lines as the web container's env file (src/pipeline/stages/run-health.ts): a command sees what the app sees. */
async function writeEnvFile(deps: OneOffDeps, app: AppView, dir: string): Promise<string> {
  await mkdir(deps.settings.workRoot, { recursive: true, mode: 0o700 });
  return writeEnvFileIn(deps, app, dir);
}

/**
 * Deletes the env file as soon as the container exists (podman read the file before creating it), so no plaintext
 * copy stays on disk while a long command runs; `done` ends the wait when the run finishes first.
 */
async function removeOnceCreated(deps: OneOffDeps, container: string, dir: string, done: { value: boolean }) {
  while (!done.value) {
    const info = await deps.engine.inspectContainer(container).catch(() => null);
    if (info) break;
    await sleep(ENV_FILE_POLL_MS);
  }
  await rm(dir, { recursive: true, force: true });
}

export async function runOneOff(deps: OneOffDeps, input: OneOffInput): Promise<OneOffRun> {
  const { app, release } = input;
  if (input.command.length === 0) throw new Error("a one-off run needs a command");
  const runUuid = randomUUID();
  const container = `tsl-run-${runUuid}`;
  const dir = join(deps.settings.workRoot, `run-${runUuid}`);
  const log = deps.log.child({ appId: app.uuid, run: runUuid });
  const envFile = await writeEnvFile(deps, app, dir);
  const done = { value: false };
  const cleanup = removeOnceCreated(deps, container, dir, done);
  try {
    log.info({ container, release: release.uuid }, "one-off run starting");
    const result = await deps.engine.runOneOff(
      {
        name: container,
        image: release.image,
        command: ["/bin/sh", "-c", 'cd /app && exec "$@"', "sh", ...input.command],
        envFile,
        labels: {
          [LABELS.managed]: "run",
          [LABELS.app]: app.uuid,
          [LABELS.tenant]: app.tenantUuid,
          [LABELS.instance]: deps.settings.instance,
        },
        memoryMb: input.memoryMb ?? app.memoryMb,
        cpus: Number(app.cpus),
        pidsLimit: Math.max(app.pidsLimit, 128),
        network: "bridge-host",
        appNetwork: names.appNetwork(app.uuid),
        allowEgress: app.allowEgress,
        tmpfsMb: deps.settings.tmpfsMb,
        // conmon's own kill, a little after ours: it still fires if this process dies mid-run.
        timeoutSeconds: Math.ceil(input.timeoutMs / 1_000) + 30,
        tty: input.tty,
      },
      {
        timeoutMs: input.timeoutMs,
        signal: input.signal,
        onOutput: input.onOutput,
        maxOutputBytes: input.maxOutputBytes,
      },
    );
    log.info({ container, exitCode: result.exitCode, outcome: result.outcome }, "one-off run finished; removed");
    return { ...result, runUuid };
  } finally {
    done.value = true;
    await cleanup;
    await rm(dir, { recursive: true, force: true });
  }
}
