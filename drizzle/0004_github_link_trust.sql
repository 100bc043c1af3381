ALTER TABLE `apps` ADD `github_link_status` text;--> statement-breakpoint
ALTER TABLE `apps` ADD `github_repo_id` integer;--> statement-breakpoint
ALTER TABLE `apps` ADD `github_webhook_secret` text;--> statement-breakpoint
ALTER TABLE `apps` ADD `github_legacy_secret` integer DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE `apps` ADD `github_installation_id` integer;--> statement-breakpoint
CREATE INDEX `apps_github_repo_id_idx` ON `apps` (`github_repo_id`);--> statement-breakpoint
CREATE INDEX `apps_github_repo_lower_idx` ON `apps` (lower("github_repo"));--> statement-breakpoint
ALTER TABLE `webhook_deliveries` ADD `app_uuids` text DEFAULT '[]' NOT NULL;--> statement-breakpoint
ALTER TABLE `webhook_deliveries` ADD `head_check` text;--> statement-breakpoint
-- Links made before per-link secrets keep working: active, and still verified by the global
-- GITHUB_WEBHOOK_SECRET until a per-link secret is rotated in (docs/security.md, *GitHub sender*).
UPDATE `apps` SET `github_link_status` = 'active', `github_legacy_secret` = 1 WHERE `github_repo` IS NOT NULL;
