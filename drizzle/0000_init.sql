CREATE TABLE `app_env_vars` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`app_id` integer NOT NULL,
	`key` text NOT NULL,
	`value_encrypted` text NOT NULL,
	`updated_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	FOREIGN KEY (`app_id`) REFERENCES `apps`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `app_env_vars_uuid_unique` ON `app_env_vars` (`uuid`);--> statement-breakpoint
CREATE UNIQUE INDEX `app_env_vars_app_key_uq` ON `app_env_vars` (`app_id`,`key`);--> statement-breakpoint
CREATE TABLE `approvals` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`tenant_id` integer NOT NULL,
	`app_id` integer,
	`action` text NOT NULL,
	`action_payload` text NOT NULL,
	`action_hash` text NOT NULL,
	`requested_by` integer NOT NULL,
	`decided_by` integer,
	`status` text DEFAULT 'pending' NOT NULL,
	`expires_at` integer NOT NULL,
	`decided_at` integer,
	`slack_channel_id` text,
	`slack_message_ts` text,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`app_id`) REFERENCES `apps`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`requested_by`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`decided_by`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `approvals_uuid_unique` ON `approvals` (`uuid`);--> statement-breakpoint
CREATE INDEX `approvals_tenant_status_idx` ON `approvals` (`tenant_id`,`status`,`created_at`);--> statement-breakpoint
CREATE INDEX `approvals_app_idx` ON `approvals` (`app_id`);--> statement-breakpoint
CREATE TABLE `apps` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`tenant_id` integer NOT NULL,
	`slug` text NOT NULL,
	`git_url` text NOT NULL,
	`github_repo` text,
	`branch` text DEFAULT 'main' NOT NULL,
	`domain` text NOT NULL,
	`environment` text DEFAULT 'production' NOT NULL,
	`memory_mb` integer DEFAULT 256 NOT NULL,
	`cpus` text DEFAULT '0.5' NOT NULL,
	`pids_limit` integer DEFAULT 128 NOT NULL,
	`health_path` text DEFAULT '/' NOT NULL,
	`allow_egress` integer DEFAULT false NOT NULL,
	`slack_channel_id` text,
	`destroyed_at` integer,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE restrict
);
--> statement-breakpoint
CREATE UNIQUE INDEX `apps_uuid_unique` ON `apps` (`uuid`);--> statement-breakpoint
CREATE UNIQUE INDEX `apps_slug_uq` ON `apps` (`slug`);--> statement-breakpoint
CREATE UNIQUE INDEX `apps_domain_uq` ON `apps` (`domain`);--> statement-breakpoint
CREATE INDEX `apps_tenant_idx` ON `apps` (`tenant_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `apps_github_branch_idx` ON `apps` (`github_repo`,`branch`);--> statement-breakpoint
CREATE INDEX `apps_slack_channel_idx` ON `apps` (`slack_channel_id`);--> statement-breakpoint
CREATE TABLE `audit_events` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`tenant_id` integer,
	`app_id` integer,
	`actor_user_id` integer,
	`actor_label` text NOT NULL,
	`action` text NOT NULL,
	`outcome` text NOT NULL,
	`details` text DEFAULT '{}' NOT NULL,
	`correlation_id` text,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE set null,
	FOREIGN KEY (`app_id`) REFERENCES `apps`(`id`) ON UPDATE no action ON DELETE set null,
	FOREIGN KEY (`actor_user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
CREATE UNIQUE INDEX `audit_events_uuid_unique` ON `audit_events` (`uuid`);--> statement-breakpoint
CREATE INDEX `audit_events_tenant_created_idx` ON `audit_events` (`tenant_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `audit_events_app_created_idx` ON `audit_events` (`app_id`,`created_at`);--> statement-breakpoint
CREATE TABLE `deployments` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`app_id` integer NOT NULL,
	`trigger` text NOT NULL,
	`ref` text NOT NULL,
	`commit_sha` text,
	`commit_message` text,
	`author` text,
	`requested_by` integer,
	`status` text DEFAULT 'queued' NOT NULL,
	`stage_timings` text DEFAULT '{}' NOT NULL,
	`failure_reason` text,
	`rollback_of_release_id` integer,
	`slack_channel_id` text,
	`slack_thread_ts` text,
	`started_at` integer,
	`finished_at` integer,
	FOREIGN KEY (`app_id`) REFERENCES `apps`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`requested_by`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
CREATE UNIQUE INDEX `deployments_uuid_unique` ON `deployments` (`uuid`);--> statement-breakpoint
CREATE INDEX `deployments_app_created_idx` ON `deployments` (`app_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `deployments_app_status_idx` ON `deployments` (`app_id`,`status`);--> statement-breakpoint
CREATE TABLE `locks` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`app_id` integer NOT NULL,
	`held_by` integer NOT NULL,
	`reason` text DEFAULT '' NOT NULL,
	FOREIGN KEY (`app_id`) REFERENCES `apps`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`held_by`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `locks_uuid_unique` ON `locks` (`uuid`);--> statement-breakpoint
CREATE UNIQUE INDEX `locks_app_uq` ON `locks` (`app_id`);--> statement-breakpoint
CREATE TABLE `memberships` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`tenant_id` integer NOT NULL,
	`user_id` integer NOT NULL,
	`role` text NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `memberships_uuid_unique` ON `memberships` (`uuid`);--> statement-breakpoint
CREATE UNIQUE INDEX `memberships_tenant_user_uq` ON `memberships` (`tenant_id`,`user_id`);--> statement-breakpoint
CREATE INDEX `memberships_user_idx` ON `memberships` (`user_id`);--> statement-breakpoint
CREATE TABLE `releases` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`app_id` integer NOT NULL,
	`deployment_id` integer NOT NULL,
	`version` integer NOT NULL,
	`image` text NOT NULL,
	`commit_sha` text,
	`start_command` text NOT NULL,
	`pruned_at` integer,
	FOREIGN KEY (`app_id`) REFERENCES `apps`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`deployment_id`) REFERENCES `deployments`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `releases_uuid_unique` ON `releases` (`uuid`);--> statement-breakpoint
CREATE UNIQUE INDEX `releases_app_version_uq` ON `releases` (`app_id`,`version`);--> statement-breakpoint
CREATE UNIQUE INDEX `releases_deployment_uq` ON `releases` (`deployment_id`);--> statement-breakpoint
CREATE TABLE `tenants` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`slug` text NOT NULL,
	`name` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `tenants_uuid_unique` ON `tenants` (`uuid`);--> statement-breakpoint
CREATE UNIQUE INDEX `tenants_slug_unique` ON `tenants` (`slug`);--> statement-breakpoint
CREATE TABLE `users` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`slack_team_id` text,
	`slack_user_id` text,
	`display_name` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `users_uuid_unique` ON `users` (`uuid`);--> statement-breakpoint
CREATE UNIQUE INDEX `users_slack_identity_uq` ON `users` (`slack_team_id`,`slack_user_id`);--> statement-breakpoint
CREATE TABLE `webhook_deliveries` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`uuid` text NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`source` text NOT NULL,
	`delivery_id` text NOT NULL,
	`event` text NOT NULL,
	`repository` text,
	`ref` text,
	`head_commit` text,
	`payload` text NOT NULL,
	`status` text DEFAULT 'received' NOT NULL,
	`job_id` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `webhook_deliveries_uuid_unique` ON `webhook_deliveries` (`uuid`);--> statement-breakpoint
CREATE UNIQUE INDEX `webhook_deliveries_source_delivery_uq` ON `webhook_deliveries` (`source`,`delivery_id`);--> statement-breakpoint
CREATE INDEX `webhook_deliveries_created_idx` ON `webhook_deliveries` (`created_at`);