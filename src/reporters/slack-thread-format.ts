import type { DeploymentView } from "../domain/deployments.ts";
import { escapeSlack } from "../infra/slack-api.ts";
import { type DeploymentEvent, STAGES, type StageName } from "../pipeline/events.ts";
import { stripControl } from "./slack-logs.ts";
import { commitRef } from "./slack-notices.ts";

/** The text of a deployment's Slack thread: the parent's stage checklist and the replies at the end. No I/O. */

export interface StageState {
  status: "started" | "succeeded" | "failed" | "skipped" | "cancelled";
  durationMs?: number | undefined;
  /** What the stage started (`web ×2 …`, `worker ×1 …`): shown for the process stages. */
  detail?: string | undefined;
}

/** What the reporter has heard about one deployment, as far as the text shows it. */
export interface ThreadView {
  uuid: string;
  appSlug: string;
  stages: Map<StageName, StageState>;
  failedStage?: StageName;
  failedExcerpt?: string | undefined;
  final?: DeploymentEvent;
  /** The replaced release's containers stopped after the switch, per process type. */
  drained?: { stopped: Record<string, number>; graceSeconds: number };
}

export const MAX_LOG_TAIL_CHARS = 2_500;

export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const s = Math.round(ms / 1_000);
  return `${Math.floor(s / 60)}m ${s % 60}s`;
}

const ICON: Record<StageState["status"] | "pending", string> = {
  pending: ":white_small_square:",
  started: ":arrows_counterclockwise:",
  succeeded: ":white_check_mark:",
  failed: ":x:",
  skipped: ":heavy_minus_sign:",
  cancelled: ":no_entry_sign:",
};

/** Bounded and inert: the tail of the text (where the error is), with Slack's control characters escaped. */
export function logTail(text: string, max = MAX_LOG_TAIL_CHARS): string {
  // Terminal escapes and bidi overrides out first (build tools colour their output), as for /tussilago logs.
  const clean = stripControl(text);
  const tail = clean.length > max ? `…${clean.slice(-max)}` : clean;
  return escapeSlack(tail);
}

/** The deployment as the parent message shows it. */
export type ThreadDeployment = Pick<DeploymentView, "trigger" | "ref" | "author" | "commitSha">;

/** True when the parent links the commit, which needs the app's GitHub repository. */
export function showsCommit(d: ThreadDeployment): boolean {
  return d.trigger === "push" && Boolean(d.commitSha);
}

/** The parent message: title, stage checklist, deployment id. `githubRepo` links the commit of a push. */
export function renderParent(
  s: ThreadView,
  d: ThreadDeployment,
  githubRepo: string | null | undefined,
): { text: string; blocks: Record<string, unknown>[] } {
  const what = d.trigger === "rollback" ? `rollback to ${escapeSlack(d.ref)}` : `deploy \`${escapeSlack(d.ref)}\``;
  const state = s.final
    ? s.final.status === "succeeded"
      ? `:white_check_mark: live in ${formatDuration(s.final.durationMs ?? 0)}`
      : s.final.status === "failed"
        ? `:x: failed${s.failedStage ? ` at ${s.failedStage}` : ""}`
        : s.final.status === "cancelled"
          ? `:no_entry_sign: ${escapeSlack(s.final.reason ?? "cancelled")}`
          : ":fast_forward: superseded by a newer deployment"
    : ":hourglass_flowing_sand: in progress";
  const title = `*${s.appSlug}* · ${what} · ${state}`;
  const source = d.trigger === "push" ? pushSource(d, githubRepo) : undefined;
  const checklist = STAGES.map((name) => {
    const st = s.stages.get(name);
    const time = st?.durationMs === undefined ? "" : ` ${formatDuration(st.durationMs)}`;
    const detail = st?.detail ? ` · ${escapeSlack(st.detail)}` : "";
    return `${ICON[st?.status ?? "pending"]} ${name}${time}${detail}`;
  })
    .concat(s.drained ? [`${ICON.succeeded} old release stopped · ${drainedText(s.drained)}`] : [])
    .join("\n");
  return {
    text: source ? `${title}\n${source}` : title,
    blocks: [
      { type: "section", text: { type: "mrkdwn", text: source ? `${title}\n${source}` : title } },
      { type: "section", text: { type: "mrkdwn", text: checklist } },
      { type: "context", elements: [{ type: "mrkdwn", text: `Deployment ${s.uuid}` }] },
    ],
  };
}

function drainedText(d: { stopped: Record<string, number>; graceSeconds: number }): string {
  const counts = Object.entries(d.stopped)
    .map(([type, n]) => `${escapeSlack(type)} ×${n}`)
    .join(", ");
  return `${counts} (SIGTERM, ${d.graceSeconds} s grace)`;
}

/** "Pushed by alice · <commit link>": who set a push deployment off, and what it builds. */
function pushSource(d: ThreadDeployment, githubRepo: string | null | undefined): string | undefined {
  if (!d.author && !d.commitSha) return undefined;
  const by = d.author ? `Pushed by ${escapeSlack(d.author)}` : "Pushed";
  if (!d.commitSha) return by;
  return `${by} · commit ${commitRef(githubRepo, d.commitSha)}`;
}

/**
 * The thread replies once the deployment is over. On failure, `serving` is the app's current release and `check` what
 * a probe through the proxy just found: the thread says an older release serves only when that probe said so.
 */
export function renderReplies(
  s: ThreadView,
  serving: { version: number; deploymentUuid: string } | undefined,
  check?: { serving: boolean; reason?: string | undefined } | undefined,
): string[] {
  const final = s.final;
  if (!final) return [];
  if (final.status === "succeeded") {
    return [`Live at ${escapeSlack(final.url ?? "")} after ${formatDuration(final.durationMs ?? 0)}.`];
  }
  if (final.status === "cancelled") {
    const kept =
      serving && serving.deploymentUuid !== s.uuid
        ? `The previous release v${serving.version} keeps serving.`
        : "No earlier release was serving; the app stays down until a deployment succeeds.";
    const stage = [...s.stages].find(([, st]) => st.status === "cancelled")?.[0];
    const during = stage ? ` during ${stage}` : "";
    return [
      `Stopped${during}: ${escapeSlack(final.reason ?? "cancelled")}. Its new container and image were removed. ${kept}`,
    ];
  }
  if (final.status !== "failed") return [];
  const out: string[] = [];
  const reason = escapeSlack(final.reason ?? "unknown reason");
  out.push(
    s.failedStage === "health"
      ? `Health check failed: ${reason}`
      : `Failed at ${s.failedStage ?? "an unknown stage"}: ${reason}`,
  );
  if (s.failedExcerpt && s.failedExcerpt !== final.reason)
    out.push(`Log tail:\n\`\`\`${logTail(s.failedExcerpt)}\`\`\``);
  out.push(servingLine(s, serving, check));
  return out;
}

function servingLine(
  s: ThreadView,
  serving: { version: number; deploymentUuid: string } | undefined,
  check: { serving: boolean; reason?: string | undefined } | undefined,
): string {
  if (!serving || serving.deploymentUuid === s.uuid) {
    return "No earlier release was serving, so the app stays down until a deployment succeeds.";
  }
  if (check === undefined) return `The current release is still v${serving.version}.`;
  if (check.serving) return `The previous release v${serving.version} keeps serving.`;
  const why = check.reason ? ` (${escapeSlack(check.reason)})` : "";
  return `The previous release v${serving.version} is not serving either${why}: the app is down.`;
}
