import { sql } from "drizzle-orm";
import { index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/**
 * Platform database. Every table has an internal integer key (`id`, never leaves the process) and a public
 * UUIDv4 (`uuid`) used in job data, logs, Slack and HTTP. Timestamps are epoch milliseconds.
 * Indexes are declared for every lookup the code makes; list queries order by `created_at, id`.
 */

const now = sql`(cast(unixepoch('subsec') * 1000 as integer))`;

// A function, not a shared object: drizzle column builders remember the first table they were attached to.
const base = () => ({
  id: integer("id").primaryKey({ autoIncrement: true }),
  uuid: text("uuid").notNull().unique(),
  createdAt: integer("created_at", { mode: "timestamp_ms" }).notNull().default(now),
});

export const tenants = sqliteTable("tenants", {
  ...base(),
  slug: text("slug").notNull().unique(),
  name: text("name").notNull(),
});

export const users = sqliteTable(
  "users",
  {
    ...base(),
    slackTeamId: text("slack_team_id"),
    slackUserId: text("slack_user_id"),
    displayName: text("display_name").notNull(),
  },
  (t) => [uniqueIndex("users_slack_identity_uq").on(t.slackTeamId, t.slackUserId)],
);

export const ROLES = ["viewer", "deployer", "approver", "admin"] as const;
export type Role = (typeof ROLES)[number];

/** A user's role within one tenant. */
export const memberships = sqliteTable(
  "memberships",
  {
    ...base(),
    tenantId: integer("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    role: text("role", { enum: ROLES }).notNull(),
  },
  (t) => [
    uniqueIndex("memberships_tenant_user_uq").on(t.tenantId, t.userId),
    index("memberships_user_idx").on(t.userId),
  ],
);

export const GITHUB_LINK_STATUSES = ["pending", "active"] as const;
export type GithubLinkStatus = (typeof GITHUB_LINK_STATUSES)[number];
/** How an active link was proved: a delivery signed with its secret only, or also the challenge read back via the API. */
export const GITHUB_LINK_PROOFS = ["signature", "challenge-file"] as const;
export type GithubLinkProof = (typeof GITHUB_LINK_PROOFS)[number];

export const apps = sqliteTable(
  "apps",
  {
    ...base(),
    tenantId: integer("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "restrict" }),
    slug: text("slug").notNull(),
    gitUrl: text("git_url").notNull(),
    /** `owner/name` on GitHub, for push mapping; null when the app is not linked to GitHub. */
    githubRepo: text("github_repo"),
    /**
     * The GitHub link's trust state (docs/security.md, *GitHub sender*). `pending` until a delivery for the
     * repository proves control (signed with the link's secret, or from the App's installation); null when unlinked.
     */
    githubLinkStatus: text("github_link_status", { enum: GITHUB_LINK_STATUSES }),
    /** GitHub's numeric `repository.id`, recorded at activation: names change (rename, transfer), the id does not. */
    githubRepoId: integer("github_repo_id"),
    /** The link's webhook secret, sealed with src/domain/crypto.ts (bound to the app's uuid); shown once. */
    githubWebhookSecret: text("github_webhook_secret"),
    /** Links made before per-link secrets: the global GITHUB_WEBHOOK_SECRET still verifies until one is rotated in. */
    githubLegacySecret: integer("github_legacy_secret", { mode: "boolean" }).notNull().default(false),
    /** GitHub App mode: the installation that delivered the activating event; later deliveries must match it. */
    githubInstallationId: integer("github_installation_id"),
    /**
     * How the link was proved (docs/security.md, *Tenant admin*); null while pending and for links made before this
     * column. The bot's API credentials (fetch token, statuses) serve only `challenge-file` links.
     */
    githubLinkProof: text("github_link_proof", { enum: GITHUB_LINK_PROOFS }),
    branch: text("branch").notNull().default("main"),
    /** Glob (`*`, `?`) of tag names whose pushes deploy this app; null → tag pushes are ignored. */
    deployTagPattern: text("deploy_tag_pattern"),
    domain: text("domain").notNull(),
    environment: text("environment", { enum: ["production", "staging", "development"] })
      .notNull()
      .default("production"),
    memoryMb: integer("memory_mb").notNull().default(256),
    cpus: text("cpus").notNull().default("0.5"),
    pidsLimit: integer("pids_limit").notNull().default(128),
    healthPath: text("health_path").notNull().default("/"),
    allowEgress: integer("allow_egress", { mode: "boolean" }).notNull().default(false),
    /** Opt-ins for the source stage: submodules and LFS objects are never fetched unless the app asks. */
    gitSubmodules: integer("git_submodules", { mode: "boolean" }).notNull().default(false),
    gitLfs: integer("git_lfs", { mode: "boolean" }).notNull().default(false),
    slackChannelId: text("slack_channel_id"),
    /** Actions that need a second person's approval (JSON list); null → the environment's default policy. */
    approvalPolicy: text("approval_policy", { mode: "json" }).$type<string[]>(),
    /**
     * How many containers of each process type run (`{"web": 2, "worker": 1}`, docs/python-apps.md "Scale"); a type
     * not named runs one container. Null → one of each.
     */
    formation: text("formation", { mode: "json" }).$type<Record<string, number>>(),
    destroyedAt: integer("destroyed_at", { mode: "timestamp_ms" }),
  },
  (t) => [
    uniqueIndex("apps_slug_uq").on(t.slug),
    uniqueIndex("apps_domain_uq").on(t.domain),
    index("apps_tenant_idx").on(t.tenantId, t.createdAt),
    index("apps_github_branch_idx").on(t.githubRepo, t.branch),
    index("apps_github_repo_id_idx").on(t.githubRepoId),
    // GitHub names are case-insensitive: the webhook route finds links not bound to an id yet by lower(name).
    index("apps_github_repo_lower_idx").on(sql`lower(${t.githubRepo})`),
    index("apps_slack_channel_idx").on(t.slackChannelId),
  ],
);

export const DEPLOYMENT_STATUSES = ["queued", "running", "succeeded", "failed", "superseded", "cancelled"] as const;
export type DeploymentStatus = (typeof DEPLOYMENT_STATUSES)[number];

export const deployments = sqliteTable(
  "deployments",
  {
    ...base(),
    appId: integer("app_id")
      .notNull()
      .references(() => apps.id, { onDelete: "cascade" }),
    // "rebuild": the data plane found the current release's image gone and builds that release's commit again.
    trigger: text("trigger", { enum: ["push", "command", "cli", "rollback", "reconcile", "rebuild"] }).notNull(),
    ref: text("ref").notNull(),
    commitSha: text("commit_sha"),
    commitMessage: text("commit_message"),
    author: text("author"),
    requestedBy: integer("requested_by").references(() => users.id, { onDelete: "set null" }),
    status: text("status", { enum: DEPLOYMENT_STATUSES }).notNull().default("queued"),
    /** Stage name → { startedAt, finishedAt, status } as JSON; written by the pipeline. */
    stageTimings: text("stage_timings", { mode: "json" }).$type<Record<string, StageTiming>>().notNull().default({}),
    failureReason: text("failure_reason"),
    /** For rollbacks: the release being redeployed. */
    rollbackOfReleaseId: integer("rollback_of_release_id"),
    /** A rollback that reruns the release's `release:` command (`--with-release`); deploys always run it. */
    withRelease: integer("with_release", { mode: "boolean" }).notNull().default(false),
    /** The Python version the build chose (docs/python-apps.md), set by the build stage. */
    pythonVersion: text("python_version"),
    slackChannelId: text("slack_channel_id"),
    slackThreadTs: text("slack_thread_ts"),
    /** `X-GitHub-Delivery` of the push that requested it; unique per app, so a replayed job cannot add another. */
    githubDeliveryId: text("github_delivery_id"),
    /** The GitHub Deployment created for it (reporters/github-status.ts), so final statuses survive a restart. */
    githubDeploymentId: text("github_deployment_id"),
    startedAt: integer("started_at", { mode: "timestamp_ms" }),
    finishedAt: integer("finished_at", { mode: "timestamp_ms" }),
    /**
     * Set by `cancel` while the deployment runs; the job checks it between stages and polls it during one, then
     * ends the deployment as `cancelled` (docs/architecture.md, *Cancel*).
     */
    cancelRequestedAt: integer("cancel_requested_at", { mode: "timestamp_ms" }),
    /** Who asked, as the reporters show it ("@alice", "an operator (CLI)"); the audit log has the user. */
    cancelRequestedBy: text("cancel_requested_by"),
  },
  (t) => [
    index("deployments_app_created_idx").on(t.appId, t.createdAt),
    index("deployments_app_status_idx").on(t.appId, t.status),
    // The stuck-deployment check lists queued and running deployments of every app.
    index("deployments_status_idx").on(t.status),
    uniqueIndex("deployments_app_github_delivery_uq").on(t.appId, t.githubDeliveryId),
  ],
);

export interface StageTiming {
  status: "running" | "succeeded" | "failed" | "skipped" | "cancelled";
  startedAt: number;
  finishedAt?: number;
}

export const releases = sqliteTable(
  "releases",
  {
    ...base(),
    appId: integer("app_id")
      .notNull()
      .references(() => apps.id, { onDelete: "cascade" }),
    deploymentId: integer("deployment_id")
      .notNull()
      .references(() => deployments.id, { onDelete: "cascade" }),
    version: integer("version").notNull(),
    image: text("image").notNull(),
    commitSha: text("commit_sha"),
    startCommand: text("start_command").notNull(),
    /** The `release:` command the build found (rerun only by a rollback with `--with-release`). */
    releaseCommand: text("release_command"),
    pythonVersion: text("python_version"),
    /**
     * The release's other process types besides `web` and `release` (`{"worker": "celery -A shop worker"}`), run
     * as their own containers; a rollback restores exactly this set. Null → none (releases before process types).
     */
    processes: text("processes", { mode: "json" }).$type<Record<string, string>>(),
    prunedAt: integer("pruned_at", { mode: "timestamp_ms" }),
  },
  (t) => [
    uniqueIndex("releases_app_version_uq").on(t.appId, t.version),
    uniqueIndex("releases_deployment_uq").on(t.deploymentId),
  ],
);

export const APPROVAL_STATUSES = ["pending", "approved", "denied", "expired"] as const;

export const approvals = sqliteTable(
  "approvals",
  {
    ...base(),
    tenantId: integer("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    appId: integer("app_id").references(() => apps.id, { onDelete: "cascade" }),
    action: text("action").notNull(),
    /** JSON of the exact action; `actionHash` (sha256 of its canonical form) binds the approval to it. */
    actionPayload: text("action_payload", { mode: "json" }).notNull(),
    actionHash: text("action_hash").notNull(),
    requestedBy: integer("requested_by")
      .notNull()
      .references(() => users.id),
    decidedBy: integer("decided_by").references(() => users.id),
    status: text("status", { enum: APPROVAL_STATUSES }).notNull().default("pending"),
    expiresAt: integer("expires_at", { mode: "timestamp_ms" }).notNull(),
    decidedAt: integer("decided_at", { mode: "timestamp_ms" }),
    slackChannelId: text("slack_channel_id"),
    slackMessageTs: text("slack_message_ts"),
  },
  (t) => [
    index("approvals_tenant_status_idx").on(t.tenantId, t.status, t.createdAt),
    index("approvals_app_idx").on(t.appId),
  ],
);

/** At most one lock per app (unique app_id); unlocking deletes the row, the audit log keeps history. */
export const locks = sqliteTable(
  "locks",
  {
    ...base(),
    appId: integer("app_id")
      .notNull()
      .references(() => apps.id, { onDelete: "cascade" }),
    heldBy: integer("held_by")
      .notNull()
      .references(() => users.id),
    reason: text("reason").notNull().default(""),
  },
  (t) => [uniqueIndex("locks_app_uq").on(t.appId)],
);

export const appEnvVars = sqliteTable(
  "app_env_vars",
  {
    ...base(),
    appId: integer("app_id")
      .notNull()
      .references(() => apps.id, { onDelete: "cascade" }),
    key: text("key").notNull(),
    /** AES-256-GCM ciphertext (see src/domain/crypto.ts); the plaintext is never stored. */
    valueEncrypted: text("value_encrypted").notNull(),
    updatedAt: integer("updated_at", { mode: "timestamp_ms" }).notNull().default(now),
  },
  (t) => [uniqueIndex("app_env_vars_app_key_uq").on(t.appId, t.key)],
);

/** `not-checked`: no GitHub API credentials, so the push was taken as sent (docs/security.md). */
export const HEAD_CHECKS = ["current", "stale", "not-checked"] as const;
export type HeadCheck = (typeof HEAD_CHECKS)[number];

export const WEBHOOK_DELIVERY_STATUSES = ["received", "enqueued", "ignored", "processed", "failed"] as const;

/** GitHub deliveries, keyed by `X-GitHub-Delivery` (GitHub reuses it on redelivery). */
export const webhookDeliveries = sqliteTable(
  "webhook_deliveries",
  {
    ...base(),
    source: text("source", { enum: ["github"] }).notNull(),
    deliveryId: text("delivery_id").notNull(),
    event: text("event").notNull(),
    repository: text("repository"),
    ref: text("ref"),
    headCommit: text("head_commit"),
    payload: text("payload", { mode: "json" }).notNull(),
    status: text("status", { enum: WEBHOOK_DELIVERY_STATUSES }).notNull().default("received"),
    jobId: text("job_id"),
    /** Public ids of the apps whose link verified this delivery: the push deploys these and no others. */
    appUuids: text("app_uuids", { mode: "json" }).$type<string[]>().notNull().default([]),
    /** Whether `after` was the ref's head at GitHub when the push was mapped; null until the worker looked. */
    headCheck: text("head_check", { enum: HEAD_CHECKS }),
  },
  (t) => [
    uniqueIndex("webhook_deliveries_source_delivery_uq").on(t.source, t.deliveryId),
    // No index on created_at: retention prunes in id order (src/domain/webhook-deliveries.ts pruneDeliveries), and
    // one more index written per delivery cost the webhook route ~1 µs of its ~60 (bench/RESULTS.md).
    // The outbox relay (src/pipeline/delivery-relay.ts) polls for recorded-but-not-enqueued rows every second; a
    // partial index keeps that a lookup of the few pending rows instead of a scan of every payload.
    index("webhook_deliveries_received_idx").on(t.id).where(sql`status = 'received'`),
  ],
);

export const auditEvents = sqliteTable(
  "audit_events",
  {
    ...base(),
    tenantId: integer("tenant_id").references(() => tenants.id, { onDelete: "set null" }),
    appId: integer("app_id").references(() => apps.id, { onDelete: "set null" }),
    actorUserId: integer("actor_user_id").references(() => users.id, { onDelete: "set null" }),
    /** Who or what acted when there is no user: "github", "system", "cli". */
    actorLabel: text("actor_label").notNull(),
    action: text("action").notNull(),
    outcome: text("outcome", { enum: ["allowed", "denied", "succeeded", "failed"] }).notNull(),
    details: text("details", { mode: "json" }).notNull().default({}),
    correlationId: text("correlation_id"),
  },
  (t) => [
    index("audit_events_tenant_created_idx").on(t.tenantId, t.createdAt),
    index("audit_events_app_created_idx").on(t.appId, t.createdAt),
    // "Was this delivery's refusal audited already?" (webhook-deliveries.ts auditPushRefusalOnce): two equalities,
    // which the planner prefers to the (app, time) range, whose rows grow with every push a locked app refuses.
    index("audit_events_app_correlation_idx").on(t.appId, t.correlationId),
    // `tussilago audit` without --app: newest first over all apps, without a sort of the whole table.
    index("audit_events_created_idx").on(t.createdAt),
  ],
);

export const INCIDENT_KINDS = ["crash_loop", "image_missing", "engine", "unhealthy"] as const;
export type IncidentKind = (typeof INCIDENT_KINDS)[number];

/**
 * A live app's current release that the bot could not keep serving (its sandbox keeps dying, its image is gone, the
 * engine refuses it). Open while `resolvedAt` is null, at most one open per app; `reportedAt` makes the Slack notice
 * once per incident, whichever process or restart saw it first.
 */
export const appIncidents = sqliteTable(
  "app_incidents",
  {
    ...base(),
    appId: integer("app_id")
      .notNull()
      .references(() => apps.id, { onDelete: "cascade" }),
    kind: text("kind", { enum: INCIDENT_KINDS }).notNull(),
    reason: text("reason").notNull(),
    reportedAt: integer("reported_at", { mode: "timestamp_ms" }),
    resolvedAt: integer("resolved_at", { mode: "timestamp_ms" }),
  },
  (t) => [
    index("app_incidents_app_created_idx").on(t.appId, t.createdAt),
    index("app_incidents_resolved_idx").on(t.resolvedAt),
  ],
);

/**
 * Operator API tokens (docs/api.md). A token reads `tsg_<lookupId>_<secret>`: `lookupId` finds the row, and the
 * SHA-256 of the whole token is compared in constant time with `secretHash`; the token itself is never stored.
 * `name` is the operator the token acts as (audit rows say `api:<name>`); one operator may hold several tokens.
 */
export const apiTokens = sqliteTable(
  "api_tokens",
  {
    ...base(),
    name: text("name").notNull(),
    role: text("role", { enum: ROLES }).notNull(),
    lookupId: text("lookup_id").notNull(),
    secretHash: text("secret_hash").notNull(),
    /** Who created it ("cli"). */
    createdBy: text("created_by").notNull(),
    lastUsedAt: integer("last_used_at", { mode: "timestamp_ms" }),
    revokedAt: integer("revoked_at", { mode: "timestamp_ms" }),
  },
  (t) => [
    uniqueIndex("api_tokens_lookup_id_uq").on(t.lookupId),
    index("api_tokens_name_idx").on(t.name, t.createdAt),
    index("api_tokens_created_idx").on(t.createdAt),
  ],
);
