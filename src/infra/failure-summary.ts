import { basename } from "node:path";
import { CaddyAdminError } from "./caddy.ts";
import { PodmanError } from "./container-engine.ts";
import { GitError } from "./git-url.ts";
import { CommandError } from "./runner.ts";

/**
 * One line that names the failing component and its cause, for people (a Slack deployment thread, the CLI): "podman
 * run exited 125: short-name "x" did not resolve to an alias…". Host details that a user must not see (file paths,
 * container ids) are replaced; the caller still masks the app's secrets (src/lib/mask.ts) before showing it.
 */
export const MAX_CAUSE_CHARS = 200;

/** podman (via logrus) prints `Error: <message>`, sometimes `time="…" level=error msg="<message>"`. */
const LOGRUS_MSG = /\blevel=(?:error|fatal)\s+msg="((?:[^"\\]|\\.)*)"/;

/** The cause in a tool's stderr, trimmed to one line: its last error line, else its last line. */
export function oneLineCause(stderr: string, max = MAX_CAUSE_CHARS): string | undefined {
  const lines = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
  const errorLine =
    lines.findLast((l) => /^Error: /i.test(l) || LOGRUS_MSG.test(l)) ?? lines.findLast((l) => /error/i.test(l));
  const line = errorLine ?? lines.at(-1);
  if (line === undefined) return undefined;
  const message = (LOGRUS_MSG.exec(line)?.[1]?.replace(/\\"/g, '"') ?? line).replace(/^Error:\s*/i, "");
  const cleaned = redactHostDetails(message).replace(/\s+/g, " ").trim();
  if (cleaned === "") return undefined;
  return cleaned.length > max ? `${cleaned.slice(0, max - 1)}…` : cleaned;
}

/** File paths and container/image ids say nothing a user can act on, and leak the host's layout: shown as <path>/<id>. */
export function redactHostDetails(text: string): string {
  return (
    text
      // Absolute paths of two or more segments (`/var/lib/containers/storage/…`), not a lone `/` or `/app`.
      .replace(/(?<![\w.:/])\/(?:[\w.@+-]+\/)+[\w.@+-]*/g, "<path>")
      // Full and short container/image ids.
      .replace(/\b(?:sha256:)?[0-9a-f]{64}\b/g, "<id>")
      .replace(/\b[0-9a-f]{12}\b/g, "<id>")
  );
}

/**
 * The component and cause of an infrastructure failure, or undefined when the error is none of the adapters'
 * (then the caller says only which stage failed).
 */
export function describeInfraFailure(err: unknown): string | undefined {
  if (err instanceof PodmanError) {
    const what = `podman ${err.subcommand}`;
    if (err.code === "timeout") return `${what} timed out`;
    if (err.code === "aborted") return `${what} was aborted`;
    const exit = err.exitCode === undefined ? "" : ` exited ${err.exitCode}`;
    const cause = oneLineCause(err.stderrTail);
    return `${what}${exit}${cause === undefined ? "" : `: ${cause}`}`;
  }
  if (err instanceof GitError) return redactHostDetails(err.message);
  if (err instanceof CaddyAdminError) return `caddy admin API: ${redactHostDetails(err.message)}`;
  if (err instanceof CommandError) {
    const cause = oneLineCause(err.stderrTail);
    const what = basename(err.command);
    const how =
      err.kind === "exit"
        ? ` exited ${err.exitCode ?? "?"}`
        : err.kind === "timeout"
          ? " timed out"
          : ` failed (${err.kind})`;
    return `${what}${how}${cause === undefined ? "" : `: ${cause}`}`;
  }
  return undefined;
}
