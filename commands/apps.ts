import type { Db } from "../src/db/client.ts";
import {
  type AppView,
  appSlackChannel,
  createApp,
  getAppBySlug,
  listApps,
  type NewApp,
  setAppSlackChannel,
} from "../src/domain/apps.ts";
import { recordAudit } from "../src/domain/audit.ts";
import type { SecretBox } from "../src/domain/crypto.ts";
import { type DeploymentStatus, latestDeploymentsOfLiveApps } from "../src/domain/deployments.ts";
import { invalidError, notFoundError } from "../src/domain/errors.ts";
import {
  type GithubLinkStatus,
  linkChallenge,
  newWebhookSecret,
  rotateLinkSecret,
  sealWebhookSecret,
  setGithubLink,
} from "../src/domain/github-links.ts";
import { currentReleasesOfLiveApps } from "../src/domain/releases.ts";
import { refSchema } from "../src/domain/validation.ts";
import type { Logger } from "../src/log.ts";

export interface AppSummary {
  uuid: string;
  slug: string;
  tenant: string;
  domain: string;
  branch: string;
  currentRelease: { uuid: string; version: number } | null;
  lastDeployment: { uuid: string; status: DeploymentStatus; createdAt: Date } | null;
}

/**
 * Creates an app. With `githubRepo` the link starts pending with its own webhook secret, returned here once
 * (`webhookSecret`) and stored only sealed: the repository must prove control before any push deploys.
 */
export function createAppCommand(
  deps: {
    db: Db;
    log: Logger;
    secrets?: SecretBox | undefined;
    /** The bot's TUSSILAGO_GIT_ALLOW_FILE_URLS: a URL the pipeline would refuse is refused now, not at the deploy. */
    allowFileUrls?: boolean | undefined;
  },
  input: NewApp,
): AppView & { webhookSecret?: string; challenge?: string } {
  if (deps.allowFileUrls !== true && /^file:/i.test(input.gitUrl)) {
    throw invalidError(
      "file:// git URLs are disabled on this bot (TUSSILAGO_GIT_ALLOW_FILE_URLS=1 allows local repositories)",
    );
  }
  if (input.githubRepo !== undefined && deps.secrets === undefined) {
    throw new Error("linking a GitHub repository needs the secret box (TUSSILAGO_SECRET_KEY)");
  }
  const created = deps.db.transaction((db) => {
    const app = createApp(db, input);
    if (app.githubRepo === null || deps.secrets === undefined) return { app, webhookSecret: undefined };
    const webhookSecret = newWebhookSecret();
    rotateLinkSecret(db, app.uuid, sealWebhookSecret(deps.secrets, app.uuid, webhookSecret));
    return { app, webhookSecret };
  });
  const { app, webhookSecret } = created;
  deps.log.info({ appId: app.uuid, tenantId: app.tenantUuid, domain: app.domain }, "app created");
  if (webhookSecret === undefined || app.githubRepo === null) return app;
  return { ...app, webhookSecret, challenge: linkChallenge(webhookSecret, app.uuid, app.githubRepo) };
}

/**
 * Every live app with its current release and last deployment, in three queries whatever the number of apps
 * (no N+1; a test counts them). "Latest per app" is a correlated subquery served by the (app_id, …) indexes.
 */
export function listAppsCommand(deps: { db: Db }): AppSummary[] {
  const { db } = deps;
  const all = listApps(db);
  if (all.length === 0) return [];

  const current = currentReleasesOfLiveApps(db);
  const latest = latestDeploymentsOfLiveApps(db);

  const releaseByApp = new Map(current.map((r) => [r.appUuid, { uuid: r.uuid, version: r.version }]));
  const deploymentByApp = new Map(
    latest.map((d) => [d.appUuid, { uuid: d.uuid, status: d.status, createdAt: d.createdAt }]),
  );
  return all.map((a) => ({
    uuid: a.uuid,
    slug: a.slug,
    tenant: a.tenantSlug,
    domain: a.domain,
    branch: a.branch,
    currentRelease: releaseByApp.get(a.uuid) ?? null,
    lastDeployment: deploymentByApp.get(a.uuid) ?? null,
  }));
}

/** Public channels start with C, private ones (older workspaces) with G; DMs (D…) are not deploy channels. */
export const SLACK_CHANNEL_ID = /^[CG][A-Z0-9]{2,20}$/;
/** GitHub `owner/name`, as in newAppSchema. */
export const GITHUB_REPO = /^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/;
/**
 * Tag glob for push-deploy.ts's tagMatches: git ref characters plus `*` and `?`, no leading dash. Bounded below
 * tagMatches' own 200-character cut-off, so a stored pattern is never silently ignored.
 */
export const TAG_PATTERN = /^(?!-)[A-Za-z0-9._/*?-]{1,100}$/;

interface AppAdminInput {
  app: string;
  /** Who asked, for the audit log: "cli" or a Slack user label. */
  actor?: string | undefined;
  correlationId?: string | undefined;
}

function check(pattern: RegExp, value: string, message: string): string {
  if (!pattern.test(value)) throw invalidError(message);
  return value;
}

/** Deploy threads of the app go to this channel (reporters/slack-thread.ts) instead of where a deploy was typed. */
export function linkChannelCommand(
  deps: { db: Db; log: Logger },
  input: AppAdminInput & { channel: string },
): { app: string; channel: string; previous: string | null } {
  const channel = check(SLACK_CHANNEL_ID, input.channel, "channel must be a Slack channel id such as C0123ABCD");
  return setChannel(deps, input, channel);
}

export function unlinkChannelCommand(
  deps: { db: Db; log: Logger },
  input: AppAdminInput,
): { app: string; channel: null; previous: string | null } {
  return setChannel(deps, input, null);
}

function setChannel<C extends string | null>(
  deps: { db: Db; log: Logger },
  input: AppAdminInput,
  channel: C,
): { app: string; channel: C; previous: string | null } {
  const previous = deps.db.transaction((db) => {
    const app = getAppBySlug(db, input.app);
    const before = appSlackChannel(db, app.uuid);
    setAppSlackChannel(db, app.uuid, channel);
    recordAudit(db, {
      action: channel === null ? "app.unlink-channel" : "app.link-channel",
      outcome: "succeeded",
      actorLabel: input.actor ?? "cli",
      appUuid: app.uuid,
      details: { channel, previous: before },
      correlationId: input.correlationId,
    });
    deps.log.info({ appId: app.uuid, tenantId: app.tenantUuid, channel, previous: before }, "app channel set");
    return before;
  });
  return { app: input.app, channel, previous };
}

export interface LinkGithubInput extends AppAdminInput {
  repo: string;
  /** The branch whose pushes deploy; omitted → the app keeps its branch. */
  branch?: string | undefined;
  /** Tags matching this glob deploy too; omitted → tag pushes are ignored. */
  tagPattern?: string | undefined;
  /** Re-linking the same repository keeps its secret unless this asks for a new one. */
  rotateSecret?: boolean | undefined;
}

export interface GithubLink {
  app: string;
  repo: string;
  branch: string;
  tagPattern: string | null;
  status: GithubLinkStatus;
  /** The new webhook secret, shown once; undefined when the link kept its secret. */
  webhookSecret: string | undefined;
  /**
   * With a new secret: what the repository's `.tussilago/link` must hold for the link to turn active when the bot
   * has GitHub API credentials (docs/security.md, *Tenant admin*). Not a secret; derived from the link's secret.
   */
  challenge: string | undefined;
}

type LinkDeps = { db: Db; log: Logger; secrets: SecretBox };

/**
 * Pushes to `repo` (GitHub webhooks, mapped in commands/push-deploy.ts) deploy the app once the link is active.
 * Linking a repository (a new one, or a first link) creates a pending link with a fresh secret; it turns active
 * when GitHub delivers a ping or push for that repository signed with it and, when the bot has API credentials,
 * the repository holds the link's challenge (docs/security.md, *Tenant admin*).
 */
export function linkGithubCommand(deps: LinkDeps, input: LinkGithubInput): GithubLink {
  const repo = check(GITHUB_REPO, input.repo, "repository must be owner/name");
  const branch = input.branch === undefined ? undefined : refSchema.safeParse(input.branch);
  if (branch && !branch.success) throw invalidError("branch is not a valid git ref");
  const tagPattern =
    input.tagPattern === undefined
      ? null
      : check(TAG_PATTERN, input.tagPattern, "tag pattern may hold letters, digits, . _ / - and the globs * ?");
  return deps.db.transaction((db) => {
    const app = getAppBySlug(db, input.app);
    const sameRepo = app.githubRepo !== null && app.githubRepo.toLowerCase() === repo.toLowerCase();
    const webhookSecret =
      !sameRepo || app.githubLinkStatus === null || input.rotateSecret ? newWebhookSecret() : undefined;
    const linkBranch = branch?.data ?? app.branch;
    const status = setGithubLink(
      db,
      app.uuid,
      {
        repo: sameRepo && app.githubRepo !== null ? app.githubRepo : repo,
        branch: linkBranch,
        tagPattern,
        sealedSecret:
          webhookSecret === undefined ? undefined : sealWebhookSecret(deps.secrets, app.uuid, webhookSecret),
      },
      sameRepo,
    );
    const challenge = webhookSecret === undefined ? undefined : linkChallenge(webhookSecret, app.uuid, repo);
    const result: GithubLink = {
      app: app.slug,
      repo,
      branch: linkBranch,
      tagPattern,
      status,
      webhookSecret,
      challenge,
    };
    recordAudit(db, {
      action: "app.link-github",
      outcome: "succeeded",
      actorLabel: input.actor ?? "cli",
      appUuid: app.uuid,
      details: {
        repo,
        branch: linkBranch,
        tagPattern,
        status,
        secret: webhookSecret === undefined ? "kept" : "new",
        previous: { repo: app.githubRepo, branch: app.branch },
      },
      correlationId: input.correlationId,
    });
    deps.log.info(
      { appId: app.uuid, tenantId: app.tenantUuid, repo, branch: linkBranch, status },
      "app linked to github",
    );
    return result;
  });
}

/** A new webhook secret for the app's GitHub link; the old one (and a legacy global one) stops verifying at once. */
export function rotateWebhookSecretCommand(
  deps: LinkDeps,
  input: AppAdminInput,
): { app: string; repo: string; status: GithubLinkStatus; webhookSecret: string; challenge: string } {
  return deps.db.transaction((db) => {
    const app = getAppBySlug(db, input.app);
    if (app.githubRepo === null || app.githubLinkStatus === null) throw notFoundError(`GitHub link of ${app.slug}`);
    const webhookSecret = newWebhookSecret();
    rotateLinkSecret(db, app.uuid, sealWebhookSecret(deps.secrets, app.uuid, webhookSecret));
    recordAudit(db, {
      action: "app.rotate-webhook-secret",
      outcome: "succeeded",
      actorLabel: input.actor ?? "cli",
      appUuid: app.uuid,
      details: { repo: app.githubRepo },
      correlationId: input.correlationId,
    });
    deps.log.info({ appId: app.uuid, tenantId: app.tenantUuid, repo: app.githubRepo }, "webhook secret rotated");
    const challenge = linkChallenge(webhookSecret, app.uuid, app.githubRepo);
    return { app: app.slug, repo: app.githubRepo, status: app.githubLinkStatus, webhookSecret, challenge };
  });
}
