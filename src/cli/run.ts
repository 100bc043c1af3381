import type { Env } from "../config.ts";
import { DomainError } from "../domain/errors.ts";
import { createLogger, type Logger } from "../log.ts";
import { type CliCommand, helpText, parseCli, UsageError } from "./args.ts";
import { CliEnvError, parseCliEnv } from "./env.ts";
import type { ExecuteOptions } from "./execute.ts";
import { EXIT } from "./exit-codes.ts";
import { onSigint } from "./interrupt.ts";
import type { Output } from "./output.ts";
import { RemoteError, remoteTarget, takeApiUrl } from "./remote.ts";
import type { CliResources } from "./resources.ts";

export interface RunCliOptions extends ExecuteOptions {
  env: Env;
  output: Output;
  /** The remote CLI's HTTP client (tests may pass their own); default: the global fetch. */
  fetch?: typeof fetch | undefined;
  /** Between polls of a remote deployment; default 1 s. */
  followIntervalMs?: number | undefined;
}

const firstLine = (text: string) => text.split("\n")[0] ?? "";

/**
 * Parses, runs and maps every outcome to an exit code and at most a line or two of text. The database, BullMQ and
 * podman modules load only after the command line parsed: a typo is answered at once.
 */
export async function runCli(argv: readonly string[], options: RunCliOptions): Promise<number> {
  const { output } = options;
  if (argv[0] === "stop-proxy") {
    const { stopProxy } = await import("./stop-proxy.ts");
    try {
      return await stopProxy(argv.slice(1), options.env, output);
    } catch (err) {
      output.err(`error: ${firstLine(err instanceof Error ? err.message : String(err))}\n`);
      return EXIT.error;
    }
  }
  const { apiUrl, argv: args } = takeApiUrl(argv);
  let command: CliCommand;
  try {
    command = parseCli(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    output.err(`tussilago: ${err.message}\nusage: ${err.usage}\n`);
    return EXIT.usage;
  }
  if (command.kind === "help") {
    output.out(`${helpText()}\n`);
    return EXIT.ok;
  }
  if (command.kind === "doctor") {
    const { runDoctorCli } = await import("./doctor.ts");
    return runDoctorCli(command, options.env, output);
  }
  let log: Logger | undefined;
  let resources: CliResources | undefined;
  try {
    const remote = remoteTarget(options.env, apiUrl);
    if (remote !== undefined) {
      const [{ ApiClient }, { executeRemote }] = await Promise.all([
        import("./remote.ts"),
        import("./remote-execute.ts"),
      ]);
      return await executeRemote(command, new ApiClient(remote, options.fetch), {
        output,
        onInterrupt: options.onInterrupt ?? onSigint,
        now: options.now,
        followIntervalMs: options.followIntervalMs,
      });
    }
    const env = parseCliEnv(options.env);
    log = createLogger({ level: env.logLevel, destination: { write: (line: string) => output.err(line) } });
    const [{ CliResources }, { execute }] = await Promise.all([import("./resources.ts"), import("./execute.ts")]);
    resources = new CliResources(env, log);
    return await execute(command, resources, log, options);
  } catch (err) {
    if (err instanceof DomainError || err instanceof CliEnvError || err instanceof RemoteError) {
      output.err(`error: ${firstLine(err.message)}\n`);
    } else {
      // Not a user mistake: keep the details (stack included) for LOG_LEVEL=debug, show one line.
      log?.debug({ err }, "command failed");
      // An adapter's failure names its component and cause (podman's own message for an engine error).
      const { describeInfraFailure } = await import("../infra/failure-summary.ts");
      output.err(
        `error: ${describeInfraFailure(err) ?? firstLine(err instanceof Error ? err.message : String(err))}\n`,
      );
    }
    return EXIT.error;
  } finally {
    await resources?.close();
  }
}
