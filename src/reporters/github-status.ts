import type { Db } from "../db/client.ts";
import { getAppByUuid } from "../domain/apps.ts";
import { getDeployment, githubDeploymentIdOf, setGithubDeploymentId } from "../domain/deployments.ts";
import type { ApiAvailability } from "../infra/api-availability.ts";
import { type GithubApi, GithubApiError, truncateDescription } from "../infra/github-api.ts";
import { provedForCredentials } from "../infra/github-credentials.ts";
import { type BackoffOptions, cappedExponentialDelay } from "../lib/backoff.ts";
import type { Logger } from "../log.ts";
import type { DeploymentEvent, PipelineEvent, PipelineEvents } from "../pipeline/events.ts";

export interface GithubStatusDeps {
  db: Db;
  github: GithubApi;
  log: Logger;
  /**
   * GitHub's availability as the bot sees it (for `/readyz` and the log). With it, a report that fails because
   * GitHub is unreachable (network error, timeout, 5xx, rate limit) is kept and tried again with bounded backoff
   * until GitHub answers or `catchUpForMs` has passed; without it, it is dropped after the client's own retries.
   */
  availability?: Pick<ApiAvailability, "reportUnreachable" | "reportUp"> | undefined;
  /** Delays between tries while GitHub is down (default 2 s doubling to 30 s, with jitter). */
  catchUpBackoff?: BackoffOptions;
  /** How long one report is kept while GitHub is down (default 6 h); past it, it is dropped with a warning. */
  catchUpForMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** Retries while GitHub is down: a few calls a minute per waiting deployment at most. */
export const CATCH_UP_BACKOFF: BackoffOptions = { baseMs: 2_000, maxMs: 30_000 };
export const CATCH_UP_FOR_MS = 6 * 60 * 60 * 1000;

export interface GithubStatusReporter {
  detach(): void;
  /** Resolves once every report scheduled so far has been sent or given up on (tests, graceful shutdown). */
  idle(): Promise<void>;
}

/** Everything a report needs, reloaded per step: the commit sha of a command deployment appears after `source`. */
interface Target {
  owner: string;
  repo: string;
  sha: string;
  context: string;
  environment: string;
  appSlug: string;
  appUrl: string;
  githubDeploymentId: string | null;
}

interface Tracked {
  chain: Promise<void>;
  begun: boolean;
}

/**
 * Mirrors deployments of GitHub-linked apps onto the commit: a `tussilago/<app>` commit status (pending → success
 * or failure) and a GitHub Deployment with statuses (in_progress → success/failure) per environment.
 *
 * It never blocks or fails a deployment: the listener only schedules work and returns, each deployment's reports
 * run in order on their own promise chain, the client's retries are bounded, and every error ends in a log line.
 */
export function attachGithubStatusReporter(events: PipelineEvents, deps: GithubStatusDeps): GithubStatusReporter {
  const tracked = new Map<string, Tracked>();
  const pending = new Set<Promise<void>>();
  // Sleeps between catch-up tries; detach() ends them, so shutdown never waits for GitHub to come back.
  const sleeping = new Set<() => void>();
  let detached = false;
  const now = deps.now ?? Date.now;
  const sleep =
    deps.sleep ??
    ((ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(done, ms);
        function done() {
          clearTimeout(timer);
          sleeping.delete(done);
          resolve();
        }
        sleeping.add(done);
      }));

  /**
   * One report, kept while GitHub is unreachable: tried again with bounded backoff, in its deployment's chain, so
   * the statuses still reach GitHub in the order they happened and each once (a call that failed was not taken).
   */
  const attempt = async <T>(log: Logger, what: string, call: () => Promise<T>): Promise<T | undefined> => {
    const since = now();
    for (let n = 1; ; n++) {
      try {
        const result = await call();
        deps.availability?.reportUp();
        return result;
      } catch (err) {
        const outage = deps.availability !== undefined && isGithubOutage(err);
        if (outage) deps.availability?.reportUnreachable(errText(err));
        if (!outage || detached || now() - since >= (deps.catchUpForMs ?? CATCH_UP_FOR_MS)) {
          log.warn({ err: errText(err) }, `GitHub ${what} not sent`);
          return undefined;
        }
        if (n === 1) log.info({ what }, "GitHub unreachable: report kept until it is back");
        await sleep(cappedExponentialDelay(n, deps.catchUpBackoff ?? CATCH_UP_BACKOFF));
        if (detached) {
          log.warn({ err: errText(err) }, `GitHub ${what} not sent (shutting down)`);
          return undefined;
        }
      }
    }
  };

  const schedule = (uuid: string, step: (t: Tracked) => Promise<void>, last = false) => {
    let entry = tracked.get(uuid);
    if (!entry) {
      entry = { chain: Promise.resolve(), begun: false };
      tracked.set(uuid, entry);
    }
    const current = entry;
    const run = current.chain
      .then(() => step(current))
      .catch((err: unknown) => {
        deps.log.warn({ deploymentId: uuid, err: errText(err) }, "GitHub status report failed");
      });
    current.chain = run;
    pending.add(run);
    void run.finally(() => {
      pending.delete(run);
      if (last && tracked.get(uuid) === current && current.chain === run) tracked.delete(uuid);
    });
  };

  const begin = async (uuid: string, t: Tracked) => {
    if (t.begun) return;
    const target = loadTarget(deps.db, uuid);
    if (!target) return; // not linked to GitHub, or no commit yet: the `source` stage event tries again
    t.begun = true;
    const log = deps.log.child({ deploymentId: uuid, app: target.appSlug, commit: target.sha });
    await attempt(log, "pending commit status", () =>
      deps.github.createCommitStatus(target.owner, target.repo, target.sha, {
        state: "pending",
        context: target.context,
        description: `Deploying to ${target.environment}`,
      }),
    );
    const ghId = await ensureGithubDeployment(deps, uuid, target, log, attempt);
    if (ghId === undefined) return;
    await attempt(log, "in_progress deployment status", () =>
      deps.github.createDeploymentStatus(target.owner, target.repo, ghId, {
        state: "in_progress",
        description: `Deploying ${target.appSlug}`,
      }),
    );
  };

  const finish = async (uuid: string, t: Tracked, event: DeploymentEvent) => {
    const target = loadTarget(deps.db, uuid);
    if (!target) return;
    const log = deps.log.child({ deploymentId: uuid, app: target.appSlug, commit: target.sha });
    const ok = event.status === "succeeded";
    const state = ok ? "success" : event.status === "failed" ? "failure" : "error";
    const url = event.url ?? target.appUrl;
    const description = ok
      ? `Deployed to ${target.environment}`
      : truncateDescription(event.reason ?? `Deployment ${event.status}`);
    await attempt(log, `${state} commit status`, () =>
      deps.github.createCommitStatus(target.owner, target.repo, target.sha, {
        state,
        context: target.context,
        description,
        ...(ok ? { target_url: url } : {}),
      }),
    );
    const ghId = await ensureGithubDeployment(deps, uuid, target, log, attempt);
    if (ghId !== undefined) {
      await attempt(log, `${state} deployment status`, () =>
        deps.github.createDeploymentStatus(target.owner, target.repo, ghId, {
          state,
          description,
          ...(ok ? { environment_url: url } : {}),
        }),
      );
    }
    t.begun = false;
    log.info({ state }, "GitHub status reported");
  };

  const unsubscribe = events.subscribe((event: PipelineEvent) => {
    const uuid = event.deploymentUuid;
    if (event.type === "deployment") {
      if (event.status === "started") schedule(uuid, (t) => begin(uuid, t));
      else schedule(uuid, (t) => finish(uuid, t, event), true);
    } else if (event.type === "stage" && event.stage === "source" && event.status === "succeeded") {
      schedule(uuid, (t) => begin(uuid, t));
    }
  });

  return {
    detach: () => {
      unsubscribe();
      detached = true;
      for (const wake of [...sleeping]) wake();
    },
    async idle() {
      while (pending.size > 0) await Promise.all([...pending]);
    },
  };
}

function loadTarget(db: Db, deploymentUuid: string): Target | undefined {
  const deployment = getDeployment(db, deploymentUuid);
  const app = getAppByUuid(db, deployment.appUuid);
  // A pending link (or one proved by a signature alone, which its own admin can forge) names a repository nobody
  // proved control of: statuses there would write into a stranger's repository (docs/security.md, *Tenant admin*).
  if (app.githubRepo === null || !provedForCredentials(app) || deployment.commitSha === null) return undefined;
  const [owner, repo] = app.githubRepo.split("/");
  if (!owner || !repo) return undefined;
  return {
    owner,
    repo,
    sha: deployment.commitSha,
    context: `tussilago/${app.slug}`,
    environment: app.environment,
    appSlug: app.slug,
    appUrl: `http://${app.domain}`,
    githubDeploymentId: githubDeploymentIdOf(db, deploymentUuid),
  };
}

/** One GitHub Deployment per Tussilago deployment: its id is stored, so a retried job or a restart reuses it. */
async function ensureGithubDeployment(
  deps: GithubStatusDeps,
  uuid: string,
  target: Target,
  log: Logger,
  attempt: Attempt,
): Promise<string | undefined> {
  if (target.githubDeploymentId !== null) return target.githubDeploymentId;
  const created = await attempt(log, "GitHub deployment", () =>
    deps.github.createDeployment(target.owner, target.repo, {
      ref: target.sha,
      environment: target.environment,
      auto_merge: false,
      required_contexts: [],
      description: `Tussilago: ${target.appSlug}`,
      production_environment: target.environment === "production",
    }),
  );
  if (!created) return undefined;
  setGithubDeploymentId(deps.db, uuid, created.id);
  target.githubDeploymentId = created.id;
  return created.id;
}

type Attempt = <T>(log: Logger, what: string, call: () => Promise<T>) => Promise<T | undefined>;

/** Worth waiting for: no answer, a 5xx or a rate limit (the client's retries ran out); not a 4xx about us. */
function isGithubOutage(err: unknown): boolean {
  return err instanceof GithubApiError && err.retryable;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
