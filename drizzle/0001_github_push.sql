ALTER TABLE `apps` ADD `deploy_tag_pattern` text;--> statement-breakpoint
ALTER TABLE `deployments` ADD `github_delivery_id` text;--> statement-breakpoint
ALTER TABLE `deployments` ADD `github_deployment_id` text;--> statement-breakpoint
CREATE UNIQUE INDEX `deployments_app_github_delivery_uq` ON `deployments` (`app_id`,`github_delivery_id`);