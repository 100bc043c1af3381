ALTER TABLE `deployments` ADD `with_release` integer DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE `deployments` ADD `python_version` text;--> statement-breakpoint
ALTER TABLE `releases` ADD `release_command` text;--> statement-breakpoint
ALTER TABLE `releases` ADD `python_version` text;